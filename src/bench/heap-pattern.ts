/**
 * The heap benchmark's access pattern, shared by the in-process runs and
 * the worker processes: FineMem's frag pattern (OSDI '25, section 6.2) on
 * objects: hold `live` objects of `size` bytes, then every round free
 * `churn` random ones and allocate `churn` again. Allocator-agnostic, so
 * dmem's heap and a baseline run the very same loop.
 */
import { Prng } from './prng.js';

/** An allocator under test: alloc returns an address (0 = failure), free takes it back. */
export interface ObjectAllocator {
  alloc(bytes: number): number;
  free(addr: number): void;
}

/** What one run measured. */
export interface PatternResult {
  /** alloc+free pairs timed (the warm-up fill is not timed). */
  pairs: number;
  /** Wall time of the timed rounds (ns). */
  elapsedNs: number;
  /** elapsedNs / pairs. */
  nsPerPair: number;
}

/**
 * Runs the pattern on `a`: the fill, `warmupRounds` untimed rounds (a
 * steady state: JIT-compiled code, warm caches, the allocator's own caches
 * filled), then `rounds` timed ones, from one PRNG stream; frees
 * everything it holds at the end. The peer (bench/peers/alloc_peer.cpp,
 * run_heap) runs the very same steps.
 * @throws Error when an alloc fails (returns 0 or throws)
 */
export function runPattern(a: ObjectAllocator, size: number, live: number, rounds: number, churn: number, seed: number, warmupRounds = 0): PatternResult {
  const rng = new Prng(seed);
  const held = new Float64Array(live);
  for (let i = 0; i < live; i++) held[i] = must(a.alloc(size));
  churnRounds(a, size, held, warmupRounds, churn, rng);
  const t0 = process.hrtime.bigint();
  churnRounds(a, size, held, rounds, churn, rng);
  const elapsedNs = Number(process.hrtime.bigint() - t0);
  for (const g of held) a.free(g);
  const pairs = rounds * churn;
  return { pairs, elapsedNs, nsPerPair: elapsedNs / pairs };
}

/** `rounds` rounds of `churn` times: free a random held object, allocate one in its place. */
function churnRounds(a: ObjectAllocator, size: number, held: Float64Array, rounds: number, churn: number, rng: Prng): void {
  for (let r = 0; r < rounds; r++) {
    for (let j = 0; j < churn; j++) {
      const i = rng.below(held.length);
      a.free(held[i]);
      held[i] = must(a.alloc(size));
    }
  }
}

function must(addr: number): number {
  if (!(addr > 0)) throw new Error('allocation failed');
  return addr;
}
