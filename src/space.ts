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
 * Who decides what: the page bytes live here, in one Uint8Array of
 * slots * 4 KiB; the page table, the eviction policy (lru, clock, linux,
 * heat), heat and tier placement live in a Wasm core instance of the space's
 * own (assembly/paging/), so they are deterministic (invariant 4) and the
 * same in every host. Page I/O goes through a PageStore (src/paging/store.ts).
 *
 * Not shared: a space belongs to one client and is not safe to use from two
 * threads; two spaces never share pages. Its pages are the client's blocks,
 * so Pool.close frees them and recovery of a dead client reclaims them.
 */
import { Core, Status, type CoreExports } from './core.js';
import { DmemError, InvalidAddressError, InvalidArgumentError } from './errors.js';
import type { PageTrace } from './paging/belady.js';
import { PAGE_BYTES, poolStore, type PageStore } from './paging/store.js';
import type { Pool } from './pool.js';
import { parseBytes } from './units.js';

export { PAGE_BYTES };
export type { PageStore };

/** Eviction policies (assembly/paging/). */
export const POLICIES = ['lru', 'clock', 'linux', 'heat'] as const;
export type PagingPolicy = typeof POLICIES[number];
/** Prefetch policies. */
export const PREFETCHES = ['none', 'sequential'] as const;
export type Prefetch = typeof PREFETCHES[number];

/** Options of `createSpace`. */
export interface SpaceOptions {
  /** Local cache size: bytes or "64MiB", rounded down to whole 4 KiB pages (at least one page). */
  cacheBytes: number | string;
  /** Eviction policy (default 'linux', ExtMem's default). */
  policy?: PagingPolicy;
  /** Prefetch policy (default 'none'). */
  prefetch?: Prefetch;
  /** Pages fetched ahead by sequential prefetch (default 32, ExtMem's; at most half the cache). */
  prefetchPages?: number;
  /** Sequential misses in a row that start prefetching (default 2). */
  prefetchAfter?: number;
  /** Half-life of page heat, in accesses to the space (default 8 * cache pages). */
  halfLife?: number;
  /** Record the page-access trace for offline replay (Space.trace(); default false). */
  trace?: boolean;
  /**
   * Tiering: the far pool. With it, the `pool` argument is the near pool
   * (the `near` option may repeat it); pages start far and move near when hot.
   */
  far?: Pool;
  /** Tiering: the near pool; must be the `pool` argument when given. */
  near?: Pool;
  /** Tiering: near-tier bytes the space may use (default cacheBytes), whole pages. */
  nearBytes?: number | string;
  /** Tiering: heat (decayed accesses) at which a far page moves near on eviction (default 4). */
  hotHeat?: number;
  /** Tiering: heat under which a near page moves back far (default 0.5; below hotHeat). */
  coldHeat?: number;
  /** Tiering: accesses between sweeps of cooled near pages (default halfLife). */
  sweepEvery?: number;
  /** Seed of the space's core instance (default 1; the policies use no randomness). */
  seed?: number;
  /** Use the core's debug build, with the paging asserts on (default false). */
  debug?: boolean;
}

/** A space's counters since it was created. Counts are pages unless named otherwise. */
export interface SpaceStats {
  /** Page accesses: one per page a read, write, get or set touched. */
  accesses: number;
  hits: number;
  misses: number;
  /** hits / accesses (0 with no access). */
  hitRatio: number;
  /** Pages read from a pool on a miss or a prefetch. */
  fetched: number;
  /** Dirty pages written back in place (eviction or flush). */
  writtenBack: number;
  evictions: number;
  /** Pages fetched ahead by prefetch; `prefetchHits` of them were used before eviction. */
  prefetched: number;
  prefetchHits: number;
  /** Pages allocated in the pools (first touches); `resident` are cached now. */
  allocated: number;
  resident: number;
  /** Tiering: pages moved far -> near and near -> far; `nearPages` are near now. */
  promoted: number;
  demoted: number;
  nearPages: number;
}

/** A call on a space that was closed. */
export class SpaceClosedError extends DmemError {
  constructor(message: string) { super('SPACE_CLOSED', message); }
}

/** The core's paging exports (assembly/paging/index.ts). */
interface PagingExports {
  pgInit(slots: number, policy: number, halfLife: number, nearPages: number, hot: number, cold: number): number;
  pgAccess(page: number, write: number): number;
  pgInstall(page: number, mode: number): number;
  pgEvictedPage(): number;
  pgEvictedDirty(): number;
  pgEvictedAction(): number;
  pgDisplacedPage(): number;
  pgSlotPage(s: number): number;
  pgSlotDirty(s: number): number;
  pgClean(s: number): void;
  pgSlotHeat(s: number): number;
  pgTick(): number;
  pgIsNear(page: number): number;
  pgNearCount(): number;
  pgTierForget(page: number): void;
  pgResident(page: number): number;
  pgTierSweep(max: number): number;
  pgSweptPage(i: number): number;
}

