/**
 * Child process of `dmem bench ofi --frag` (src/bench/ofi-bench.ts): one
 * one-sided ofi client running FineMem's frag pattern on class 0: allocate
 * N blocks, then each epoch free M random ones and allocate M again.
 * argv: url, seed, N, M, epochs; the token is in DMEM_OFI_TOKEN.
 * Reports {fillAllocsPerS, churnOpsPerS, casRetries, opsPerAlloc, opsPerFree} over IPC.
 */
import { openOfiPool } from '../../plugins/rdma/transport.js';
import { Prng } from './prng.js';

const [url, seedArg, nArg, mArg, eArg] = process.argv.slice(2);
const n = Number(nArg);
const m = Number(mArg);
const epochs = Number(eArg);
const rng = new Prng(Number(seedArg));
const pool = await openOfiPool(url, { token: process.env.DMEM_OFI_TOKEN ?? '', seed: Number(seedArg) });
process.send!({ ready: true });
process.once('message', () => {
  const held: number[] = [];
  let t0 = performance.now();
  for (let i = 0; i < n; i++) held.push(pool.allocClass(0));
  const fillMs = performance.now() - t0;
  t0 = performance.now();
  for (let e = 0; e < epochs; e++) {
    for (let k = 0; k < m; k++) {
      const i = rng.below(held.length);
      pool.free(held[i]);
      held[i] = held[held.length - 1];
      held.pop();
    }
    for (let k = 0; k < m; k++) held.push(pool.allocClass(0));
  }
  const churnMs = performance.now() - t0;
  for (const g of held) pool.free(g);
  const st = pool.stats();
  pool.close();
  process.send!({
    fillAllocsPerS: (n * 1000) / fillMs, churnOpsPerS: (2 * m * epochs * 1000) / churnMs,
    casRetries: st.cas.retries, opsPerAlloc: st.transportOps.perAlloc, opsPerFree: st.transportOps.perFree,
  }, undefined, {}, () => process.exit(0));
});
