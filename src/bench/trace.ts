/**
 * FineMem's "stage" trace replay (OSDI '25, section 6.2;
 * ../shared/traces/README.md): every client process replays a whole
 * allocation trace per epoch, allocating each request's size class when its
 * arrival time has passed (busy-waiting, never waiting when behind), then
 * frees every block, then waits at a barrier for the next epoch. It answers
 * two questions: how long one allocation takes under a real arrival
 * pattern, and whether the allocator keeps up with the arrival rate (replay
 * time against the trace's own duration; 1.0 means it kept up).
 */
import { basename } from 'node:path';
import { DmemError, InvalidArgumentError } from '../errors.js';
import { Fleet } from './fleet.js';
import { openBenchPool, TEMP_POOL_SLACK_BYTES } from './bench-pool.js';
import { summarize, type LatencySummary } from './percentile.js';
import { deriveSeed } from './prng.js';
import { readTrace, type Trace } from './trace-file.js';
import type { TraceJob, TraceSample } from './protocol.js';

/** Options of `runTrace`. */
export interface TraceOptions {
  /** Trace files to replay, one after another. */
  paths: string[];
  /** Client processes, each replaying the whole trace (default 2). */
  procs?: number;
  /** Replays of each trace per process (default 1). */
  epochs?: number;
  /** Existing pool name (shm:NAME); default a temporary pool sized for the largest trace. */
  pool?: string;
  /** With `pool`: bytes to create it with when it does not exist. */
  size?: number;
  /** Seed of the clients' core PRNGs (default random). */
  seed?: number;
  /** Aborting stops the workers and removes a temporary pool; runTrace then rejects with code ABORTED. */
  signal?: AbortSignal;
  /** Called at the start and after each epoch with (epochs done, epochs in all, over every trace). */
  onProgress?: (done: number, total: number) => void;
  /** Called with each trace's result as soon as it is measured (so an interrupted run keeps what finished). */
  onResult?: (r: TraceResult) => void;
}

/** The measurements of one trace. */
export interface TraceResult {
  /** File name and path of the trace. */
  trace: string;
  path: string;
  procs: number;
  epochs: number;
  /** Requests in the trace (each process replays all of them per epoch). */
  requests: number;
  pool: string;
  /** The trace's own duration: its last arrival (ms). */
  traceMs: number;
  /** Replay time (epoch start to the last allocation's return, ms): mean and max over processes and epochs. */
  replayMs: { mean: number; max: number };
  /** replayMs / traceMs (mean and max); null for a trace of duration 0. */
  ratio: { mean: number; max: number } | null;
  /** Successful allocations over all processes and epochs. */
  allocs: number;
  /** Failed allocations and frees (PoolExhausted and any other error); must be 0. */
  errors: number;
  /** The first failure's message, when errors > 0. */
  firstError?: string;
  /** Latency of every successful allocation (ns). */
  latency: LatencySummary;
  /** Alloc CAS retries: mean per allocation; max per allocation. */
  casRetries: { perAlloc: number; max: number };
  /** Transport operations per allocation and per free. */
  transportOps: { perAlloc: number; perFree: number };
  /** Chunks held in the pool (census) before and after the replays. */
  heldChunksBefore: number;
  heldChunksAfter: number;
}

/**
 * Bytes of the temporary pool for replaying `traces` with `procs`
 * processes: procs * (bytes of the largest trace) * 1.1 + 64 MiB (sparse:
 * allocation touches only metadata).
 */
export function tracePoolBytes(traces: readonly Trace[], procs: number): number {
  const largest = Math.max(0, ...traces.map((t) => t.bytes));
  return Math.ceil(procs * largest * 1.1) + TEMP_POOL_SLACK_BYTES;
}

/**
 * Replays every trace with `procs` worker processes and `epochs` epochs.
 * Resolves with one result per trace (in `paths` order), also when
 * allocations failed: callers check `errors` and the held chunks.
 * @throws InvalidArgumentError for a bad option or an unreadable or malformed trace (names the file and line);
 *   DmemError from a worker; WORKER_EXIT when a worker dies; ABORTED on `signal`; every error of `openPool`
 */
