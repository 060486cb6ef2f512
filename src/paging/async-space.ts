/**
 * The asynchronous far-memory space: a space (src/space.ts) whose pools
 * may wait on a network. `createAsyncSpace(pool, bytes, opts)` takes a
 * RemotePool (`openPool('tcp://...')`) or a synchronous Pool, and for
 * tiering any mix (Rcmp's shape: a near shm pool, a far tcp one).
 *
 * API: the methods of a Space, each returning a Promise (docs/design.md,
 * "API shape": code written with `await` runs on both kinds):
 *
 *   const s = createAsyncSpace(remote, '1GiB', { cacheBytes: '64MiB', prefetch: 'sequential' });
 *   await s.setF64(8 * i, x);  const b = await s.read(off, n);  await s.flush();  await s.close();
 *
 * Order: the public operations of one space run one at a time, in call
 * order (a FIFO), so `s.write(o, a); s.read(o, n)` without awaiting the
 * first reads `a`; an operation that only hits runs at once, in the
 * calling tick (its Promise is already settled). Within one operation a
 * miss's page I/O is overlapped (opts.overlap, default true): the victims'
 * write-backs, the fetch of the missed page and the sequential prefetch's
 * N = 32 fetches are all in flight together, so a prefetch costs about one
 * round trip and not N (ExtMem issues its prefetches asynchronously too).
 * The concurrency argument is in src/paging/cache.ts.
 *
 * Errors: as the Space's, as rejections. An I/O error on a miss (a lost
 * connection's TransportUnavailableError too, although the RemotePool may
 * reconnect: a fetch or write-back in flight may or may not have run; a
 * lease expired; the pool closed) leaves the cache in doubt: every later
 * access rejects with that error; close still frees the pages it can.
 */
import { InvalidArgumentError } from '../errors.js';
import type { Pool } from '../pool.js';
import type { AsyncPool } from '../transports/tcp/client.js';
import { Op, PageCache, runAsync, type SpaceOptionsOf } from './cache.js';
import { PAGE_BYTES, anyPoolStore, type AsyncPageStore } from './store.js';

/** Options of `createAsyncSpace`: a Space's (pools of either kind), and `overlap`. */
export interface AsyncSpaceOptions extends SpaceOptionsOf<Pool | AsyncPool> {
  /**
   * Overlap a miss's page I/O (default true): write-backs, the fetch and
   * the prefetches in flight at once. false runs them one after another
   * (each waits for the previous reply), the baseline `dmem bench paging`
   * compares with.
   */
  overlap?: boolean;
}

/** How a typed value is read and written in a DataView (little-endian). */
interface Accessor<T> {
  size: number;
  get(v: DataView, i: number): T;
  set(v: DataView, i: number, x: T): void;
}
const U8: Accessor<number> = { size: 1, get: (v, i) => v.getUint8(i), set: (v, i, x) => v.setUint8(i, x) };
const I8: Accessor<number> = { size: 1, get: (v, i) => v.getInt8(i), set: (v, i, x) => v.setInt8(i, x) };
const U16: Accessor<number> = { size: 2, get: (v, i) => v.getUint16(i, true), set: (v, i, x) => v.setUint16(i, x, true) };
const I16: Accessor<number> = { size: 2, get: (v, i) => v.getInt16(i, true), set: (v, i, x) => v.setInt16(i, x, true) };
const U32: Accessor<number> = { size: 4, get: (v, i) => v.getUint32(i, true), set: (v, i, x) => v.setUint32(i, x, true) };
const I32: Accessor<number> = { size: 4, get: (v, i) => v.getInt32(i, true), set: (v, i, x) => v.setInt32(i, x, true) };
const F32: Accessor<number> = { size: 4, get: (v, i) => v.getFloat32(i, true), set: (v, i, x) => v.setFloat32(i, x, true) };
const F64: Accessor<number> = { size: 8, get: (v, i) => v.getFloat64(i, true), set: (v, i, x) => v.setFloat64(i, x, true) };
const I64: Accessor<bigint> = { size: 8, get: (v, i) => v.getBigInt64(i, true), set: (v, i, x) => v.setBigInt64(i, x, true) };
const U64: Accessor<bigint> = { size: 8, get: (v, i) => v.getBigUint64(i, true), set: (v, i, x) => v.setBigUint64(i, x, true) };

const ignore = (): undefined => undefined;

/**
 * Creates an asynchronous far-memory space of `bytes` over `pool` (either
 * kind), owned by that pool's client. Nothing is allocated until a page is
 * first touched.
 * @throws InvalidArgumentError bad size, cache, policy, prefetch or tier options
 */
export function createAsyncSpace(pool: Pool | AsyncPool, bytes: number | string, opts: AsyncSpaceOptions): AsyncSpace {
  return new AsyncSpace(pool, bytes, opts);
}