const MODE_READ = 0;
const MODE_WRITE = 1;
const MODE_PREFETCH = 2;
const MODE_FRESH = 3;
const ACTION_PROMOTE = 1;
const ACTION_DEMOTE = 2;
/** Largest space: 2^38 bytes (the page table costs 8 B per page in JS). */
export const SPACE_MAX_BYTES = 2 ** 38;

/**
 * Creates a far-memory space of `bytes` (or "1GiB") over `pool`, owned by
 * that pool's client. Nothing is allocated until a page is first touched.
 * @throws InvalidArgumentError bad size, cache, policy, prefetch or tier
 *   options, or a cache whose bookkeeping the core cannot hold (about
 *   30,000 pages, about 120 MiB of cache)
 */
export function createSpace(pool: Pool, bytes: number | string, opts: SpaceOptions): Space {
  return new Space(pool, bytes, opts);
}

/** A far-memory space: see the file comment and docs/paging.md. */
export class Space {
  /** Size in bytes. */
  readonly bytes: number;
  readonly pages: number;
  /** Cache size in pages. */
  readonly slots: number;
  readonly policy: PagingPolicy;
  readonly prefetch: Prefetch;
  readonly tiered: boolean;

  private readonly x: CoreExports & PagingExports;
  private readonly far: PageStore;
  private readonly near: PageStore | null;
  /** gaddr of each page's block, 0 before first touch. */
  private readonly addr: Float64Array;
  /** 1 where the page's block is in the near pool. */
  private readonly inNear: Uint8Array;
  private readonly cache: Uint8Array;
  private readonly view: DataView;
  /** 1 for a slot filled by prefetch and not accessed since. */
  private readonly prefetchedSlot: Uint8Array;
  /** The bytes of a typed access that straddles two pages, and views of its first 2, 4 and 8 bytes. */
  private readonly scratch = new Uint8Array(8);
  private readonly scratchView = new DataView(this.scratch.buffer);
  private readonly scratchOf: Readonly<Record<number, Uint8Array>> = { 2: this.scratch.subarray(0, 2), 4: this.scratch.subarray(0, 4), 8: this.scratch };
  /** Bytes of an uncached page on its way between tiers (not `scratch`: a straddling access holds that across misses). */
  private readonly moving = new Uint8Array(PAGE_BYTES);
  private readonly prefetchPages: number;
  private readonly prefetchAfter: number;
  private readonly sweepEvery: number;
  private lastMiss = -2;
  private missRun = 0;
  private lastSweep = 0;
  /** True once closed or broken: the hot path's one check. */
  private unusable = false;
  private closed = false;
  /** The I/O error that left the cache in doubt; every later access throws it. */
  private broken: Error | null = null;

  private readonly recording: boolean;
  private tracePages = new Uint32Array(0);
  private traceRuns = new Uint32Array(0);
  private traceLen = 0;

  private s = {
    accesses: 0, hits: 0, misses: 0, fetched: 0, writtenBack: 0, evictions: 0, prefetched: 0, prefetchHits: 0,
    allocated: 0, promoted: 0, demoted: 0,
  };

