/**
 * The allocator study's runners (issue 14): the micro ("frag"), trace
 * ("stage") and memtest (MIND) benchmarks for any allocator of
 * src/study/allocator.ts, each on a fresh temporary pool per allocator and
 * measurement, with P worker processes. Results are plain objects, ready
 * for JSON lines, tables and plots (src/study/plot.ts).
 */
import { hostname, cpus } from 'node:os';
import { readFileSync, statfsSync } from 'node:fs';
import { basename } from 'node:path';
import { DmemError, InvalidArgumentError } from '../errors.js';
import { summarize, type LatencySummary } from '../bench/percentile.js';
import { deriveSeed } from '../bench/prng.js';
import { readTrace } from '../bench/trace-file.js';
import type { AllocatorName } from './allocator.js';
import { StudyFleet } from './fleet.js';
import { createStudyPool, type StudyPool } from './pools.js';
import type { FreedSample, LoopSample, StudyJob } from './protocol.js';
import type { ServerReport } from '../baselines/server.js';

/** Metadata written with every result set. */
export interface RunMeta {
  version: string;
  time: string;
  host: string;
  cpus: number;
  node: string;
}

/** The run's metadata: package version, ISO time, host name, CPU count, Node version. */
export function runMeta(): RunMeta {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return { version: pkg.version, time: new Date().toISOString(), host: hostname(), cpus: cpus().length, node: process.version };
}

/** Counters every study result carries. */
export interface StudyCounters {
  allocator: AllocatorName;
  procs: number;
  allocs: number;
  latency: LatencySummary;
  /** Allocations per second over all processes: allocs / the slowest process's loop time. */
  allocsPerSec: number;
  /** Transport operations per allocation and per free (client side; server: its request and wait). */
  opsPerAlloc: number;
  opsPerFree: number;
  /** CAS retries per allocation (mean) and the most of one allocation (server: the server's own). */
  retriesMean: number;
  retriesMax: number;
  errors: number;
  firstError?: string;
}

function combine(allocator: AllocatorName, samples: LoopSample[], server: ServerReport | null): StudyCounters {
  let allocs = 0; let frees = 0; let aOps = 0; let fOps = 0; let retries = 0; let rMax = 0; let loopMs = 0; let errors = 0;
  let firstError: string | undefined;
  for (const s of samples) {
    allocs += s.delta.allocs; frees += s.delta.frees; aOps += s.delta.allocOps; fOps += s.delta.freeOps;
    retries += s.delta.casRetries; rMax = Math.max(rMax, s.delta.casRetriesMax); loopMs = Math.max(loopMs, s.loopMs);
    errors += s.errors; firstError ??= s.firstError;
  }
  if (server) {
    retries = server.stats.casRetries;
    rMax = server.stats.casRetriesMax;
  }
  return {
    allocator, procs: samples.length, allocs, latency: summarize(samples.map((s) => s.latencyNs)),
    allocsPerSec: loopMs > 0 ? (allocs / loopMs) * 1000 : 0,
    opsPerAlloc: allocs ? aOps / allocs : 0, opsPerFree: frees ? fOps / frees : 0,
    retriesMean: allocs ? retries / (server ? server.stats.allocs || 1 : allocs) : 0, retriesMax: rMax,
    errors, ...(firstError ? { firstError } : {}),
  };
}

/** Runs `jobs` (one per process) on a fresh pool, with `steps` driving the fleet; releases everything. */
async function withFleet<T>(allocator: AllocatorName, bytes: number, procs: number, makeJobs: (p: StudyPool) => StudyJob[],
  steps: (fleet: StudyFleet, pool: StudyPool) => Promise<T>): Promise<{ value: T; server: ServerReport | null }> {
  const pool = await createStudyPool(allocator, poolBytes(bytes), procs);
  let fleet: StudyFleet | undefined;
  let value: T;
  let server: ServerReport | null = null;
  try {
    fleet = new StudyFleet(makeJobs(pool));
    value = await steps(fleet, pool);
  } finally {
    await fleet?.stop();
    server = await pool.release();
  }
  return { value, server };
}

