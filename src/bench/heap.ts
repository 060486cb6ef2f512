/**
 * The heap benchmark (issue 5): ns per alloc+free pair of `pool.heap` for
 * small objects, with 1 and more processes on one shm pool, against
 * @thi.ng/malloc's MemPool (a well-kept TypeScript allocator over one
 * ArrayBuffer, one process) on the same pattern (src/bench/heap-pattern.ts)
 * in the same process, so the ratio is measured under the same conditions.
 * MemPool is a dev dependency: without it the baseline is skipped with a
 * reason.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DmemError } from '../errors.js';
import { openBenchPool } from './bench-pool.js';
import { runPattern, type ObjectAllocator, type PatternResult } from './heap-pattern.js';
import { deriveSeed } from './prng.js';

const WORKER = fileURLToPath(new URL('./heap-worker.js', import.meta.url));

/** Options of `runHeapBench`. */
export interface HeapBenchOptions {
  /** Object sizes (bytes). */
  sizes: number[];
  /** Process counts for dmem (the baseline always runs in this process). */
  procs: number[];
  live: number;
  rounds: number;
  churn: number;
  seed: number;
  /** Untimed rounds before the timed ones (src/bench/heap-pattern.ts); default 0. */
  warmupRounds?: number;
}

/** One (size, procs) cell. */
export interface HeapBenchRow {
  size: number;
  procs: number;
  /** dmem: mean over the processes of each one's ns per pair. */
  dmemNsPerPair: number;
  /** Pairs per second over all processes. */
  dmemPairsPerSec: number;
  /** MemPool's ns per pair in this process, right before; null when @thi.ng/malloc is absent. */
  baselineNsPerPair: number | null;
  /** dmem / baseline (below 1: dmem is faster). */
  ratio: number | null;
}

type MemPoolCtor = new (opts: { size: number }) => { malloc(n: number): number; free(p: number): boolean };

/** Loads @thi.ng/malloc's MemPool, or returns the reason it is unavailable. */
export async function loadMemPool(): Promise<MemPoolCtor | string> {
  try {
    const mod = (await import('@thi.ng/malloc')) as unknown as { MemPool: MemPoolCtor };
    return mod.MemPool;
  } catch (err) {
    return `@thi.ng/malloc is not installed (a dev dependency: npm ci in the repository): ${(err as Error).message}`;
  }
}

/** Runs the pattern on a fresh MemPool in this process. */
export function baselineRun(MemPool: MemPoolCtor, o: HeapBenchOptions, size: number): PatternResult {
  const pool = new MemPool({ size: Math.max(64 * 2 ** 20, o.live * size * 4) });
  const a: ObjectAllocator = { alloc: (n) => pool.malloc(n), free: (p) => { pool.free(p); } };
  return runPattern(a, size, o.live, o.rounds, o.churn, o.seed, o.warmupRounds ?? 0);
}

/** Runs dmem's heap on a temporary shm pool with `procs` worker processes (started together). */
export async function dmemRun(o: HeapBenchOptions, size: number, procs: number): Promise<PatternResult[]> {
  const bp = await openBenchPool(undefined, undefined, 64 * 2 ** 20 + procs * o.live * size * 2, procs);
  try {
    const kids = Array.from({ length: procs }, (_, i) => fork(WORKER,
      [bp.uri, String(size), String(o.live), String(o.rounds), String(o.churn), String(deriveSeed(o.seed, i)), String(o.warmupRounds ?? 0)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    try {
      const next = (k: (typeof kids)[number]): Promise<unknown> => new Promise((resolve, reject) => {
        k.once('message', resolve);
        k.once('exit', (code) => reject(new DmemError('WORKER_EXIT', `heap bench worker exited (${code}) before reporting`)));
      });
      await Promise.all(kids.map(next));
      const done = kids.map(next);
      for (const k of kids) k.send('go');
      const results = (await Promise.all(done)) as Array<PatternResult | { error: string }>;
      for (const r of results) if ('error' in r) throw new DmemError('WORKER_FAILED', `heap bench worker failed: ${r.error}`);
      return results as PatternResult[];
    } finally {
      for (const k of kids) if (k.exitCode === null) k.kill();
    }
  } finally {
    bp.release();
  }
}

/** Every (size, procs) cell once, the baseline right before each size's dmem runs. */
export async function runHeapBench(o: HeapBenchOptions): Promise<{ rows: HeapBenchRow[]; baselineSkipped: string | null }> {
  const MemPool = await loadMemPool();
  const rows: HeapBenchRow[] = [];
  for (const size of o.sizes) {
    const base = typeof MemPool === 'string' ? null : baselineRun(MemPool, o, size).nsPerPair;
    for (const procs of o.procs) {
      const rs = await dmemRun(o, size, procs);
      const ns = rs.reduce((a, r) => a + r.nsPerPair, 0) / rs.length;
      const pps = rs.reduce((a, r) => a + r.pairs / (r.elapsedNs / 1e9), 0);
      rows.push({ size, procs, dmemNsPerPair: ns, dmemPairsPerSec: pps, baselineNsPerPair: base, ratio: base === null ? null : ns / base });
    }
  }
  return { rows, baselineSkipped: typeof MemPool === 'string' ? MemPool : null };
}
