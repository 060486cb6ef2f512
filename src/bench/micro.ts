/**
 * FineMem's "frag" microbenchmark (OSDI '25, section 6.2), run by P client
 * processes on one shared pool: each process allocates N blocks of size
 * class c, then for E epochs frees M of its blocks chosen at random and
 * allocates M again. The free/alloc churn fragments the pool's bitmaps the
 * way a long-running application does, and the processes contend on the
 * same span and section headers.
 *
 * Per class, the parent (src/bench/fleet.ts) takes a census, lets the
 * processes allocate their N blocks (barrier 1), starts every epoch loop at
 * once (barrier 2), gathers the measurements, has the processes free all
 * their blocks once every loop is done (barrier 3, so no process runs its
 * loop on a pool that others are already emptying), and checks with a
 * second census that the pool holds no more chunks than before the class:
 * a leak is reported, never hidden.
 *
 * With `warmupEpochs` W > 0 every process runs W untimed epochs of the same
 * loop after its setup and before the start barrier (src/bench/worker.ts),
 * so the timed epochs measure compiled code and a settled cache instead of
 * V8 compiling the loop (the first hundred epochs of a fresh process are
 * several times slower than the rest). The default is 0: no warm-up.
 */
import { DmemError, InvalidArgumentError } from '../errors.js';
import { Fleet } from './fleet.js';
import { openBenchPool, TEMP_POOL_SLACK_BYTES } from './bench-pool.js';
import { summarize, type LatencySummary } from './percentile.js';
import { deriveSeed } from './prng.js';
import type { FreedReport, MicroJob, MicroSample } from './protocol.js';

/** A micro job with the untimed warm-up epochs the worker runs before the timed loop (MicroOptions.warmupEpochs). */
export interface WarmMicroJob extends MicroJob {
  warmupEpochs?: number;
}

/** A worker's micro sample with the allocations its warm-up made (from its client's counters). */
export interface WarmMicroSample extends MicroSample {
  warmupAllocs: number;
}

/** Options of `runMicro`. */
export interface MicroOptions {
  /** Size classes to run, each 0..9 (block = 4 KiB * 2^c), in this order. */
  classes: number[];
  /** Client processes (P >= 1, default 2). */
  procs?: number;
  /** Epochs per class (E >= 1, default 1000). */
  epochs?: number;
  /** Untimed epochs each process runs first, the same loop (W >= 0, default 0; see the file comment). */
  warmupEpochs?: number;
  /** Blocks each process holds (N >= 1, default 1000). */
  blocks?: number;
  /** Blocks freed and re-allocated per epoch (1 <= M <= N, default 250). */
  churn?: number;
  /** Seed of the processes' PRNGs (32-bit; default random, reported in the result). */
  seed?: number;
  /** Existing pool name (shm:NAME) to run on; default a temporary pool sized for the largest class. */
  pool?: string;
  /** With `pool`: bytes to create it with when it does not exist. */
  size?: number;
  /** Aborting stops the workers and removes a temporary pool; runMicro then rejects with code ABORTED. */
  signal?: AbortSignal;
  /** Called at the start and after each class with (classes done, classes in all). */
  onProgress?: (done: number, total: number) => void;
  /** Called with each class's result as soon as it is measured (so an interrupted run keeps what finished). */
  onResult?: (r: MicroResult) => void;
}

/** The measurements of one size class. */
export interface MicroResult {
  /** Size class (0..9) and its block size in bytes. */
  cls: number;
  blockBytes: number;
  procs: number;
  epochs: number;
  /** Untimed epochs each process ran before the timed ones. */
  warmupEpochs: number;
  /** Allocations all processes made in those epochs (their clients' counters; warmupEpochs * churn * procs). */
  warmupAllocs: number;
  blocks: number;
  churn: number;
  seed: number;
  /** Pool URI the run used. */
  pool: string;
  /** Allocations and frees in the epoch loops of all processes. */
  allocs: number;
  frees: number;
  /** The slowest process's epoch-loop wall time (ms). */
  loopMs: number;
  /** (allocs + frees) / loopMs, per second. */
  opsPerSec: number;
  /** Latency of every allocation of every process's epoch loop (ns). */
  latency: LatencySummary;
  /** Alloc CAS retries: mean per allocation over the loops; max per allocation (since each client attached). */
  casRetries: { perAlloc: number; max: number };
  /** CAS issued per operation (alloc or free) in the loops. */
  casPerOp: number;
  /** Transport operations (load, store, CAS, bulk read) per allocation and per free in the loops. */
  transportOps: { perAlloc: number; perFree: number };
  /** Chunks held in the pool (census) before the class and after every process freed all its blocks. */
  heldChunksBefore: number;
  heldChunksAfter: number;
  /** Frees that failed when the processes released their blocks (must be 0). */
  freeErrors: number;
}

const CHUNK_BYTES = 4096;

/** Block size of size class `cls` in bytes (4 KiB * 2^cls). */
export function classBytes(cls: number): number {
  return CHUNK_BYTES * 2 ** cls;
}

/**
 * Bytes of the temporary pool for a micro run: P * N * (largest block) *
 * 1.25 + 64 MiB (the pool file is sparse, so unused bytes cost nothing).
 */