const SLACK = 64 * 2 ** 20;

/**
 * Pool bytes for a run that needs `bytes`: at most 90 % of /dev/shm's
 * capacity (the pool file is sparse, but the filesystem refuses a larger
 * length). A run that needs more reports its failed allocations as errors.
 */
function poolBytes(bytes: number): number {
  return Math.min(Math.ceil(bytes), shmCapacity());
}

/** 90 % of /dev/shm's size in bytes (Infinity when it cannot be read). */
export function shmCapacity(): number {
  try {
    const st = statfsSync('/dev/shm');
    return Math.floor(st.blocks * st.bsize * 0.9);
  } catch {
    return Infinity; // no /dev/shm: openShm reports that
  }
}

/**
 * Why trace `path` cannot be replayed by `procs` processes here, or null:
 * its blocks alone (procs * sum of blocks) exceed the largest pool
 * /dev/shm holds. Such a replay would fail most allocations, and the
 * one-sided array would scan the whole pool for each.
 */
export function traceTooLarge(path: string, procs: number): string | null {
  const need = procs * readTrace(path).bytes + SLACK;
  const cap = shmCapacity();
  return need > cap ? `needs ${(need / 2 ** 30).toFixed(1)} GiB of pool for ${procs} processes, /dev/shm holds ${(cap / 2 ** 30).toFixed(1)} GiB` : null;
}
function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
}

// ------------------------------------------------------------------ micro

export interface StudyMicroResult extends StudyCounters { test: 'micro'; cls: number; blockBytes: number; blocks: number; churn: number; epochs: number; seed: number; freeErrors: number }

/** The frag microbenchmark for one allocator and one class (P processes, N blocks, M churn, E epochs). */
export async function studyMicro(allocator: AllocatorName, o: { cls: number; procs: number; blocks: number; churn: number; epochs: number; seed: number }): Promise<StudyMicroResult> {
  checkInt('class', o.cls, 0, 9);
  checkInt('procs', o.procs, 1, 1024);
  const bytes = o.procs * o.blocks * 4096 * 2 ** o.cls * 1.5 + SLACK;
  const { value, server } = await withFleet(allocator, bytes, o.procs,
    (p) => Array.from({ length: o.procs }, (_, i) => ({ kind: 'micro' as const, spec: p.spec, seed: deriveSeed(o.seed, i), classes: [o.cls], blocks: o.blocks, churn: o.churn, epochs: o.epochs })),
    async (fleet) => {
      await fleet.barrier();
      await fleet.barrier();
      const samples = await fleet.results<LoopSample>();
      await fleet.barrier();
      const freed = await fleet.results<FreedSample>();
      return { samples, freed };
    });
  return {
    test: 'micro', cls: o.cls, blockBytes: 4096 * 2 ** o.cls, blocks: o.blocks, churn: o.churn, epochs: o.epochs, seed: o.seed,
    ...combine(allocator, value.samples, server), freeErrors: value.freed.reduce((a, f) => a + f.errors, 0),
  };
}

// ------------------------------------------------------------------ trace

export interface StudyTraceResult extends StudyCounters { test: 'trace'; trace: string; requests: number; traceMs: number; replayMs: number; ratio: number | null; epochs: number }

/** FineMem's stage replay of one trace file for one allocator. */
export async function studyTrace(allocator: AllocatorName, path: string, o: { procs: number; epochs: number; seed: number }): Promise<StudyTraceResult> {
  const t = readTrace(path);
  // 1.5x: the one-sided array's aligned blocks leave holes a bitmap allocator does not.
  const bytes = o.procs * t.bytes * 1.5 + SLACK;
  const { value, server } = await withFleet(allocator, bytes, o.procs,
    (p) => Array.from({ length: o.procs }, (_, i) => ({ kind: 'trace' as const, spec: p.spec, seed: deriveSeed(o.seed, i), paths: [path], epochs: o.epochs })),
    async (fleet) => {
      const all: LoopSample[] = [];
      for (let e = 0; e < o.epochs; e++) {
        await fleet.barrier();
        all.push(...await fleet.results<LoopSample>());
      }
      return all;
    });
  const traceMs = t.durationUs / 1000;
  const replayMs = value.reduce((a, s) => a + s.loopMs, 0) / value.length;
  const c = combine(allocator, value, server);
  c.procs = o.procs;
  return { test: 'trace', trace: basename(path), requests: t.classes.length, traceMs, replayMs, ratio: traceMs > 0 ? replayMs / traceMs : null, epochs: o.epochs, ...c };
}

