/**
 * A benchmark worker process, forked by src/bench/fleet.ts. It receives one
 * job (micro or trace, src/bench/protocol.ts), attaches its own client to the
 * shared pool, and runs the measured loops between barriers.
 *
 * Measurement rules (the hot-path rules of ../shared/CONVENTIONS.md): inside
 * a timed loop there is no allocation, no closure, no BigInt and no message;
 * block addresses and latencies go to typed arrays allocated before the
 * loop; `Pool.stats()` is read before and after the loop, never inside it.
 * A latency is `performance.now()` before and after one `allocClass` call,
 * so it includes one `performance.now()` (tens of ns).
 *
 * Warm-up (micro jobs with `warmupEpochs`): after its setup allocations a
 * worker runs that many epochs of the very same loop untimed (their
 * latencies are overwritten; their allocations are reported apart, as
 * warmupAllocs, never in the timed counts), then waits at the start barrier. V8 compiles the loop and the pool's hot path while it
 * runs, and the block cache reaches the state every later epoch sees;
 * bench/peers/alloc_peer.cpp runs the same untimed epochs (`--warmup`).
 */
import { performance } from 'node:perf_hooks';
import { openPool, type Pool, type ClientStats } from '../pool.js';
import { DmemError } from '../errors.js';
import { Prng } from './prng.js';
import { readTrace } from './trace-file.js';
import type { FreedReport, FromWorker, ToWorker, TraceJob, TraceSample } from './protocol.js';
import type { WarmMicroJob, WarmMicroSample } from './micro.js';

const inbox: ToWorker[] = [];
let waiter: ((m: ToWorker) => void) | null = null;

process.on('message', (m: ToWorker) => {
  if (waiter) {
    const w = waiter;
    waiter = null;
    w(m);
  } else {
    inbox.push(m);
  }
});
// The parent disconnects when it is done with us, or when it died.
process.on('disconnect', () => process.exit(0));

function next(): Promise<ToWorker> {
  const m = inbox.shift();
  if (m) return Promise.resolve(m);
  return new Promise((resolve) => { waiter = resolve; });
}

function send(m: FromWorker): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send) { reject(new Error('bench worker started without an IPC channel: run it through runMicro/runTrace')); return; }
    process.send(m, undefined, {}, (err) => (err ? reject(err) : resolve()));
  });
}

/** Reports ready and waits for the parent's `go`. */
async function barrier(): Promise<void> {
  await send({ type: 'ready' });
  const m = await next();
  if (m.type !== 'go') throw new DmemError('WORKER_PROTOCOL', `expected go, got ${m.type}`);
}

/** Counter deltas of one client between two `stats()` snapshots. */
function delta(before: ClientStats, after: ClientStats) {
  return {
    allocs: after.allocs - before.allocs,
    frees: after.frees - before.frees,
    casAttempts: after.cas.attempts - before.cas.attempts,
    casRetries: after.cas.retries - before.cas.retries,
    casRetriesMax: after.cas.maxRetries,
    allocTransportOps: Math.round(after.transportOps.perAlloc * after.allocs - before.transportOps.perAlloc * before.allocs),
    freeTransportOps: Math.round(after.transportOps.perFree * after.frees - before.transportOps.perFree * before.frees),
  };
}

/** Frees every non-zero gaddr of `blocks` and zeroes it; counts failures. */
function freeAll(pool: Pool, blocks: Float64Array): FreedReport {
  const report: FreedReport = { kind: 'freed', freed: 0, errors: 0 };
  for (let i = 0; i < blocks.length; i++) {
    if (blocks[i] === 0) continue;
    try {
      pool.free(blocks[i]);
      report.freed++;
    } catch (err) {
      report.errors++;
      report.firstError ??= (err as Error).message;
    }
    blocks[i] = 0;
  }
  return report;
}

/** Every LATENCY_STRIDE-th allocation of the frag loop is timed. */
export const LATENCY_STRIDE = 8;

/**
 * The epoch loop of FineMem's "frag" test: free `churn` distinct random
 * blocks (partial Fisher-Yates over `perm`), then allocate as many again
 * into the same slots. Every LATENCY_STRIDE-th allocation is timed (two
 * performance.now() calls cost about as much as an allocation, so timing
 * them all would halve the throughput being measured). Returns the loop's
 * wall time (ms) and the number of latency samples written.
 */
function churnLoop(pool: Pool, cls: number, blocks: Float64Array, perm: Int32Array, churn: number, epochs: number, rng: Prng, latencyNs: Float64Array): { loopMs: number; samples: number } {
  const n = blocks.length;
  let k = 0;
  let i = 0;
  const t0 = performance.now();
  for (let e = 0; e < epochs; e++) {
    for (let j = 0; j < churn; j++) {
      const r = j + rng.below(n - j);
      const slot = perm[r];
      perm[r] = perm[j];
      perm[j] = slot;
      pool.free(blocks[slot]);
      blocks[slot] = 0;
    }
    for (let j = 0; j < churn; j++, i++) {
      if (i % LATENCY_STRIDE === 0) {
        const a = performance.now();
        blocks[perm[j]] = pool.allocClass(cls);
        latencyNs[k++] = (performance.now() - a) * 1e6;
      } else {
        blocks[perm[j]] = pool.allocClass(cls);
      }
    }
  }
  return { loopMs: performance.now() - t0, samples: k };
}