  /** Use createSpace. */
  constructor(pool: Pool, bytes: number | string, opts: SpaceOptions) {
    this.bytes = parseBytes(bytes);
    if (this.bytes < 1 || this.bytes > SPACE_MAX_BYTES) {
      throw new InvalidArgumentError(`space size must be 1 B .. ${SPACE_MAX_BYTES} B, got ${this.bytes}`);
    }
    if (opts === null || typeof opts !== 'object' || opts.cacheBytes === undefined) {
      throw new InvalidArgumentError('createSpace needs options with cacheBytes, e.g. { cacheBytes: "16MiB" }');
    }
    this.pages = Math.ceil(this.bytes / PAGE_BYTES);
    const cacheBytes = parseBytes(opts.cacheBytes);
    this.slots = Math.min(Math.floor(cacheBytes / PAGE_BYTES), this.pages);
    if (this.slots < 1) throw new InvalidArgumentError(`cacheBytes must hold at least one ${PAGE_BYTES} B page, got ${cacheBytes}`);
    this.policy = opts.policy ?? 'linux';
    if (!POLICIES.includes(this.policy)) throw new InvalidArgumentError(`unknown policy "${String(opts.policy)}": use ${POLICIES.join(', ')}`);
    this.prefetch = opts.prefetch ?? 'none';
    if (!PREFETCHES.includes(this.prefetch)) throw new InvalidArgumentError(`unknown prefetch "${String(opts.prefetch)}": use ${PREFETCHES.join(', ')}`);
    this.prefetchPages = positiveInt(opts.prefetchPages ?? 32, 'prefetchPages');
    if (this.prefetch === 'sequential' && this.prefetchPages > this.slots / 2) {
      throw new InvalidArgumentError(`prefetchPages (${this.prefetchPages}) must be at most half the cache (${this.slots} pages)`);
    }
    this.prefetchAfter = positiveInt(opts.prefetchAfter ?? 2, 'prefetchAfter');
    const halfLife = opts.halfLife ?? 8 * this.slots;
    if (typeof halfLife !== 'number' || !(halfLife > 0) || !Number.isFinite(halfLife)) {
      throw new InvalidArgumentError(`halfLife must be a positive number of accesses, got ${halfLife}`);
    }

    this.tiered = opts.far !== undefined;
    let nearPages = 0;
    let hot = 0;
    let cold = 0;
    if (this.tiered) {
      if (opts.near !== undefined && opts.near !== pool) throw new InvalidArgumentError('tiering: the near pool is the first argument of createSpace; opts.near, when given, must be the same Pool');
      if (opts.far === pool) throw new InvalidArgumentError('tiering: the far pool must be another Pool than the near one');
      nearPages = Math.floor(parseBytes(opts.nearBytes ?? cacheBytes) / PAGE_BYTES);
      if (nearPages < 1) throw new InvalidArgumentError('tiering: nearBytes must hold at least one page');
      hot = opts.hotHeat ?? 4;
      cold = opts.coldHeat ?? 0.5;
      if (typeof hot !== 'number' || typeof cold !== 'number' || !(cold >= 0) || !(hot > cold) || !Number.isFinite(hot)) {
        throw new InvalidArgumentError(`tiering: need hotHeat > coldHeat >= 0, got ${hot} and ${cold}`);
      }
      this.far = poolStore(opts.far!);
      this.near = poolStore(pool);
    } else {
      if (opts.near !== undefined || opts.nearBytes !== undefined) throw new InvalidArgumentError('tiering needs opts.far (the far pool); the first argument is then the near pool');
      this.far = poolStore(pool);
      this.near = null;
    }
    this.sweepEvery = positiveInt(opts.sweepEvery ?? Math.ceil(halfLife), 'sweepEvery');

    this.x = new Core(pool.transport, BigInt(opts.seed ?? 1), opts.debug ?? false).exports as CoreExports & PagingExports;
    const r = this.x.pgInit(this.slots, POLICIES.indexOf(this.policy), halfLife, nearPages, hot, cold);
    if (r === Status.EXHAUSTED) {
      throw new InvalidArgumentError(`a cache of ${this.slots} pages${nearPages ? ` and a near tier of ${nearPages} pages` : ''} needs more bookkeeping than the core's memory holds (about 30,000 pages in all): use a smaller cacheBytes`);
    }
    if (r !== Status.OK) throw new InvalidArgumentError(`paging setup refused (status ${r})`);
    this.addr = new Float64Array(this.pages);
    this.inNear = new Uint8Array(this.tiered ? this.pages : 0);
    this.cache = new Uint8Array(this.slots * PAGE_BYTES);
    this.view = new DataView(this.cache.buffer);
    this.prefetchedSlot = new Uint8Array(this.slots);
    this.recording = opts.trace ?? false;
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
    this.range(offset, dst.length);
    let done = 0;
    while (done < dst.length) {
      const at = offset + done;
      const page = Math.floor(at / PAGE_BYTES);
      const within = at - page * PAGE_BYTES;
      const n = Math.min(PAGE_BYTES - within, dst.length - done);
      const base = this.slotOf(page, 0) * PAGE_BYTES + within;
      dst.set(this.cache.subarray(base, base + n), done);
      done += n;
    }
  }