/** An asynchronous far-memory space: see the file comment and docs/paging.md. */
export class AsyncSpace extends PageCache<AsyncPageStore> {
  readonly overlap: boolean;
  /** Public operations queued or running. */
  private queued = 0;
  /** Settles after the last queued operation (never rejects). */
  private tail: Promise<unknown> = Promise.resolve();
  /** While a plan runs: its last op on each slot (key -1 - slot) and on each page (key page). */
  private readonly chain = new Map<number, Promise<void>>();
  private inFlight = 0;
  private peak = 0;
  private readonly moving = new Uint8Array(PAGE_BYTES);

  /** Use createAsyncSpace. */
  constructor(pool: Pool | AsyncPool, bytes: number | string, opts: AsyncSpaceOptions) {
    super(pool, bytes, opts, anyPoolStore);
    const overlap = opts.overlap ?? true;
    if (typeof overlap !== 'boolean') throw new InvalidArgumentError(`overlap must be true or false, got ${String(overlap)}`);
    this.overlap = overlap;
  }

  /** The most page operations that were in flight at once (1 without overlap). */
  get peakInFlight(): number {
    return this.peak;
  }

  // ------------------------------------------------------------ bytes

  /** Reads `length` bytes at `offset` into a new array. Rejects: InvalidAddressError, SpaceClosedError, the pool's errors */
  read(offset: number, length: number): Promise<Uint8Array> {
    const dst = new Uint8Array(length);
    return this.readInto(offset, dst).then(() => dst);
  }

  /** Reads `dst.length` bytes at `offset` into `dst` (filled when the Promise settles). */
  readInto(offset: number, dst: Uint8Array): Promise<void> {
    return this.serial(() => this.copyNow(offset, dst, 0));
  }

  /** Writes `src` at `offset` (copied at once: `src` may change after the call). Rejects: also PoolExhaustedError (first touch) */
  write(offset: number, src: Uint8Array): Promise<void> {
    const bytes = src.slice();
    return this.serial(() => this.copyNow(offset, bytes, 1));
  }

  // ------------------------------------------------------------ typed, little-endian (as Space's, as Promises)

  getU8(offset: number): Promise<number> { return this.get(offset, U8); }
  getI8(offset: number): Promise<number> { return this.get(offset, I8); }
  getU16(offset: number): Promise<number> { return this.get(offset, U16); }
  getI16(offset: number): Promise<number> { return this.get(offset, I16); }
  getU32(offset: number): Promise<number> { return this.get(offset, U32); }
  getI32(offset: number): Promise<number> { return this.get(offset, I32); }
  getF32(offset: number): Promise<number> { return this.get(offset, F32); }
  getF64(offset: number): Promise<number> { return this.get(offset, F64); }
  getBigInt64(offset: number): Promise<bigint> { return this.get(offset, I64); }
  getBigUint64(offset: number): Promise<bigint> { return this.get(offset, U64); }
  setU8(offset: number, v: number): Promise<void> { return this.set(offset, U8, v); }
  setI8(offset: number, v: number): Promise<void> { return this.set(offset, I8, v); }
  setU16(offset: number, v: number): Promise<void> { return this.set(offset, U16, v); }
  setI16(offset: number, v: number): Promise<void> { return this.set(offset, I16, v); }
  setU32(offset: number, v: number): Promise<void> { return this.set(offset, U32, v); }
  setI32(offset: number, v: number): Promise<void> { return this.set(offset, I32, v); }
  setF32(offset: number, v: number): Promise<void> { return this.set(offset, F32, v); }
  setF64(offset: number, v: number): Promise<void> { return this.set(offset, F64, v); }
  setBigInt64(offset: number, v: bigint): Promise<void> { return this.set(offset, I64, v); }
  setBigUint64(offset: number, v: bigint): Promise<void> { return this.set(offset, U64, v); }

  // ------------------------------------------------------------ whole space

  /** Writes every dirty cached page back, all in flight at once (they stay cached, now clean); resolves to how many. */
  flush(): Promise<number> {
    return this.serial(() => {
      this.live();
      const n = this.planFlush();
      return this.execute().then(() => n);
    });
  }

  /**
   * After the queued operations: frees every page of the space in its
   * pool(s) (the frees in flight at once) and drops the cache, with no
   * write-back. Idempotent. Resolves to how many pages were freed.
   */
  close(): Promise<number> {
    return this.serial(() => {
      if (this.closed) return 0;
      this.planClose();
      return this.runPlan().then(() => this.freed);
    });
  }

  // ------------------------------------------------------------ operations

  /**
   * Runs `fn` after every operation queued before it; at once when none
   * is (then a `fn` that only hits finishes in this tick). `fn` returns
   * its value, or a Promise of it once it has met a miss.
   */
  private serial<T>(fn: () => T | Promise<T>): Promise<T> {
    if (this.queued === 0) {
      let r: T | Promise<T>;
      try {
        r = fn();
      } catch (e) {
        return Promise.reject(e);
      }
      return r instanceof Promise ? this.track(r) : Promise.resolve(r);
    }
    return this.track(this.tail.then(fn));
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.queued++;
    const done = p.finally(() => { this.queued--; });
    this.tail = done.then(ignore, ignore);
    return done;
  }