async function runMicroJob(job: WarmMicroJob): Promise<void> {
  const rng = new Prng(job.seed);
  for (const cls of job.classes) {
    // Start barrier: the parent takes its census before any of us allocates.
    await barrier();
    const pool = await openPool(job.uri, { create: false, seed: job.seed + cls });
    const blocks = new Float64Array(job.blocks);
    try {
      for (let i = 0; i < blocks.length; i++) blocks[i] = pool.allocClass(cls);
      const perm = new Int32Array(job.blocks);
      for (let i = 0; i < perm.length; i++) perm[i] = i;
      const warmup = job.warmupEpochs ?? 0;
      const latencyNs = new Float64Array(Math.ceil((Math.max(job.epochs, warmup) * job.churn) / LATENCY_STRIDE));
      // Untimed warm-up: the same loop, the same PRNG stream (alloc_peer does the same).
      const cold = pool.stats();
      if (warmup > 0) churnLoop(pool, cls, blocks, perm, job.churn, warmup, rng, latencyNs);
      const before = pool.stats();
      await barrier();
      const { loopMs, samples } = churnLoop(pool, cls, blocks, perm, job.churn, job.epochs, rng, latencyNs);
      const d = delta(before, pool.stats());
      const sample: WarmMicroSample = { kind: 'micro', cls, loopMs, latencyNs: latencyNs.slice(0, samples), warmupAllocs: before.allocs - cold.allocs, ...d };
      await send({ type: 'result', result: sample });
      await barrier();
      await send({ type: 'result', result: freeAll(pool, blocks) });
    } finally {
      freeAll(pool, blocks);
      pool.close();
    }
  }
}

/**
 * One epoch of FineMem's "stage" replay: request i waits (busy) until
 * arrivalsUs[i] has passed since the epoch start, never if behind, then
 * allocates, timed. A failed allocation is counted, not fatal.
 */
function replay(pool: Pool, arrivalsMs: Float64Array, classes: Uint8Array, blocks: Float64Array, latencyNs: Float64Array, errors: { count: number; first?: string }): { replayMs: number; allocs: number } {
  let k = 0;
  const t0 = performance.now();
  for (let i = 0; i < classes.length; i++) {
    const due = arrivalsMs[i];
    while (performance.now() - t0 < due) { /* busy-wait to the arrival time */ }
    const a = performance.now();
    try {
      blocks[i] = pool.allocClass(classes[i]);
      latencyNs[k++] = (performance.now() - a) * 1e6;
    } catch (err) {
      blocks[i] = 0;
      errors.count++;
      errors.first ??= (err as Error).message;
    }
  }
  return { replayMs: performance.now() - t0, allocs: k };
}

async function runTraceJob(job: TraceJob): Promise<void> {
  for (let t = 0; t < job.paths.length; t++) {
    const trace = readTrace(job.paths[t]);
    const n = trace.classes.length;
    const arrivalsMs = new Float64Array(n);
    for (let i = 0; i < n; i++) arrivalsMs[i] = trace.arrivalsUs[i] / 1000;
    const blocks = new Float64Array(n);
    const latencyNs = new Float64Array(n);
    const pool = await openPool(job.uri, { create: false, seed: job.seed + t });
    try {
      for (let epoch = 0; epoch < job.epochs; epoch++) {
        const errors: { count: number; first?: string } = { count: 0 };
        const before = pool.stats();
        await barrier();
        const { replayMs, allocs } = replay(pool, arrivalsMs, trace.classes, blocks, latencyNs, errors);
        const freed = freeAll(pool, blocks);
        const d = delta(before, pool.stats());
        const sample: TraceSample = {
          kind: 'trace', trace: t, epoch, replayMs, allocs,
          allocErrors: errors.count, freeErrors: freed.errors, firstError: errors.first ?? freed.firstError,
          latencyNs: latencyNs.slice(0, allocs),
          casRetries: d.casRetries, casRetriesMax: d.casRetriesMax,
          allocTransportOps: d.allocTransportOps, freeTransportOps: d.freeTransportOps, frees: d.frees,
        };
        await send({ type: 'result', result: sample });
      }
    } finally {
      freeAll(pool, blocks);
      pool.close();
    }
  }
}

async function main(): Promise<void> {
  const first = await next();
  if (first.type !== 'job') throw new DmemError('WORKER_PROTOCOL', `expected a job, got ${first.type}`);
  if (first.job.kind === 'micro') await runMicroJob(first.job);
  else await runTraceJob(first.job);
}

main().catch(async (err: unknown) => {
  const code = err instanceof DmemError ? err.code : 'WORKER_FAILED';
  const message = err instanceof Error ? err.message : String(err);
  try {
    await send({ type: 'error', code, message });
  } finally {
    process.exit(1);
  }
});
