/**
 * Far-memory spaces (ExtMem, USENIX ATC '24: user-level paging with
 * pluggable policies; Rcmp, TACO '23: a near tier in front of a far one):
 * `createSpace(pool, bytes, opts)` gives one client a byte-addressed space
 * larger than its local memory. The space is cut into 4 KiB pages, each an
 * ordinary block of the pool allocated on first touch; a local cache of
 * `cacheBytes` holds the pages in use. A miss fetches the page (evicting
 * the policy's victim, written back only if dirty), and a sequential run of
 * misses may prefetch the next pages. With a second pool (`far`), pages hot
 * enough move to the near pool and cold ones back (docs/paging.md).
 *
 * This is the synchronous space, over pools whose operations complete in
 * the calling thread (memory:, shm:, one-sided ofi): every method returns
 * its result. Over a tcp pool (or with a tcp far tier) use the AsyncSpace
 * (src/paging/async-space.ts), whose methods return Promises; both share
 * the cache, the decisions and the page I/O of src/paging/cache.ts.
 *
 * Who decides what: the page bytes live here, in one Uint8Array of
 * slots * 4 KiB; the page table, the eviction policy (lru, clock, linux,
 * heat), heat and tier placement live in a paging module instance of the
 * space's own (assembly/paging/, src/paging/module.ts), so they are
 * deterministic (invariant 4) and the same in every host.
 *
 * Not shared: a space belongs to one client and is not safe to use from two
 * threads; two spaces never share pages. Its pages are the client's blocks,
 * so Pool.close frees them and recovery of a dead client reclaims them.
 */
import { InvalidArgumentError } from './errors.js';
import { PageCache, runSync, type SpaceOptionsOf } from './paging/cache.js';
import { PAGE_BYTES, isSyncPool, poolStore, type PageStore } from './paging/store.js';
import type { Pool } from './pool.js';

export { PAGE_BYTES };
export type { PageStore };
export {
  CACHE_MAX_BYTES, POLICIES, PREFETCHES, SPACE_MAX_BYTES, SpaceClosedError,
  type PagingPolicy, type Prefetch, type SpaceStats,
} from './paging/cache.js';
export { AsyncSpace, createAsyncSpace, type AsyncSpaceOptions } from './paging/async-space.js';

/** Options of `createSpace` (see SpaceOptionsOf). */
export type SpaceOptions = SpaceOptionsOf<Pool>;

/**
 * Creates a far-memory space of `bytes` (or "1GiB") over `pool`, owned by
 * that pool's client. Nothing is allocated until a page is first touched.
 * @throws InvalidArgumentError bad size, cache, policy, prefetch or tier
 *   options, or a Promise-returning pool (tcp: use createAsyncSpace)
 */
export function createSpace(pool: Pool, bytes: number | string, opts: SpaceOptions): Space {
  return new Space(pool, bytes, opts);
}

/** `pool`, once it and the far pool (if any) are synchronous. @throws InvalidArgumentError */
function syncPool(pool: Pool, opts: SpaceOptions | undefined): Pool {
  for (const p of [pool, opts?.far]) {
    if (p !== undefined && p !== null && !isSyncPool(p)) throw new InvalidArgumentError('a Space needs synchronous pools (memory:, shm:, ofi): over a tcp pool use createAsyncSpace');
  }
  return pool;
}

/** A synchronous far-memory space: see the file comment and docs/paging.md. */
export class Space extends PageCache<PageStore> {
  /** Bytes of an uncached page on its way between tiers. */
  private readonly moving = new Uint8Array(PAGE_BYTES);

  /** Use createSpace. */
  constructor(pool: Pool, bytes: number | string, opts: SpaceOptions) {
    super(syncPool(pool, opts), bytes, opts, poolStore);
  }

  // ------------------------------------------------------------ bytes

  /** Reads `length` bytes at `offset` into a new array. @throws InvalidAddressError, SpaceClosedError */
  read(offset: number, length: number): Uint8Array {
    const dst = new Uint8Array(length);
    this.readInto(offset, dst);
    return dst;
  }

