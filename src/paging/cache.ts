/**
 * What the synchronous Space (src/space.ts) and the AsyncSpace
 * (src/paging/async-space.ts) share: options, the page bytes, the page
 * table of gaddrs, the paging module instance that decides (policies, heat,
 * tiers), counters, the trace, the hit path, and the miss path written once
 * as a *plan* of page operations plus one generator per operation.
 *
 *   access -> hit(page): the module's pgAccess; a slot, or -1
 *   miss   -> planMiss(page): every decision, no I/O. pgInstall for the
 *             prefetched pages and the missed one; each eviction adds the
 *             victim's operation (write back, or a tier move), the missed
 *             page adds its fetch (or its first-touch allocation), a due
 *             tier sweep adds the moves of cooled near pages. The plan is a
 *             list of ops { kind, page, slot, arg } in the order the
 *             synchronous space used to do them one by one.
 *   execute -> each op's I/O is a generator (`runOp`) that yields what a
 *             store call returned: the Space runs the ops one after another
 *             (`runSync`, a yield's value is the call's result), the
 *             AsyncSpace awaits each yielded Promise (`runAsync`) and runs
 *             ops on different slots and pages at once.
 *
 * Concurrency argument for the AsyncSpace's overlap (the Space has none):
 * two ops may touch the same bytes only through the same cache slot (its
 * 4 KiB of `cache`) or the same page (its gaddr in `addr`, its tier in
 * `inNear`). An op that reads a slot (write back, move) and has no earlier
 * op of the plan on that slot copies the slot's bytes when it is issued, so
 * a later fetch into the slot may land at any time; any other op waits for
 * the ops before it in the plan on its slot and on its page. Gaddrs freed
 * by one op and allocated by another are ordered by the pool itself: an
 * alloc can return a gaddr only after its free completed, and the freeing
 * op touches it no more. The plan is made whole before any I/O starts and
 * the AsyncSpace serializes its public operations, so no decision is made
 * while a plan runs.
 *
 * Memory: the page bytes are one ArrayBuffer of slots * 4 KiB (host memory;
 * V8 caps one buffer at buffer.constants.MAX_LENGTH, 4 GiB on 64-bit Node
 * 20); the module's bookkeeping is 29..37 B per slot in its own memory of
 * at most 1 GiB (src/paging/module.ts); the gaddr table is 8 B per page.
 */
import { constants as bufferConstants } from 'node:buffer';
import {
  DmemError, InvalidAddressError, InvalidArgumentError, SpaceIoError, SpaceTierError,
} from '../errors.js';
import type { Pool } from '../pool.js';
import type { AsyncPool } from '../transports/tcp/client.js';
import { parseBytes } from '../units.js';
import type { PageTrace } from './belady.js';
import { pagingInstance, type PagingExports } from './module.js';
import { PAGE_BYTES, type AsyncPageStore } from './store.js';

/** Eviction policies (assembly/paging/). */
export const POLICIES = ['lru', 'clock', 'linux', 'heat'] as const;
export type PagingPolicy = typeof POLICIES[number];
/** Prefetch policies. */
export const PREFETCHES = ['none', 'sequential'] as const;
export type Prefetch = typeof PREFETCHES[number];

