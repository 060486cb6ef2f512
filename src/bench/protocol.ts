/**
 * Messages between a benchmark's parent process and its worker processes
 * (Node IPC with `serialization: 'advanced'`, so Float64Arrays travel as
 * typed arrays). Each worker gets one job, then works in steps separated by
 * barriers: it sends `ready` and waits; once every worker is ready the
 * parent sends `go` to all of them back to back.
 *
 *   micro, per size class            trace, per trace file
 *     barrier  (parent took census)    barrier, per epoch:
 *     open pool, allocate N blocks       replay (timed), free all
 *     barrier                            result: TraceSample
 *     epoch loop (timed)
 *     result: MicroSample
 *     barrier  (every loop is done)
 *     free all, result: FreedReport
 *
 * A worker that fails sends `{ type: 'error' }` and exits; the parent then
 * stops every worker. Messages are only exchanged outside timed loops.
 */

/** The micro ("frag") benchmark for one worker: every class in turn. */
export interface MicroJob {
  kind: 'micro';
  /** Pool URI, e.g. `shm:dmem-bench-123`; the pool exists when the job is sent. */
  uri: string;
  /** Size classes to run, in order (0..9). */
  classes: number[];
  /** Blocks held per worker (N). */
  blocks: number;
  /** Blocks freed and allocated again per epoch (M <= N). */
  churn: number;
  epochs: number;
  /** This worker's PRNG seed (already derived from the run's seed). */
  seed: number;
}

/** The trace ("stage") replay for one worker: every trace file in turn. */
export interface TraceJob {
  kind: 'trace';
  uri: string;
  /** Trace files (../shared/traces/README.md format), replayed in order. */
  paths: string[];
  epochs: number;
  seed: number;
}

/** What the parent sends. */
export type ToWorker = { type: 'job'; job: MicroJob | TraceJob } | { type: 'go' };

/** One worker's measurements of one size class's epoch loop. */
export interface MicroSample {
  kind: 'micro';
  cls: number;
  /** Wall time of the whole epoch loop (ms). */
  loopMs: number;
  /** Allocations and frees in the epoch loop (from the client's counters). */
  allocs: number;
  frees: number;
  /** Latency of every allocClass call of the loop (ns), in order. */
  latencyNs: Float64Array;
  /** CAS issued by this client during the loop (allocs and frees). */
  casAttempts: number;
  /** Alloc CAS that failed and were retried during the loop. */
  casRetries: number;
  /** Largest retry count of one allocation since the client attached (setup included). */
  casRetriesMax: number;
  /** Transport operations spent in allocs and in frees during the loop. */
  allocTransportOps: number;
  freeTransportOps: number;
}

/** One worker's measurements of one epoch of one trace. */
export interface TraceSample {
  kind: 'trace';
  /** Index into TraceJob.paths. */
  trace: number;
  epoch: number;
  /** Time from the epoch start to the return of the last allocation (ms). */
  replayMs: number;
  /** Successful allocations. */
  allocs: number;
  /** Failed allocations and failed frees of this epoch. */
  allocErrors: number;
  freeErrors: number;
  /** Message of the first failure, when there was one. */
  firstError?: string;
  /** Latency of every successful allocClass call (ns), in trace order. */
  latencyNs: Float64Array;
  casRetries: number;
  casRetriesMax: number;
  allocTransportOps: number;
  freeTransportOps: number;
  frees: number;
}

/** A worker's report that it freed everything it held (after a class or a trace). */
export interface FreedReport {
  kind: 'freed';
  freed: number;
  /** Frees that failed (any is a bug: the bench frees only blocks it allocated). */
  errors: number;
  firstError?: string;
}

/** What a worker sends. */
export type FromWorker =
  | { type: 'ready' }
  | { type: 'result'; result: MicroSample | TraceSample | FreedReport }
  | { type: 'error'; code: string; message: string };