  /** Reads `dst.length` bytes at `offset` into `dst`. @throws InvalidAddressError, SpaceClosedError */
  readInto(offset: number, dst: Uint8Array): void {
    this.copy(offset, dst, 0);
  }

  /** Writes `src` at `offset`. @throws InvalidAddressError, SpaceClosedError, PoolExhaustedError (first touch) */
  write(offset: number, src: Uint8Array): void {
    this.copy(offset, src, 1);
  }

  private copy(offset: number, bytes: Uint8Array, write: number): void {
    this.range(offset, bytes.length);
    for (let done = 0; done < bytes.length;) {
      done += this.copyAt(offset, bytes, done, this.slotOf(Math.floor((offset + done) / PAGE_BYTES), write), write);
    }
  }

  // ------------------------------------------------------------ typed, little-endian

  /*
   * get/set of u8, i8, u16, i16, u32, i32, f32, f64 (numbers) and BigInt64,
   * BigUint64 (bigint) at byte `offset` (any alignment), little-endian as
   * DataView with `true`. One page access each; a value that straddles two
   * pages costs two (and a copy). Setters mark the page dirty.
   * @throws InvalidAddressError (offset not an integer, or the value not
   *   inside the space), SpaceClosedError, PoolExhaustedError (first touch)
   */

  getU8(offset: number): number { return this.view.getUint8(this.at(offset, 1, 0)); }
  getI8(offset: number): number { return this.view.getInt8(this.at(offset, 1, 0)); }
  setU8(offset: number, v: number): void { this.view.setUint8(this.at(offset, 1, 1), v); }
  setI8(offset: number, v: number): void { this.view.setInt8(this.at(offset, 1, 1), v); }

  getU16(offset: number): number {
    const i = this.at(offset, 2, 0);
    return i >= 0 ? this.view.getUint16(i, true) : this.straddle(offset, 2).getUint16(0, true);
  }
  getI16(offset: number): number {
    const i = this.at(offset, 2, 0);
    return i >= 0 ? this.view.getInt16(i, true) : this.straddle(offset, 2).getInt16(0, true);
  }
  getU32(offset: number): number {
    const i = this.at(offset, 4, 0);
    return i >= 0 ? this.view.getUint32(i, true) : this.straddle(offset, 4).getUint32(0, true);
  }
  getI32(offset: number): number {
    const i = this.at(offset, 4, 0);
    return i >= 0 ? this.view.getInt32(i, true) : this.straddle(offset, 4).getInt32(0, true);
  }
  getF32(offset: number): number {
    const i = this.at(offset, 4, 0);
    return i >= 0 ? this.view.getFloat32(i, true) : this.straddle(offset, 4).getFloat32(0, true);
  }
  getF64(offset: number): number {
    const i = this.at(offset, 8, 0);
    return i >= 0 ? this.view.getFloat64(i, true) : this.straddle(offset, 8).getFloat64(0, true);
  }
  getBigInt64(offset: number): bigint {
    const i = this.at(offset, 8, 0);
    return i >= 0 ? this.view.getBigInt64(i, true) : this.straddle(offset, 8).getBigInt64(0, true);
  }
  getBigUint64(offset: number): bigint {
    const i = this.at(offset, 8, 0);
    return i >= 0 ? this.view.getBigUint64(i, true) : this.straddle(offset, 8).getBigUint64(0, true);
  }