/** Options of a space whose pools are of type P (Pool for a Space; Pool or AsyncPool for an AsyncSpace). */
export interface SpaceOptionsOf<P> {
  /** Local cache size: bytes or "64MiB", rounded down to whole 4 KiB pages (at least one page; at most 4 GiB, one ArrayBuffer). */
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
  /** Record the page-access trace for offline replay (trace(); default false). */
  trace?: boolean;
  /**
   * Tiering: the far pool. With it, the `pool` argument is the near pool
   * (the `near` option may repeat it); pages start far and move near when hot.
   */
  far?: P;
  /** Tiering: the near pool; must be the `pool` argument when given. */
  near?: P;
  /** Tiering: near-tier bytes the space may use (default cacheBytes), whole pages. */
  nearBytes?: number | string;
  /** Tiering: heat (decayed accesses) at which a far page moves near on eviction (default 4). */
  hotHeat?: number;
  /** Tiering: heat under which a near page moves back far (default 0.5; below hotHeat). */
  coldHeat?: number;
  /** Tiering: accesses between sweeps of cooled near pages (default halfLife). */
  sweepEvery?: number;
  /** Accepted for compatibility; the paging module uses no randomness, so it has no effect. */
  seed?: number;
  /** Use the paging module's debug build, with the paging asserts on (default false). */
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

const MODE_READ = 0;
const MODE_WRITE = 1;
const MODE_PREFETCH = 2;
const MODE_FRESH = 3;
const ACTION_PROMOTE = 1;
const ACTION_DEMOTE = 2;

/** Page operations of a plan. */
export const enum Op {
  /** Read the page into its slot. */
  FETCH,
  /** First touch: allocate the page in the far pool, zero its slot. */
  FRESH,
  /** Write the slot's bytes back to the page. */
  WRITEBACK,
  /** Move the evicted page (bytes in its slot) to the other tier; `arg` bits: MOVE_NEAR, MOVE_DIRTY, MOVE_PROMOTE. */
  MOVE,
  /** Move an uncached near page back to the far pool (no slot). */
  MOVE_UNCACHED,
  /** Free the page's block (close; no slot). */
  FREE,
}
const MOVE_NEAR = 1;
const MOVE_DIRTY = 2;
const MOVE_PROMOTE = 4;

/** Largest space: 2^38 bytes (the page table costs 8 B per page in JS). */
export const SPACE_MAX_BYTES = 2 ** 38;
/** Largest cache: what one ArrayBuffer may hold, in whole pages. */
export const CACHE_MAX_BYTES = Math.floor(bufferConstants.MAX_LENGTH / PAGE_BYTES) * PAGE_BYTES;

/** Runs one op's generator where every yielded value is already the result (synchronous stores). */
export function runSync(g: Generator<unknown, void, unknown>): void {
  let r = g.next();
  while (!r.done) r = g.next(r.value);
}

/** Runs one op's generator, awaiting each yielded value (a Promise of a store call, or a value). */
export async function runAsync(g: Generator<unknown, void, unknown>): Promise<void> {
  let r = g.next();
  while (!r.done) {
    let v: unknown;
    try {
      v = await r.value;
    } catch (e) {
      r = g.throw(e);
      continue;
    }
    r = g.next(v);
  }
}

/**
 * The state and decisions of a space over stores of type S (see the file
 * comment). Not shared between threads; one space per client.
 */
export abstract class PageCache<S extends AsyncPageStore> {
  /** Size in bytes. */
  readonly bytes: number;
  readonly pages: number;
  /** Cache size in pages. */
  readonly slots: number;
  readonly policy: PagingPolicy;
  readonly prefetch: Prefetch;
  readonly tiered: boolean;

  protected readonly x: PagingExports;
  protected readonly far: S;
  protected readonly near: S | null;
  /** gaddr of each page's block, 0 before first touch. */
  protected readonly addr: Float64Array;
  /** 1 where the page's block is in the near pool. */
  protected readonly inNear: Uint8Array;
  protected readonly cache: Uint8Array;
  protected readonly view: DataView;
  /** 1 for a slot filled by prefetch and not accessed since. */
  private readonly prefetchedSlot: Uint8Array;
  /** The bytes of a typed access that straddles two pages, and views of its first 2, 4 and 8 bytes. */
  protected readonly scratch = new Uint8Array(8);
  protected readonly scratchView = new DataView(this.scratch.buffer);
  protected readonly scratchOf: Readonly<Record<number, Uint8Array>> = { 2: this.scratch.subarray(0, 2), 4: this.scratch.subarray(0, 4), 8: this.scratch };
  private readonly prefetchPages: number;
  private readonly prefetchAfter: number;
  private readonly sweepEvery: number;
  private lastMiss = -2;
  private missRun = 0;
  private lastSweep = 0;
  /** True once closed or broken: the hot path's one check. */
  protected unusable = false;
  protected closed = false;
  /** The I/O error that left the cache in doubt; every later access throws it. */
  private broken: Error | null = null;

  private readonly recording: boolean;
  private tracePages = new Uint32Array(0);
  private traceRuns = new Uint32Array(0);
  private traceLen = 0;

  /** The plan: ops 0 .. nOps-1 (arrays reused from miss to miss). */
  protected nOps = 0;
  protected readonly opKind: Op[] = [];
  protected readonly opPage: number[] = [];
  protected readonly opSlot: number[] = [];
  private readonly opArg: number[] = [];
  /** Pages the last close plan freed. */
  protected freed = 0;

