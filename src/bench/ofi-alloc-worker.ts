/**
 * Child process of `dmem bench remote --url ofi+...` (src/bench/ofi-remote.ts):
 * one one-sided ofi client doing alloc(4096) + free through the Pool API
 * (the Wasm core, synchronous), so that K of these processes keep K
 * allocations in flight against one memory node.
 * argv: url, seed; the token is in DMEM_OFI_TOKEN.
 * IPC: reports {ready} once attached; on each {warmupMs, durationMs} runs
 * the loop and reports {ops, seconds, cpuUs, latUs} (latUs: every measured
 * pair's latency in us); on 'exit' closes the pool and exits.
 */
import { openOfiPool } from '../../plugins/rdma/transport.js';

/** What the worker reports per run. */
export interface AllocRunReport { ops: number; seconds: number; cpuUs: number; latUs: number[] }

const [url, seed] = process.argv.slice(2);
const pool = await openOfiPool(url, { token: process.env.DMEM_OFI_TOKEN ?? '', seed: Number(seed) });
process.send!({ ready: true });
process.on('message', (m: { warmupMs: number; durationMs: number } | 'exit') => {
  if (m === 'exit') {
    pool.close();
    process.exit(0);
  }
  const warmEnd = performance.now() + m.warmupMs;
  while (performance.now() < warmEnd) pool.free(pool.alloc(4096));
  const lat: number[] = [];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + m.durationMs;
  for (let now = t0; now < end;) {
    pool.free(pool.alloc(4096));
    const t = performance.now();
    lat.push((t - now) * 1000);
    now = t;
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const report: AllocRunReport = { ops: lat.length, seconds, cpuUs: cpu.user + cpu.system, latUs: lat };
  process.send!(report);
});