  setU16(offset: number, v: number): void {
    const i = this.at(offset, 2, 1);
    if (i >= 0) this.view.setUint16(i, v, true);
    else { this.scratchView.setUint16(0, v, true); this.unstraddle(offset, 2); }
  }
  setI16(offset: number, v: number): void {
    const i = this.at(offset, 2, 1);
    if (i >= 0) this.view.setInt16(i, v, true);
    else { this.scratchView.setInt16(0, v, true); this.unstraddle(offset, 2); }
  }
  setU32(offset: number, v: number): void {
    const i = this.at(offset, 4, 1);
    if (i >= 0) this.view.setUint32(i, v, true);
    else { this.scratchView.setUint32(0, v, true); this.unstraddle(offset, 4); }
  }
  setI32(offset: number, v: number): void {
    const i = this.at(offset, 4, 1);
    if (i >= 0) this.view.setInt32(i, v, true);
    else { this.scratchView.setInt32(0, v, true); this.unstraddle(offset, 4); }
  }
  setF32(offset: number, v: number): void {
    const i = this.at(offset, 4, 1);
    if (i >= 0) this.view.setFloat32(i, v, true);
    else { this.scratchView.setFloat32(0, v, true); this.unstraddle(offset, 4); }
  }
  setF64(offset: number, v: number): void {
    const i = this.at(offset, 8, 1);
    if (i >= 0) this.view.setFloat64(i, v, true);
    else { this.scratchView.setFloat64(0, v, true); this.unstraddle(offset, 8); }
  }
  setBigInt64(offset: number, v: bigint): void {
    const i = this.at(offset, 8, 1);
    if (i >= 0) this.view.setBigInt64(i, v, true);
    else { this.scratchView.setBigInt64(0, v, true); this.unstraddle(offset, 8); }
  }
  setBigUint64(offset: number, v: bigint): void {
    const i = this.at(offset, 8, 1);
    if (i >= 0) this.view.setBigUint64(i, v, true);
    else { this.scratchView.setBigUint64(0, v, true); this.unstraddle(offset, 8); }
  }

  // ------------------------------------------------------------ whole space

  /** Writes every dirty cached page back (they stay cached, now clean); returns how many. @throws SpaceClosedError */
  flush(): number {
    this.live();
    const n = this.planFlush();
    this.execute();
    return n;
  }

  /**
   * Frees every page of the space in its pool(s) and drops the cache, with
   * no write-back (the contents end with the space). Idempotent.
   * @returns how many pages were freed
   */
  close(): number {
    if (this.closed) return 0;
    this.planClose();
    for (let i = 0; i < this.nOps; i++) runSync(this.runOp(i, this.moving));
    return this.freed;
  }

  // ------------------------------------------------------------ the cache

  /** Cache byte index of `size` bytes at `offset`, or -1 when they straddle two pages. */
  private at(offset: number, size: number, write: number): number {
    if (this.unusable) this.live();
    if (!(offset >= 0 && offset + size <= this.bytes) || !Number.isInteger(offset)) this.range(offset, size);
    const page = Math.floor(offset / PAGE_BYTES);
    const within = offset - page * PAGE_BYTES;
    if (within + size > PAGE_BYTES) return -1;
    return this.slotOf(page, write) * PAGE_BYTES + within;
  }

  private straddle(offset: number, size: number): DataView {
    this.readInto(offset, this.scratchOf[size]);
    return this.scratchView;
  }

  private unstraddle(offset: number, size: number): void {
    this.write(offset, this.scratchOf[size]);
  }

  /** The slot of `page` after one access (a write when `write` is 1). */
  private slotOf(page: number, write: number): number {
    const slot = this.hit(page, write);
    return slot >= 0 ? slot : this.miss(page, write);
  }

  /**
   * A miss: plan, then run the plan's page I/O one op after another. An
   * I/O error in the middle (a pool that was closed, a revoked lease)
   * leaves a slot whose bytes are in doubt: the space then refuses every
   * access with that error (close still frees its pages).
   */
  private miss(page: number, write: number): number {
    const slot = this.planMiss(page, write);
    this.execute();
    return slot;
  }

  /** Runs the plan in order (the same order of I/O as its ops). */
  private execute(): void {
    try {
      for (let i = 0; i < this.nOps; i++) {
        const slot = this.opSlot[i];
        runSync(this.runOp(i, slot >= 0 ? this.slotBytes(slot) : this.moving));
      }
    } catch (e) {
      throw this.breakWith(e);
    }
  }
}
