/**
 * The pool a benchmark runs on: a named shm pool the user gave (created
 * when a size is given and it is absent), or a temporary one,
 * `shm:dmem-bench-<pid>`, that is removed when the benchmark ends, fails,
 * is interrupted, or the process exits.
 */
import { openPool, type Pool } from '../pool.js';
import { removeShm } from '../../plugins/cxl-shm/index.js';

/** Bytes of slack every temporary pool gets on top of its blocks (64 MiB: metadata and alignment). */
export const TEMP_POOL_SLACK_BYTES = 64 * 2 ** 20;
const SECTION_BYTES = 2 * 2 ** 20;

/** A pool opened for a benchmark, with this (parent) process's client on it. */
export interface BenchPool {
  /** URI the workers attach to, e.g. `shm:dmem-bench-123`. */
  uri: string;
  /** Pool name (the part after `shm:`). */
  name: string;
  /** True for a temporary pool that `release()` removes. */
  temporary: boolean;
  /** The parent's client, used for the census. */
  pool: Pool;
  /** Closes the parent's client and removes a temporary pool. Idempotent; never throws. */
  release(): void;
}

/** Rounds `bytes` up to whole 2 MiB sections. */
export function roundToSections(bytes: number): number {
  return Math.ceil(bytes / SECTION_BYTES) * SECTION_BYTES;
}

/**
 * Opens the benchmark's pool.
 * @param name an existing pool to use (shm:NAME); undefined for a temporary pool
 * @param size bytes: with `name`, create the pool with this size when it is absent
 * @param tempBytes bytes of a temporary pool (rounded up to 2 MiB sections)
 * @param procs worker processes that will attach: a temporary pool gets enough client slots for them and the parent
 * @throws TransportUnavailableError when `name` does not exist and no size is given (the message says how to create it), and every error of `openPool`
 */
export async function openBenchPool(name: string | undefined, size: number | undefined, tempBytes: number, procs: number): Promise<BenchPool> {
  const temporary = name === undefined;
  const poolName = name ?? `dmem-bench-${process.pid}`;
  const uri = `shm:${poolName}`;
  if (temporary) removeShm(poolName);
  let removed = false;
  const remove = (): void => {
    if (removed || !temporary) return;
    removed = true;
    try {
      removeShm(poolName);
    } catch {
      // Best effort at exit: the file is in /dev/shm and `rm` can take it.
    }
  };
  if (temporary) process.once('exit', remove);
  let pool: Pool;
  try {
    pool = await openPool(uri, temporary ? { size: roundToSections(tempBytes), clients: Math.min(4093, Math.max(256, procs + 8)) } : { size, create: size !== undefined });
  } catch (err) {
    remove();
    throw err;
  }
  return {
    uri, name: poolName, temporary, pool,
    release() {
      pool.close();
      remove();
      process.removeListener('exit', remove);
    },
  };
}
