/**
 * Seeded PRNG (SplitMix64, Steele, Lea & Flood, OOPSLA 2014). Used for the
 * random start of section scans (FineMem, section 4: random start spreads
 * clients over the pool). Same seed, same sequence, in every Wasm runtime.
 */

let state: u64 = 0x9E3779B97F4A7C15;

/** Restarts the sequence from `seed`. */
export function seedPrng(seed: u64): void {
  state = seed;
}

/** Next 64 pseudo-random bits. */
export function nextU64(): u64 {
  state += 0x9E3779B97F4A7C15;
  let z = state;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
  return z ^ (z >> 31);
}

/** Uniform integer in [0, bound), bound >= 1 (Lemire's multiply-shift, bias < 2^-32). */
export function nextBelow(bound: u32): u32 {
  return <u32>(((nextU64() >> 32) * <u64>bound) >> 32);
}