  /** Writes `src` at `offset`. @throws InvalidAddressError, SpaceClosedError, PoolExhaustedError (first touch) */
  write(offset: number, src: Uint8Array): void {
    this.range(offset, src.length);
    let done = 0;
    while (done < src.length) {
      const at = offset + done;
      const page = Math.floor(at / PAGE_BYTES);
      const within = at - page * PAGE_BYTES;
      const n = Math.min(PAGE_BYTES - within, src.length - done);
      const base = this.slotOf(page, 1) * PAGE_BYTES + within;
      this.cache.set(src.subarray(done, done + n), base);
      done += n;
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
    let n = 0;
    for (let slot = 0; slot < this.slots; slot++) {
      if (this.x.pgSlotDirty(slot) === 0) continue;
      const page = this.x.pgSlotPage(slot);
      this.storeOf(page).write(this.addr[page], this.cache.subarray(slot * PAGE_BYTES, (slot + 1) * PAGE_BYTES));
      this.x.pgClean(slot);
      n++;
    }
    this.s.writtenBack += n;
    return n;
  }

  /** Counters since creation. */
  stats(): SpaceStats {
    const s = this.s;
    let resident = 0;
    if (!this.closed) for (let slot = 0; slot < this.slots; slot++) if (this.x.pgSlotPage(slot) >= 0) resident++;
    return {
      ...s,
      hitRatio: s.accesses ? s.hits / s.accesses : 0,
      resident,
      nearPages: this.closed ? 0 : this.x.pgNearCount(),
    };
  }

  /** True when page `page` (offset / 4096) is in the near pool now. */
  isNear(page: number): boolean {
    return this.tiered && this.inNear[page] === 1;
  }

  /** The recorded page-access trace (needs opts.trace), run-length encoded (src/paging/belady.ts). */
  trace(): PageTrace {
    if (!this.recording) throw new InvalidArgumentError('this space records no trace: create it with { trace: true }');
    return { pages: this.tracePages.slice(0, this.traceLen), runs: this.traceRuns.slice(0, this.traceLen) };
  }

  /**
   * Frees every page of the space in its pool(s) and drops the cache, with
   * no write-back (the contents end with the space). Idempotent.
   * @returns how many pages were freed
   */
  close(): number {
    if (this.closed) return 0;
    this.closed = true;
    this.unusable = true;
    let freed = 0;
    for (let page = 0; page < this.pages; page++) {
      if (this.addr[page] === 0) continue;
      try {
        this.storeOf(page).free(this.addr[page]);
      } catch (e) {
        // A closed or revoked client's blocks were freed by Pool.close or
        // are recovery's to free: nothing is left for the space to do.
        if (e instanceof DmemError && (e.code === 'POOL_CLOSED' || e.code === 'LEASE_EXPIRED')) continue;
        throw e;
      }
      this.addr[page] = 0;
      freed++;
    }
    return freed;
  }

  // ------------------------------------------------------------ the cache

  private live(): void {
    if (this.closed) throw new SpaceClosedError('space is closed');
    if (this.broken !== null) throw this.broken;
  }

  private range(offset: number, length: number): void {
    this.live();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.bytes) {
      throw new InvalidAddressError(`[${offset}, ${offset} + ${length}) is not inside the space of ${this.bytes} B`);
    }
  }

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
    this.s.accesses++;
    if (this.recording) this.record(page);
    const slot = this.x.pgAccess(page, write);
    if (slot < 0) return this.miss(page, write);
    this.s.hits++;
    if (this.prefetchedSlot[slot] === 1) {
      this.prefetchedSlot[slot] = 0;
      this.s.prefetchHits++;
    }
    return slot;
  }

  /**
   * A miss. An I/O error in the middle (a pool that was closed, a revoked
   * lease) leaves a slot whose bytes are in doubt: the space then refuses
   * every access with that error (close still frees its pages).
   */
  private miss(page: number, write: number): number {
    try {
      return this.missUnchecked(page, write);
    } catch (e) {
      this.broken = e instanceof Error ? e : new DmemError('SPACE_IO', String(e));
      this.unusable = true;
      throw e;
    }
  }

  private missUnchecked(page: number, write: number): number {
    this.s.misses++;
    if (this.prefetch === 'sequential') this.prefetchAround(page);
    const fresh = this.addr[page] === 0;
    if (fresh) {
      this.addr[page] = this.far.alloc();
      this.s.allocated++;
    }
    const slot = this.x.pgInstall(page, fresh ? MODE_FRESH : write ? MODE_WRITE : MODE_READ);
    this.evicted(slot);
    const buf = this.cache.subarray(slot * PAGE_BYTES, (slot + 1) * PAGE_BYTES);
    if (fresh) buf.fill(0);
    else this.fetch(page, buf);
    this.prefetchedSlot[slot] = 0;
    if (this.tiered && this.x.pgTick() - this.lastSweep >= this.sweepEvery) this.sweep();
    return slot;
  }

  /**
   * Sequential prefetch (ExtMem's): after `prefetchAfter` misses on
   * consecutive pages, fetch the next `prefetchPages` pages that are
   * allocated and not cached. They go in before the missed page, so that
   * making room for them can never evict it.
   */
  private prefetchAround(page: number): void {
    this.missRun = page === this.lastMiss + 1 ? this.missRun + 1 : 1;
    this.lastMiss = page;
    if (this.missRun < this.prefetchAfter) return;
    const end = Math.min(this.pages, page + 1 + this.prefetchPages);
    for (let p = page + 1; p < end; p++) {
      if (this.addr[p] === 0 || this.x.pgResident(p) === 1) continue;
      const slot = this.x.pgInstall(p, MODE_PREFETCH);
      this.evicted(slot);
      this.fetch(p, this.cache.subarray(slot * PAGE_BYTES, (slot + 1) * PAGE_BYTES));
      this.prefetchedSlot[slot] = 1;
      this.s.prefetched++;
    }
    // The next miss after the prefetched run continues the sequence.
    this.lastMiss = end - 1;
  }

  private fetch(page: number, buf: Uint8Array): void {
    this.storeOf(page).read(this.addr[page], buf);
    this.s.fetched++;
  }

  private storeOf(page: number): PageStore {
    return this.near !== null && this.inNear[page] === 1 ? this.near : this.far;
  }

  /** Handles the page the last pgInstall evicted from `slot`, if any, before the slot is refilled. */
  private evicted(slot: number): void {
    const page = this.x.pgEvictedPage();
    if (page < 0) return;
    this.s.evictions++;
    const buf = this.cache.subarray(slot * PAGE_BYTES, (slot + 1) * PAGE_BYTES);
    const action = this.x.pgEvictedAction();
    if (action === ACTION_PROMOTE) {
      const displaced = this.x.pgDisplacedPage();
      if (displaced >= 0) this.moveUncached(displaced);
      if (!this.move(page, buf, 1)) {
        this.x.pgTierForget(page);
        if (this.x.pgEvictedDirty() === 1) this.writeBack(page, buf);
      }
    } else if (action === ACTION_DEMOTE) {
      if (!this.move(page, buf, 0)) {
        if (this.x.pgEvictedDirty() === 1) this.writeBack(page, buf);
      }
    } else if (this.x.pgEvictedDirty() === 1) {
      this.writeBack(page, buf);
    }
  }

  private writeBack(page: number, buf: Uint8Array): void {
    this.storeOf(page).write(this.addr[page], buf);
    this.s.writtenBack++;
  }

  /**
   * Moves `page`, whose bytes are `buf`, to the near (1) or far (0) pool:
   * a new block there, then the old one freed. Returns false (nothing
   * moved) when the target pool is exhausted.
   */
  private move(page: number, buf: Uint8Array, toNear: number): boolean {
    const to = toNear ? this.near! : this.far;
    let gaddr: number;
    try {
      gaddr = to.alloc();
    } catch (e) {
      if (e instanceof DmemError && e.code === 'POOL_EXHAUSTED') return false;
      throw e;
    }
    to.write(gaddr, buf);
    this.storeOf(page).free(this.addr[page]);
    this.addr[page] = gaddr;
    this.inNear[page] = toNear;
    if (toNear) this.s.promoted++;
    else this.s.demoted++;
    return true;
  }

  /** Moves an uncached near page back to the far pool. */
  private moveUncached(page: number): void {
    this.near!.read(this.addr[page], this.moving);
    if (!this.move(page, this.moving, 0)) {
      throw new DmemError('SPACE_TIER', `tiering: the far pool is exhausted; page ${page} could not move back from the near pool`);
    }
  }

  /** Demotes near pages that cooled off while not cached. */
  private sweep(): void {
    this.lastSweep = this.x.pgTick();
    for (;;) {
      const n = this.x.pgTierSweep(256);
      for (let i = 0; i < n; i++) this.moveUncached(this.x.pgSweptPage(i));
      if (n < 256) return;
    }
  }

  private record(page: number): void {
    const n = this.traceLen;
    if (n > 0 && this.tracePages[n - 1] === page) {
      this.traceRuns[n - 1]++;
      return;
    }
    if (n === this.tracePages.length) {
      const cap = Math.max(1024, n * 2);
      const pages = new Uint32Array(cap);
      const runs = new Uint32Array(cap);
      pages.set(this.tracePages);
      runs.set(this.traceRuns);
      this.tracePages = pages;
      this.traceRuns = runs;
    }
    this.tracePages[n] = page;
    this.traceRuns[n] = 1;
    this.traceLen = n + 1;
  }
}

function positiveInt(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${v}`);
  return v;
}
