/**
 * A small seeded PRNG for the benchmarks' random choices (which block to
 * free). mulberry32 (Tommy Ettinger, public domain): 32 bits of state, one
 * `Math.imul`-based mix per draw, no allocation and no BigInt, so it can run
 * inside a timed loop. Not for cryptography; good enough to pick indices.
 */

/** A mulberry32 stream; the same seed gives the same sequence on every platform. */
export class Prng {
  private state: number;

  /** @param seed any number; only its low 32 bits are used */
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** The next value, a uniform integer in [0, 2^32). */
  next(): number {
    const s = (this.state = (this.state + 0x6d2b79f5) | 0);
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform integer in [0, n) for 1 <= n <= 2^32 (multiply-shift, bias below 2^-32 * n). */
  below(n: number): number {
    return Math.floor((this.next() / 4294967296) * n);
  }
}

/**
 * Derives the seed of stream `index` from a run's seed (SplitMix-style
 * golden-ratio step and a mulberry32 mix), so per-process streams differ.
 */
export function deriveSeed(seed: number, index: number): number {
  return new Prng((seed >>> 0) + Math.imul(index + 1, 0x9e3779b9)).next();
}