  protected readonly s = {
    accesses: 0, hits: 0, misses: 0, fetched: 0, writtenBack: 0, evictions: 0, prefetched: 0, prefetchHits: 0,
    allocated: 0, promoted: 0, demoted: 0,
  };

  /**
   * @param store the store of a pool of this space's kind
   * @throws InvalidArgumentError bad size, cache, policy, prefetch or tier options
   */
  constructor(pool: S['pool'], bytes: number | string, opts: SpaceOptionsOf<S['pool']>, store: (p: S['pool']) => S) {
    this.bytes = parseBytes(bytes);
    if (this.bytes < 1 || this.bytes > SPACE_MAX_BYTES) {
      throw new InvalidArgumentError(`space size must be 1 B .. ${SPACE_MAX_BYTES} B, got ${this.bytes}`);
    }
    if (opts === null || typeof opts !== 'object' || opts.cacheBytes === undefined) {
      throw new InvalidArgumentError('a space needs options with cacheBytes, e.g. { cacheBytes: "16MiB" }');
    }
    this.pages = Math.ceil(this.bytes / PAGE_BYTES);
    const cacheBytes = parseBytes(opts.cacheBytes);
    this.slots = Math.min(Math.floor(cacheBytes / PAGE_BYTES), this.pages);
    if (this.slots < 1) throw new InvalidArgumentError(`cacheBytes must hold at least one ${PAGE_BYTES} B page, got ${cacheBytes}`);
    if (this.slots * PAGE_BYTES > CACHE_MAX_BYTES) {
      throw new InvalidArgumentError(`a cache of ${this.slots * PAGE_BYTES} B is more than one ArrayBuffer holds (${CACHE_MAX_BYTES} B): use a smaller cacheBytes`);
    }
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
      this.far = store(opts.far!);
      this.near = store(pool);
    } else {
      if (opts.near !== undefined || opts.nearBytes !== undefined) throw new InvalidArgumentError('tiering needs opts.far (the far pool); the first argument is then the near pool');
      this.far = store(pool);
      this.near = null;
    }
    this.sweepEvery = positiveInt(opts.sweepEvery ?? Math.ceil(halfLife), 'sweepEvery');

    this.x = pagingInstance(opts.debug ?? false);
    const r = this.x.pgInit(this.slots, POLICIES.indexOf(this.policy), halfLife, nearPages, hot, cold);
    if (r !== 0) {
      throw new InvalidArgumentError(`paging setup refused a cache of ${this.slots} pages${nearPages ? ` and a near tier of ${nearPages} pages` : ''} (status ${r}; at most 2^24 pages each, bookkeeping in at most 1 GiB)`);
    }
    this.addr = new Float64Array(this.pages);
    this.inNear = new Uint8Array(this.tiered ? this.pages : 0);
    this.cache = new Uint8Array(this.slots * PAGE_BYTES);
    this.view = new DataView(this.cache.buffer);
    this.prefetchedSlot = new Uint8Array(this.slots);
    this.recording = opts.trace ?? false;
  }

  // ------------------------------------------------------------ whole space

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

  // ------------------------------------------------------------ checks

  protected live(): void {
    if (this.closed) throw new SpaceClosedError('space is closed');
    if (this.broken !== null) throw this.broken;
  }