// ------------------------------------------------------------------ memtest

export interface MemtestRound extends StudyCounters {
  test: 'memtest';
  round: number;
  count: number;
  minBytes: number;
  maxBytes: number;
  seed: number;
  /** Slowest process's time for its `count` allocations (ms). */
  roundMs: number;
  requestedBytes: number;
  reservedBytes: number;
  /** reservedBytes / requestedBytes (1 = no waste). */
  fragmentation: number;
  freeErrors: number;
}

/** Options of `memtest`. */
export interface MemtestOptions { rounds: number; count: number; min: number; max: number; procs: number; seed: number; onRound?: (r: MemtestRound) => void }

/**
 * The MIND memtest for one allocator: `rounds` rounds; in each, every one of
 * P processes allocates `count` blocks of uniformly random sizes in [min, max]
 * (timed), the parent reads the bytes reserved pool-wide, then all free.
 */
export async function memtest(allocator: AllocatorName, o: MemtestOptions): Promise<MemtestRound[]> {
  checkInt('rounds', o.rounds, 1, 1e6);
  checkInt('count', o.count, 1, 1e6);
  checkInt('min', o.min, 1, 2 ** 40);
  checkInt('max', o.max, o.min, 2 ** 40);
  checkInt('procs', o.procs, 1, 1024);
  if (allocator === 'onesided-array' && o.max > 32 * 2 ** 20) throw new InvalidArgumentError(`onesided-array allocates at most 32 MiB per block; --max ${o.max} is larger`);
  // Expected demand with room for rounding (onesided: to a power of two, up to 2x) and alignment holes.
  const bytes = o.procs * o.count * ((o.min + o.max) / 2) * 2.2 + o.max * 4 + SLACK;
  const { value } = await withFleet(allocator, bytes, o.procs,
    (p) => Array.from({ length: o.procs }, (_, i) => ({ kind: 'memtest' as const, spec: p.spec, seed: deriveSeed(o.seed, i), rounds: o.rounds, count: o.count, min: o.min, max: o.max })),
    async (fleet, pool) => {
      const rounds: MemtestRound[] = [];
      for (let r = 0; r < o.rounds; r++) {
        await fleet.barrier();
        const samples = await fleet.results<LoopSample>();
        const reservedBytes = pool.reservedBytes();
        await fleet.barrier();
        const freed = await fleet.results<FreedSample>();
        const requestedBytes = samples.reduce((a, s) => a + s.requestedBytes, 0);
        const row: MemtestRound = {
          test: 'memtest', round: r, count: o.count, minBytes: o.min, maxBytes: o.max, seed: o.seed,
          roundMs: Math.max(...samples.map((s) => s.loopMs)), requestedBytes, reservedBytes,
          fragmentation: requestedBytes > 0 ? reservedBytes / requestedBytes : 0,
          ...combine(allocator, samples, null), freeErrors: freed.reduce((a, f) => a + f.errors, 0),
        };
        rounds.push(row);
        o.onRound?.(row);
      }
      return rounds;
    });
  return value;
}

/** Throws BENCH_ERRORS naming every result with errors (after the caller printed them). */
export function checkStudy(rows: ReadonlyArray<StudyCounters & { freeErrors?: number }>): void {
  const bad = rows.filter((r) => r.errors > 0 || (r.freeErrors ?? 0) > 0);
  if (bad.length > 0) throw new DmemError('BENCH_ERRORS', `study run had failures: ${bad.map((r) => `${r.allocator}: ${r.errors} errors${r.firstError ? ` (first: ${r.firstError})` : ''}, ${r.freeErrors ?? 0} failed frees`).join('; ')}`);
}