export function microPoolBytes(classes: readonly number[], procs: number, blocks: number): number {
  const largest = Math.max(...classes.map(classBytes));
  return Math.ceil(procs * blocks * largest * 1.25) + TEMP_POOL_SLACK_BYTES;
}

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${v}`);
}

/**
 * Runs the micro benchmark, one size class after another, with `procs`
 * worker processes. Resolves with one result per class (in `classes` order),
 * also when a class leaked chunks or failed frees: callers check
 * `heldChunksAfter !== heldChunksBefore` and `freeErrors`.
 * @throws InvalidArgumentError for a bad option; DmemError from a worker (e.g. POOL_EXHAUSTED
 *   when the pool is too small, with the worker's message); WORKER_EXIT when a worker dies;
 *   ABORTED on `signal`; every error of `openPool` for the pool
 */
export async function runMicro(opts: MicroOptions): Promise<MicroResult[]> {
  const procs = opts.procs ?? 2;
  const epochs = opts.epochs ?? 1000;
  const warmupEpochs = opts.warmupEpochs ?? 0;
  const blocks = opts.blocks ?? 1000;
  const churn = opts.churn ?? 250;
  const seed = (opts.seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
  if (opts.classes.length === 0) throw new InvalidArgumentError('classes: give at least one size class (0..9)');
  for (const c of opts.classes) checkInt('size class', c, 0, 9);
  checkInt('procs', procs, 1, 4094);
  checkInt('epochs', epochs, 1, 1e9);
  checkInt('warmupEpochs', warmupEpochs, 0, 1e9);
  checkInt('blocks', blocks, 1, 1e8);
  checkInt('churn', churn, 1, blocks);
  if (opts.signal?.aborted) throw new DmemError('ABORTED', 'micro benchmark interrupted before it started');

  const bp = await openBenchPool(opts.pool, opts.size, microPoolBytes(opts.classes, procs, blocks), procs);
  let fleet: Fleet | undefined;
  const onAbort = (): void => fleet?.fail(new DmemError('ABORTED', 'micro benchmark interrupted'));
  opts.signal?.addEventListener('abort', onAbort);
  try {
    if (opts.signal?.aborted) throw new DmemError('ABORTED', 'micro benchmark interrupted');
    const jobs: WarmMicroJob[] = [];
    for (let i = 0; i < procs; i++) {
      jobs.push({ kind: 'micro', uri: bp.uri, classes: opts.classes, blocks, churn, epochs, warmupEpochs, seed: deriveSeed(seed, i) });
    }
    fleet = new Fleet(jobs);
    const results: MicroResult[] = [];
    opts.onProgress?.(0, opts.classes.length);
    for (const cls of opts.classes) {
      const heldChunksBefore = bp.pool.census().chunks.held;
      await fleet.barrier(); // workers may allocate (setup)
      await fleet.barrier(); // every setup done: start the epoch loops
      const samples = await fleet.results<WarmMicroSample>('micro');
      await fleet.barrier(); // every loop done: free all blocks
      const freed = await fleet.results<FreedReport>('freed');
      const heldChunksAfter = bp.pool.census().chunks.held;
      const r = summarizeClass(cls, samples, freed, { procs, epochs, warmupEpochs, blocks, churn, seed, pool: bp.uri, heldChunksBefore, heldChunksAfter });
      results.push(r);
      opts.onResult?.(r);
      opts.onProgress?.(results.length, opts.classes.length);
    }
    return results;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await fleet?.stop();
    bp.release();
  }
}

type RunFacts = Pick<MicroResult, 'procs' | 'epochs' | 'warmupEpochs' | 'blocks' | 'churn' | 'seed' | 'pool' | 'heldChunksBefore' | 'heldChunksAfter'>;

function summarizeClass(cls: number, samples: WarmMicroSample[], freed: FreedReport[], facts: RunFacts): MicroResult {
  let allocs = 0;
  let frees = 0;
  let loopMs = 0;
  let cas = 0;
  let retries = 0;
  let retriesMax = 0;
  let allocOps = 0;
  let freeOps = 0;
  let warmupAllocs = 0;
  for (const s of samples) {
    warmupAllocs += s.warmupAllocs;
    allocs += s.allocs;
    frees += s.frees;
    loopMs = Math.max(loopMs, s.loopMs);
    cas += s.casAttempts;
    retries += s.casRetries;
    retriesMax = Math.max(retriesMax, s.casRetriesMax);
    allocOps += s.allocTransportOps;
    freeOps += s.freeTransportOps;
  }
  return {
    cls,
    blockBytes: classBytes(cls),
    ...facts,
    warmupAllocs,
    allocs,
    frees,
    loopMs,
    opsPerSec: loopMs > 0 ? ((allocs + frees) / loopMs) * 1000 : 0,
    latency: summarize(samples.map((s) => s.latencyNs)),
    casRetries: { perAlloc: allocs ? retries / allocs : 0, max: retriesMax },
    casPerOp: allocs + frees ? cas / (allocs + frees) : 0,
    transportOps: { perAlloc: allocs ? allocOps / allocs : 0, perFree: frees ? freeOps / frees : 0 },
    freeErrors: freed.reduce((a, f) => a + f.errors, 0),
  };
}
