/**
 * Worker process of the heap benchmark (src/bench/heap.ts): attaches to the
 * pool, reports ready, runs the pattern on `pool.heap` when told `go`, and
 * reports its PatternResult (or {error}).
 * argv: pool URI, object size (bytes), live objects, rounds, churn, seed, warm-up rounds.
 */
import { openPool } from '../pool.js';
import { runPattern } from './heap-pattern.js';

const [uri, sizeArg, liveArg, roundsArg, churnArg, seedArg, warmupArg] = process.argv.slice(2);
const pool = await openPool(uri, { create: false });
const heap = pool.heap;
process.send!({ ready: true });
process.once('message', () => {
  let msg: unknown;
  try {
    msg = runPattern({ alloc: (n) => heap.alloc(n), free: (g) => heap.free(g) },
      Number(sizeArg), Number(liveArg), Number(roundsArg), Number(churnArg), Number(seedArg), Number(warmupArg ?? 0));
  } catch (err) {
    msg = { error: String(err) };
  }
  pool.close();
  process.send!(msg, () => process.exit(0));
});