  /** Copies `bytes` from index `done` on out of (write 0) or into (write 1) the space: hits now, the rest after the first miss. */
  private copyNow(offset: number, bytes: Uint8Array, write: number, done = 0): void | Promise<void> {
    if (done === 0) this.range(offset, bytes.length);
    while (done < bytes.length) {
      const page = Math.floor((offset + done) / PAGE_BYTES);
      const slot = this.hit(page, write);
      if (slot < 0) {
        const at = done;
        return this.miss(page, write).then((s) => this.copyNow(offset, bytes, write, at + this.copyAt(offset, bytes, at, s, write)));
      }
      done += this.copyAt(offset, bytes, done, slot, write);
    }
  }

  private get<T>(offset: number, a: Accessor<T>): Promise<T> {
    return this.serial(() => {
      this.range(offset, a.size);
      const within = offset % PAGE_BYTES;
      if (within + a.size > PAGE_BYTES) {
        const r = this.copyNow(offset, this.scratchOf[a.size], 0);
        return r === undefined ? a.get(this.scratchView, 0) : r.then(() => a.get(this.scratchView, 0));
      }
      const page = (offset - within) / PAGE_BYTES;
      const slot = this.hit(page, 0);
      if (slot >= 0) return a.get(this.view, slot * PAGE_BYTES + within);
      return this.miss(page, 0).then((s) => a.get(this.view, s * PAGE_BYTES + within));
    });
  }

  private set<T>(offset: number, a: Accessor<T>, v: T): Promise<void> {
    return this.serial(() => {
      this.range(offset, a.size);
      const within = offset % PAGE_BYTES;
      if (within + a.size > PAGE_BYTES) {
        a.set(this.scratchView, 0, v);
        return this.copyNow(offset, this.scratchOf[a.size], 1);
      }
      const page = (offset - within) / PAGE_BYTES;
      const slot = this.hit(page, 1);
      if (slot >= 0) return a.set(this.view, slot * PAGE_BYTES + within, v);
      return this.miss(page, 1).then((s) => a.set(this.view, s * PAGE_BYTES + within, v));
    });
  }

  // ------------------------------------------------------------ the miss path

  /** A miss: plan (every decision, now), then the plan's page I/O; resolves to the page's slot. */
  private miss(page: number, write: number): Promise<number> {
    const slot = this.planMiss(page, write);
    return this.execute().then(() => slot);
  }

  /** Runs the plan; an error leaves the cache in doubt and breaks the space. */
  private execute(): Promise<void> {
    return this.runPlan().catch((e: unknown) => { throw this.breakWith(e); });
  }

  private async runPlan(): Promise<void> {
    if (!this.overlap) {
      for (let i = 0; i < this.nOps; i++) {
        const slot = this.opSlot[i];
        await this.issue(i, slot >= 0 ? this.slotBytes(slot) : this.moving);
      }
      return;
    }
    // Overlapped: each op waits only for the ops before it on its slot and
    // its page (the argument is in src/paging/cache.ts).
    const chain = this.chain;
    chain.clear();
    const all: Array<Promise<void>> = [];
    for (let i = 0; i < this.nOps; i++) {
      const page = this.opPage[i];
      const slot = this.opSlot[i];
      const before: Array<Promise<void>> = [];
      const onPage = chain.get(page);
      if (onPage !== undefined) before.push(onPage);
      let buf: Uint8Array;
      let holdsSlot = false;
      if (slot < 0) {
        // MOVE_UNCACHED reads the page into bytes of its own; FREE uses none.
        buf = this.opKind[i] === Op.MOVE_UNCACHED ? new Uint8Array(PAGE_BYTES) : this.moving;
      } else {
        const onSlot = chain.get(-1 - slot);
        const readsSlot = this.opKind[i] === Op.WRITEBACK || this.opKind[i] === Op.MOVE;
        if (onSlot === undefined && readsSlot) {
          buf = this.slotBytes(slot).slice();
        } else {
          buf = this.slotBytes(slot);
          holdsSlot = true;
          if (onSlot !== undefined) before.push(onSlot);
        }
      }
      const p = before.length === 0 ? this.issue(i, buf) : Promise.all(before).then(() => this.issue(i, buf));
      chain.set(page, p);
      if (holdsSlot) chain.set(-1 - slot, p);
      all.push(p);
    }
    chain.clear();
    // Every op settles before the plan does (none is left running), then the first error, if any.
    const settled = await Promise.allSettled(all);
    for (const r of settled) if (r.status === 'rejected') throw r.reason;
  }

  private issue(i: number, buf: Uint8Array): Promise<void> {
    if (++this.inFlight > this.peak) this.peak = this.inFlight;
    return runAsync(this.runOp(i, buf)).finally(() => { this.inFlight--; });
  }
}