  protected range(offset: number, length: number): void {
    this.live();
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.bytes) {
      throw new InvalidAddressError(`[${offset}, ${offset} + ${length}) is not inside the space of ${this.bytes} B`);
    }
  }

  /** Records `e` as the error that left the cache in doubt (every later access throws it); returns it. */
  protected breakWith(e: unknown): Error {
    const err = e instanceof Error ? e : new SpaceIoError(`page I/O failed: ${String(e)}`, { cause: e });
    this.broken = err;
    this.unusable = true;
    return err;
  }

  // ------------------------------------------------------------ hits

  /** One access to `page` (a write when `write` is 1): its slot on a hit, -1 on a miss (planMiss next). */
  protected hit(page: number, write: number): number {
    this.s.accesses++;
    if (this.recording) this.record(page);
    const slot = this.x.pgAccess(page, write);
    if (slot < 0) return -1;
    this.s.hits++;
    if (this.prefetchedSlot[slot] === 1) {
      this.prefetchedSlot[slot] = 0;
      this.s.prefetchHits++;
    }
    return slot;
  }

  /**
   * Copies the part of `bytes` from index `done` that falls in the page at
   * `offset + done`, whose slot is `slot`, out of (write 0) or into
   * (write 1) the cache; returns how many bytes.
   */
  protected copyAt(offset: number, bytes: Uint8Array, done: number, slot: number, write: number): number {
    const within = (offset + done) % PAGE_BYTES;
    const n = Math.min(PAGE_BYTES - within, bytes.length - done);
    const base = slot * PAGE_BYTES + within;
    if (write) this.cache.set(bytes.subarray(done, done + n), base);
    else bytes.set(this.cache.subarray(base, base + n), done);
    return n;
  }

  /** The cache bytes of `slot`. */
  protected slotBytes(slot: number): Uint8Array {
    return this.cache.subarray(slot * PAGE_BYTES, (slot + 1) * PAGE_BYTES);
  }

  // ------------------------------------------------------------ plans

  /**
   * Plans a miss on `page` (its access was counted by `hit`): every
   * decision, no I/O. Returns the slot the page will be in once the plan
   * has run.
   */
  protected planMiss(page: number, write: number): number {
    this.nOps = 0;
    this.s.misses++;
    if (this.prefetch === 'sequential') this.planPrefetch(page);
    const fresh = this.addr[page] === 0;
    const slot = this.x.pgInstall(page, fresh ? MODE_FRESH : write ? MODE_WRITE : MODE_READ);
    this.planEvicted(slot);
    this.push(fresh ? Op.FRESH : Op.FETCH, page, slot, 0);
    this.prefetchedSlot[slot] = 0;
    if (this.tiered && this.x.pgTick() - this.lastSweep >= this.sweepEvery) this.planSweep();
    return slot;
  }

  /**
   * Sequential prefetch (ExtMem's): after `prefetchAfter` misses on
   * consecutive pages, fetch the next `prefetchPages` pages that are
   * allocated and not cached. They go in before the missed page, so that
   * making room for them can never evict it. In an AsyncSpace their
   * fetches are in flight together.
   */
  private planPrefetch(page: number): void {
    this.missRun = page === this.lastMiss + 1 ? this.missRun + 1 : 1;
    this.lastMiss = page;
    if (this.missRun < this.prefetchAfter) return;
    const end = Math.min(this.pages, page + 1 + this.prefetchPages);
    for (let p = page + 1; p < end; p++) {
      if (this.addr[p] === 0 || this.x.pgResident(p) === 1) continue;
      const slot = this.x.pgInstall(p, MODE_PREFETCH);
      this.planEvicted(slot);
      this.push(Op.FETCH, p, slot, 0);
      this.prefetchedSlot[slot] = 1;
      this.s.prefetched++;
    }
    // The next miss after the prefetched run continues the sequence.
    this.lastMiss = end - 1;
  }

  /** Plans what happens to the page the last pgInstall evicted from `slot`, if any, before the slot is refilled. */
  private planEvicted(slot: number): void {
    const page = this.x.pgEvictedPage();
    if (page < 0) return;
    this.s.evictions++;
    const action = this.x.pgEvictedAction();
    const dirty = this.x.pgEvictedDirty() === 1 ? MOVE_DIRTY : 0;
    if (action === ACTION_PROMOTE) {
      const displaced = this.x.pgDisplacedPage();
      if (displaced >= 0) this.push(Op.MOVE_UNCACHED, displaced, -1, 0);
      this.push(Op.MOVE, page, slot, MOVE_NEAR | MOVE_PROMOTE | dirty);
    } else if (action === ACTION_DEMOTE) {
      this.push(Op.MOVE, page, slot, dirty);
    } else if (dirty) {
      this.push(Op.WRITEBACK, page, slot, 0);
    }
  }

  /** Plans the demotion of near pages that cooled off while not cached. */
  private planSweep(): void {
    this.lastSweep = this.x.pgTick();
    for (;;) {
      const n = this.x.pgTierSweep(256);
      for (let i = 0; i < n; i++) this.push(Op.MOVE_UNCACHED, this.x.pgSweptPage(i), -1, 0);
      if (n < 256) return;
    }
  }

  /** Plans the write-back of every dirty cached page (they stay cached, now clean); returns how many. */
  protected planFlush(): number {
    this.nOps = 0;
    for (let slot = 0; slot < this.slots; slot++) {
      if (this.x.pgSlotDirty(slot) === 0) continue;
      this.push(Op.WRITEBACK, this.x.pgSlotPage(slot), slot, 0);
      this.x.pgClean(slot);
    }
    return this.nOps;
  }

  /** Plans freeing every allocated page; marks the space closed (ops run after: `freed` counts them). */
  protected planClose(): void {
    this.closed = true;
    this.unusable = true;
    this.nOps = 0;
    this.freed = 0;
    for (let page = 0; page < this.pages; page++) if (this.addr[page] !== 0) this.push(Op.FREE, page, -1, 0);
  }

  private push(kind: Op, page: number, slot: number, arg: number): void {
    const i = this.nOps++;
    this.opKind[i] = kind;
    this.opPage[i] = page;
    this.opSlot[i] = slot;
    this.opArg[i] = arg;
  }

  // ------------------------------------------------------------ page I/O

  /**
   * Op `i` of the plan as a generator that yields what each store call
   * returned and receives its result (runSync / runAsync). `buf` is the
   * op's bytes: the slot's bytes (or a copy of them) for ops with a slot,
   * a page-sized scratch buffer for MOVE_UNCACHED.
   */
  protected *runOp(i: number, buf: Uint8Array): Generator<unknown, void, unknown> {
    const page = this.opPage[i];
    const arg = this.opArg[i];
    switch (this.opKind[i]) {
      case Op.FETCH:
        yield this.storeOf(page).read(this.addr[page], buf);
        this.s.fetched++;
        return;
      case Op.FRESH:
        this.addr[page] = (yield this.far.alloc()) as number;
        this.s.allocated++;
        buf.fill(0);
        return;
      case Op.WRITEBACK:
        yield* this.writeBack(page, buf);
        return;
      case Op.MOVE:
        if (yield* this.move(page, buf, arg & MOVE_NEAR)) return;
        // The target pool is exhausted: the page stays in its tier.
        if (arg & MOVE_PROMOTE) this.x.pgTierForget(page);
        if (arg & MOVE_DIRTY) yield* this.writeBack(page, buf);
        return;
      case Op.MOVE_UNCACHED:
        yield this.near!.read(this.addr[page], buf);
        if (!(yield* this.move(page, buf, 0))) {
          throw new SpaceTierError(`tiering: the far pool is exhausted; page ${page} could not move back from the near pool`);
        }
        return;
      case Op.FREE:
        try {
          yield this.storeOf(page).free(this.addr[page]);
        } catch (e) {
          // A closed or revoked client's blocks were freed by Pool.close or
          // are recovery's to free: nothing is left for the space to do.
          if (e instanceof DmemError && (e.code === 'POOL_CLOSED' || e.code === 'LEASE_EXPIRED')) return;
          throw e;
        }
        this.addr[page] = 0;
        this.freed++;
    }
  }

  private *writeBack(page: number, buf: Uint8Array): Generator<unknown, void, unknown> {
    yield this.storeOf(page).write(this.addr[page], buf);
    this.s.writtenBack++;
  }

  /**
   * Moves `page`, whose bytes are `buf`, to the near (1) or far (0) pool:
   * a new block there, then the old one freed. Returns false (nothing
   * moved) when the target pool is exhausted.
   */
  private *move(page: number, buf: Uint8Array, toNear: number): Generator<unknown, boolean, unknown> {
    const to = toNear ? this.near! : this.far;
    let gaddr: number;
    try {
      gaddr = (yield to.alloc()) as number;
    } catch (e) {
      if (e instanceof DmemError && e.code === 'POOL_EXHAUSTED') return false;
      throw e;
    }
    yield to.write(gaddr, buf);
    yield this.storeOf(page).free(this.addr[page]);
    this.addr[page] = gaddr;
    this.inNear[page] = toNear;
    if (toNear) this.s.promoted++;
    else this.s.demoted++;
    return true;
  }

  protected storeOf(page: number): S {
    return this.near !== null && this.inNear[page] === 1 ? this.near : this.far;
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

export function positiveInt(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got ${v}`);
  return v;
}

/** Pools of either kind, for messages. */
export type AnyPool = Pool | AsyncPool;
