/**
 * Where a space's pages live: the one interface through which a space
 * (src/space.ts) does page I/O, so that its backing can change without
 * touching the cache. Each page is one ordinary 4 KiB block of the client
 * (size class 0): close frees it, and recovery of a dead client frees it
 * like any other block (../../docs/paging.md).
 *
 * The methods are synchronous because the pools that exist now (memory:,
 * shm:, one-sided rdma) complete in the calling thread. A pool that waits on
 * a network (tcp) would implement the same four operations returning
 * Promises; the space's miss path (fetch, write back, prefetch) is the only
 * caller, so that is the one place that would `await` (and where prefetches
 * could overlap).
 */
import type { Pool } from '../pool.js';

/** Bytes per page: one chunk, the pool's smallest block (size class 0). */
export const PAGE_BYTES = 4096;

/** Page I/O of a space against one pool. Gaddrs are the pool's. */
export interface PageStore {
  /** The pool behind this store (for messages and tests). */
  readonly pool: Pool;
  /** Allocates one page; returns its gaddr. @throws PoolExhaustedError */
  alloc(): number;
  /** Frees the page at `gaddr`. */
  free(gaddr: number): void;
  /** Reads the page at `gaddr` into `dst` (PAGE_BYTES). */
  read(gaddr: number, dst: Uint8Array): void;
  /** Writes `src` (PAGE_BYTES) to the page at `gaddr`. */
  write(gaddr: number, src: Uint8Array): void;
}

/** A PageStore over a synchronous Pool (memory:, shm:). */
export function poolStore(pool: Pool): PageStore {
  return {
    pool,
    alloc: () => pool.allocClass(0),
    free: (gaddr) => pool.free(gaddr),
    read: (gaddr, dst) => pool.readInto(gaddr, dst),
    write: (gaddr, src) => pool.write(gaddr, src),
  };
}