export async function runTrace(opts: TraceOptions): Promise<TraceResult[]> {
  const procs = opts.procs ?? 2;
  const epochs = opts.epochs ?? 1;
  const seed = (opts.seed ?? Math.floor(Math.random() * 2 ** 32)) >>> 0;
  if (opts.paths.length === 0) throw new InvalidArgumentError('give at least one trace file');
  if (!Number.isSafeInteger(procs) || procs < 1 || procs > 4094) throw new InvalidArgumentError(`procs must be an integer from 1 to 4094, got ${procs}`);
  if (!Number.isSafeInteger(epochs) || epochs < 1) throw new InvalidArgumentError(`epochs must be a positive integer, got ${epochs}`);
  const traces = opts.paths.map(readTrace);
  const poolBytes = tracePoolBytes(traces, procs);
  if (opts.pool === undefined && poolBytes > MAX_TEMP_POOL_BYTES) {
    const big = traces.reduce((a, t) => (t.bytes > a.bytes ? t : a));
    throw new InvalidArgumentError(`trace ${big.path} allocates ${big.bytes} bytes per replay; with ${procs} processes the temporary pool would be ${poolBytes} bytes, more than a pool can address (${MAX_TEMP_POOL_BYTES} bytes): use fewer processes or a smaller trace`);
  }
  if (opts.signal?.aborted) throw new DmemError('ABORTED', 'trace replay interrupted before it started');

  const bp = await openBenchPool(opts.pool, opts.size, poolBytes, procs);
  let fleet: Fleet | undefined;
  const onAbort = (): void => fleet?.fail(new DmemError('ABORTED', 'trace replay interrupted'));
  opts.signal?.addEventListener('abort', onAbort);
  try {
    if (opts.signal?.aborted) throw new DmemError('ABORTED', 'trace replay interrupted');
    const jobs: TraceJob[] = [];
    for (let i = 0; i < procs; i++) jobs.push({ kind: 'trace', uri: bp.uri, paths: opts.paths, epochs, seed: deriveSeed(seed, i) });
    fleet = new Fleet(jobs);
    const results: TraceResult[] = [];
    let done = 0;
    opts.onProgress?.(0, traces.length * epochs);
    for (const trace of traces) {
      const heldChunksBefore = bp.pool.census().chunks.held;
      const samples: TraceSample[] = [];
      for (let e = 0; e < epochs; e++) {
        await fleet.barrier();
        samples.push(...(await fleet.results<TraceSample>('trace')));
        opts.onProgress?.(++done, traces.length * epochs);
      }
      const heldChunksAfter = bp.pool.census().chunks.held;
      const r = summarizeTrace(trace, samples, { procs, epochs, pool: bp.uri, heldChunksBefore, heldChunksAfter });
      results.push(r);
      opts.onResult?.(r);
    }
    return results;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await fleet?.stop();
    bp.release();
  }
}

/** Largest temporary pool (bytes): what one memory node addresses (1 TiB). */
const MAX_TEMP_POOL_BYTES = 2 ** 40;

type RunFacts = Pick<TraceResult, 'procs' | 'epochs' | 'pool' | 'heldChunksBefore' | 'heldChunksAfter'>;

function summarizeTrace(trace: Trace, samples: TraceSample[], facts: RunFacts): TraceResult {
  const traceMs = trace.durationUs / 1000;
  let allocs = 0;
  let frees = 0;
  let errors = 0;
  let firstError: string | undefined;
  let replaySum = 0;
  let replayMax = 0;
  let retries = 0;
  let retriesMax = 0;
  let allocOps = 0;
  let freeOps = 0;
  for (const s of samples) {
    allocs += s.allocs;
    frees += s.frees;
    errors += s.allocErrors + s.freeErrors;
    firstError ??= s.firstError;
    replaySum += s.replayMs;
    replayMax = Math.max(replayMax, s.replayMs);
    retries += s.casRetries;
    retriesMax = Math.max(retriesMax, s.casRetriesMax);
    allocOps += s.allocTransportOps;
    freeOps += s.freeTransportOps;
  }
  const replayMean = samples.length ? replaySum / samples.length : 0;
  return {
    trace: basename(trace.path),
    path: trace.path,
    procs: facts.procs,
    epochs: facts.epochs,
    requests: trace.classes.length,
    pool: facts.pool,
    traceMs,
    replayMs: { mean: replayMean, max: replayMax },
    ratio: traceMs > 0 ? { mean: replayMean / traceMs, max: replayMax / traceMs } : null,
    allocs,
    errors,
    ...(firstError === undefined ? {} : { firstError }),
    latency: summarize(samples.map((s) => s.latencyNs)),
    casRetries: { perAlloc: allocs ? retries / allocs : 0, max: retriesMax },
    transportOps: { perAlloc: allocs ? allocOps / allocs : 0, perFree: frees ? freeOps / frees : 0 },
    heldChunksBefore: facts.heldChunksBefore,
    heldChunksAfter: facts.heldChunksAfter,
  };
}
