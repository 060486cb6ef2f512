/**
 * A study worker process (forked by src/study/fleet.ts): attaches one client
 * of the job's allocator and runs the job's timed loops between barriers
 * (src/study/protocol.ts). Inside a timed loop: no allocation, no message;
 * addresses and latencies go to typed arrays made before the loop, and
 * counters are read before and after it.
 */
import { performance } from 'node:perf_hooks';
import { Prng } from '../bench/prng.js';
import { readTrace } from '../bench/trace-file.js';
import type { AllocatorStats, StudyAllocator } from './allocator.js';
import { attachAllocator } from './pools.js';
import type { FreedSample, LoopSample, MemtestStudyJob, MicroStudyJob, StudyJob, TraceStudyJob } from './protocol.js';

/** Every LATENCY_STRIDE-th allocation of the micro loop is timed. */
const LATENCY_STRIDE = 4;

const inbox: Array<{ type: string; job?: StudyJob }> = [];
let waiter: ((m: { type: string; job?: StudyJob }) => void) | null = null;
process.on('message', (m: { type: string; job?: StudyJob }) => {
  if (waiter) { const w = waiter; waiter = null; w(m); } else inbox.push(m);
});
process.on('disconnect', () => process.exit(0));

function next(): Promise<{ type: string; job?: StudyJob }> {
  const m = inbox.shift();
  return m ? Promise.resolve(m) : new Promise((resolve) => { waiter = resolve; });
}

function send(m: unknown): Promise<void> {
  return new Promise((resolve, reject) => process.send!(m, undefined, {}, (err) => (err ? reject(err) : resolve())));
}

async function barrier(): Promise<void> {
  await send({ type: 'ready' });
  await next();
}

function delta(a: AllocatorStats, b: AllocatorStats): AllocatorStats {
  return {
    allocs: b.allocs - a.allocs, frees: b.frees - a.frees, allocOps: b.allocOps - a.allocOps, freeOps: b.freeOps - a.freeOps,
    casRetries: b.casRetries - a.casRetries, casRetriesMax: b.casRetriesMax,
  };
}

function freeAll(a: StudyAllocator, blocks: Float64Array): FreedSample {
  const r: FreedSample = { freed: 0, errors: 0 };
  for (let i = 0; i < blocks.length; i++) {
    if (blocks[i] === 0) continue;
    try { a.free(blocks[i]); r.freed++; } catch (err) { r.errors++; r.firstError ??= (err as Error).message; }
    blocks[i] = 0;
  }
  return r;
}

async function micro(a: StudyAllocator, job: MicroStudyJob): Promise<void> {
  const rng = new Prng(job.seed);
  for (const cls of job.classes) {
    await barrier();
    const blocks = new Float64Array(job.blocks);
    for (let i = 0; i < blocks.length; i++) blocks[i] = a.allocClass(cls);
    const perm = new Int32Array(job.blocks).map((_, i) => i);
    const lat = new Float64Array(Math.ceil((job.epochs * job.churn) / LATENCY_STRIDE));
    const before = a.stats();
    await barrier();
    let k = 0;
    let n = 0;
    const t0 = performance.now();
    for (let e = 0; e < job.epochs; e++) {
      for (let j = 0; j < job.churn; j++) {
        const r = j + rng.below(job.blocks - j);
        const slot = perm[r];
        perm[r] = perm[j];
        perm[j] = slot;
        a.free(blocks[slot]);
        blocks[slot] = 0;
      }
      for (let j = 0; j < job.churn; j++, n++) {
        if (n % LATENCY_STRIDE === 0) {
          const s = performance.now();
          blocks[perm[j]] = a.allocClass(cls);
          lat[k++] = (performance.now() - s) * 1e6;
        } else blocks[perm[j]] = a.allocClass(cls);
      }
    }
    const loopMs = performance.now() - t0;
    const sample: LoopSample = { loopMs, latencyNs: lat.slice(0, k), delta: delta(before, a.stats()), requestedBytes: 0, errors: 0 };
    await send({ type: 'result', result: sample });
    await barrier();
    await send({ type: 'result', result: freeAll(a, blocks) });
  }
}

async function trace(a: StudyAllocator, job: TraceStudyJob): Promise<void> {
  for (const path of job.paths) {
    const t = readTrace(path);
    const n = t.classes.length;
    const blocks = new Float64Array(n);
    const lat = new Float64Array(n);
    const arrivalsMs = t.arrivalsUs.map((us) => us / 1000);
    for (let e = 0; e < job.epochs; e++) {
      await barrier();
      const before = a.stats();
      let k = 0;
      let errors = 0;
      let firstError: string | undefined;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        while (performance.now() - t0 < arrivalsMs[i]) { /* wait for the arrival */ }
        const s = performance.now();
        try {
          blocks[i] = a.allocClass(t.classes[i]);
          lat[k++] = (performance.now() - s) * 1e6;
        } catch (err) {
          blocks[i] = 0;
          errors++;
          firstError ??= (err as Error).message;
        }
      }
      const loopMs = performance.now() - t0;
      const freed = freeAll(a, blocks);
      const sample: LoopSample = {
        loopMs, latencyNs: lat.slice(0, k), delta: delta(before, a.stats()), requestedBytes: 0,
        errors: errors + freed.errors, ...(firstError ?? freed.firstError ? { firstError: firstError ?? freed.firstError } : {}),
      };
      await send({ type: 'result', result: sample });
    }
  }
}

async function memtest(a: StudyAllocator, job: MemtestStudyJob): Promise<void> {
  const rng = new Prng(job.seed);
  const blocks = new Float64Array(job.count);
  const sizes = new Float64Array(job.count);
  const lat = new Float64Array(job.count);
  const span = job.max - job.min + 1;
  for (let r = 0; r < job.rounds; r++) {
    let requested = 0;
    for (let i = 0; i < job.count; i++) { sizes[i] = job.min + rng.below(span); requested += sizes[i]; }
    await barrier();
    const before = a.stats();
    let errors = 0;
    let firstError: string | undefined;
    const t0 = performance.now();
    for (let i = 0; i < job.count; i++) {
      const s = performance.now();
      try {
        blocks[i] = a.alloc(sizes[i]);
      } catch (err) {
        blocks[i] = 0;
        requested -= sizes[i];
        errors++;
        firstError ??= (err as Error).message;
      }
      lat[i] = (performance.now() - s) * 1e6;
    }
    const loopMs = performance.now() - t0;
    const sample: LoopSample = { loopMs, latencyNs: lat.slice(), delta: delta(before, a.stats()), requestedBytes: requested, errors, ...(firstError ? { firstError } : {}) };
    await send({ type: 'result', result: sample });
    await barrier();
    await send({ type: 'result', result: freeAll(a, blocks) });
  }
}

async function main(): Promise<void> {
  const m = await next();
  const job = m.job!;
  let a: StudyAllocator | undefined;
  try {
    a = await attachAllocator(job.spec, job.seed);
    if (job.kind === 'micro') await micro(a, job);
    else if (job.kind === 'trace') await trace(a, job);
    else await memtest(a, job);
  } finally {
    a?.close();
  }
}

main().catch(async (err: Error & { code?: string }) => {
  try { await send({ type: 'error', code: err.code ?? 'WORKER_ERROR', message: err.message }); } finally { process.exit(1); }
});
