/**
 * Jobs and results exchanged by the study's parent and its workers
 * (src/study/fleet.ts, src/study/worker.ts). Steps per job:
 *
 *   micro, per class:  barrier, open + allocate N, barrier, churn loop (timed) -> LoopSample,
 *                      barrier, free all -> FreedSample
 *   trace, per trace and epoch: barrier, replay (timed), free all -> LoopSample
 *   memtest, per round: barrier, allocate `count` random sizes (timed) -> LoopSample,
 *                       barrier (parent reads reserved bytes), free all -> FreedSample
 */
import type { AllocatorStats } from './allocator.js';
import type { PoolSpec } from './pools.js';

export interface MicroStudyJob { kind: 'micro'; spec: PoolSpec; seed: number; classes: number[]; blocks: number; churn: number; epochs: number }
export interface TraceStudyJob { kind: 'trace'; spec: PoolSpec; seed: number; paths: string[]; epochs: number }
export interface MemtestStudyJob { kind: 'memtest'; spec: PoolSpec; seed: number; rounds: number; count: number; min: number; max: number }
export type StudyJob = MicroStudyJob | TraceStudyJob | MemtestStudyJob;

/** One worker's measurements of one timed loop. */
export interface LoopSample {
  /** Wall time of the loop (ms). */
  loopMs: number;
  /** Latency of the timed allocations (ns). */
  latencyNs: Float64Array;
  /** Counter deltas over the loop (casRetriesMax: since attach). */
  delta: AllocatorStats;
  /** Bytes requested by the loop's allocations (memtest). */
  requestedBytes: number;
  /** Failed allocations (trace: counted, not fatal) and the first message. */
  errors: number;
  firstError?: string;
}

export interface FreedSample { freed: number; errors: number; firstError?: string }
