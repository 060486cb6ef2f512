/**
 * Where a space's pages live: the one interface through which a space
 * (src/space.ts, src/paging/cache.ts) does page I/O, so that its backing
 * can change without touching the cache. Each page is one ordinary 4 KiB
 * block of the client (size class 0): close frees it, and recovery of a
 * dead client frees it like any other block (../../docs/paging.md).
 *
 * Two kinds, as pools come in two kinds (docs/design.md, "API shape"):
 * a PageStore over a pool whose operations complete in the calling thread
 * (memory:, shm:, one-sided ofi), and an AsyncPageStore over one that
 * waits on a network (tcp, tls, unix: a RemotePool), whose operations
 * return Promises. A PageStore is also an AsyncPageStore (a value is as
 * good as a resolved Promise to the async space), so the async space takes
 * either for either tier: near shm with far tcp is the tiering of Rcmp.
 */
import type { Pool } from '../pool.js';
import type { AsyncPool } from '../transports/tcp/client.js';

/** Bytes per page: one chunk, the pool's smallest block (size class 0). */
export const PAGE_BYTES = 4096;

/** Page I/O of a space against one synchronous pool. Gaddrs are the pool's. */
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

/**
 * Page I/O against a pool of either kind: the same four operations, each
 * returning its result or a Promise of it (rejected with the pool's
 * DmemError). `dst` of a read is filled when the Promise settles; `src` of
 * a write must not change until its Promise settles (a RemotePool sends
 * large payloads without copying them).
 */
export interface AsyncPageStore {
  readonly pool: Pool | AsyncPool;
  alloc(): number | Promise<number>;
  free(gaddr: number): void | Promise<void>;
  read(gaddr: number, dst: Uint8Array): void | Promise<void>;
  write(gaddr: number, src: Uint8Array): void | Promise<void>;
}

/** True for a synchronous Pool (memory:, shm:, one-sided ofi), false for a Promise-returning one. */
export function isSyncPool(pool: Pool | AsyncPool): pool is Pool {
  return typeof (pool as Pool).readInto === 'function' && (pool as Pool).transport !== undefined;
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

/** An AsyncPageStore over a pool of either kind (a RemotePool: one request per operation, any number in flight). */
export function anyPoolStore(pool: Pool | AsyncPool): AsyncPageStore {
  if (isSyncPool(pool)) return poolStore(pool);
  return {
    pool,
    alloc: () => pool.allocClass(0),
    free: (gaddr) => pool.free(gaddr),
    read: (gaddr, dst) => pool.read(gaddr, PAGE_BYTES).then((b) => { dst.set(b); }),
    write: (gaddr, src) => pool.write(gaddr, src),
  };
}
