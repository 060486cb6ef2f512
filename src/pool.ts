/**
 * One client's handle on one memory node's pool (docs/design.md, "Client
 * API"): alloc/free/read/write/cas/faa by gaddr, and the facades of the
 * pool's heap, named regions and epochs. In one-sided mode (memory, cxl-shm)
 * the Wasm core runs here, in the client, and every call is synchronous.
 *
 * Where the rest lives:
 *   src/open.ts    openPool(uri) and the transport registry
 *   src/lease.ts   heartbeat, revocation watch and fencing of this client
 *   src/admin.ts   decoders of the core's reports (census, stats, fsck, slots, orphans)
 *   src/heap.ts, src/region.ts   the heap and region facades
 */
import { endianness, hostname } from 'node:os';
import { randomBytes, createHash } from 'node:crypto';
import {
  readCensus, readFsck, readGeometry, readOrphans, readReclaim, readSlot, readStats,
  type ClientSlot, type ClientStats, type FsckReport, type OrphanRecord, type PoolCensus, type PoolGeometry, type ReclaimReport,
} from './admin.js';
import { Geometry, Layout, Status } from './abi.js';
import { Core, check } from './core.js';
import { parseCrashPoint } from './crash.js';
import { bytesOf, integerIn, optionsObject, show, sizeArgument, word64 } from './args.js';
import { CorruptPoolError, InvalidAddressError, InvalidArgumentError, NotAPoolError, PoolBusyError, PoolClosedError } from './errors.js';
import { bootId, pidNamespace, processStartTime } from './proc.js';
import { MAX_NODE, NODE_SPAN, nodeOf, toGaddr } from './gaddr.js';
import { Heap } from './heap.js';
import { createSpace, type Space, type SpaceOptions } from './space.js';
import type { PoolInternals } from './internals.js';
import { ClientLease } from './lease.js';
import { BlockCacheFastPath } from './blockcache.js';
import { RegionDirectory, type Region, type RegionInfo } from './region.js';
import { FORMAT_CLAIM, type Transport } from './transport.js';

export { openPool } from './open.js';
export type {
  ClientSlot, ClientStats, FsckReport, OrphanRecord, PoolCensus, PoolGeometry, ReclaimReport,
} from './admin.js';

/** Options of `openPool` and `Pool.attach`. */
export interface PoolOptions {
  /** Pool size in bytes (or "1GiB"); required to create, ignored on attach. */
  size?: number | string;
  /** Create the pool when it does not exist (default true). */
  create?: boolean;
  /** Client-table slots when formatting (1..4093, default 256). */
  clients?: number;
  /** PRNG seed; the same seed and the same pool answers give the same run (default: random). */
  seed?: number | bigint;
  /** Load the core's debug build, with every invariant assert on (default false). */
  debug?: boolean;
  /** Memory-node id put into gaddrs (0..4095, default 0). */
  node?: number;
  /** cxl-shm only: bytes per mapping window (power of two, default 1 GiB). */
  windowBytes?: number;
  /** How long to wait for a concurrent creator to finish formatting (ms, default 5000). */
  attachTimeoutMs?: number;
  /** Lease heartbeat period of the idle timer (ms; default a quarter of the pool's lease); 0 turns the timer off (operations still renew). */
  heartbeatMs?: number;
  /** Arm a named crash point, "name" or "name:skip" (src/crash.ts; tests only). Default: DMEM_CRASH_POINT. */
  crashPoint?: string;
  /** The file or device, as error messages name it (openPool passes the path). */
  medium?: string;
  /**
   * Blocks per size class 0..4 this client keeps for reuse when it frees
   * them (its block cache, assembly/cache.ts: 0..256; 0 turns it off).
   * Cached blocks stay allocated in the pool (the census lists them as
   * cached by this client) until it allocates them again, flushes, closes
   * or is recovered, or until an allocation of any client finds the pool
   * exhausted: it takes them back first (a steal, assembly/cache.ts), so a
   * cache never makes an allocation fail. At 256 a client hides at most
   * 256 blocks of each class, 256 * (4 + 8 + 16 + 32 + 64) KiB = 31 MiB.
   * Default: the environment's DMEM_BLOCK_CACHE, else 256 (a whole epoch of
   * FineMem's frag pattern, 250 frees then 250 allocations, is served from
   * the cache).
   */
  blockCache?: number;
  /**
   * Let the core reach the pool's first window (up to 2 GiB) without import
   * calls where the medium can map it into the core's memory (cxl-shm:
   * docs/abi.md, "Direct window"; src/core.ts, mapDirect). Default: true,
   * unless the environment has DMEM_DIRECT=0. Results are the same either
   * way; only the speed differs.
   */
  direct?: boolean;
}

/** Most blocks per size class a client's block cache holds (assembly/cache.ts, CACHE_MAX). */
export const BLOCK_CACHE_MAX = 256;

/** This client's counters, with its block cache. */
export interface PoolClientStats extends ClientStats {
  /** Blocks this client freed and keeps for reuse (still allocated in the pool, HELD | CACHED). */
  cache: { limit: number; blocks: number; chunks: number; perClass: number[] };
}

/**
 * A pool census, with the blocks in clients' block caches: allocated in
 * metadata, freed by the application, kept by their client for reuse. They
 * are not in `chunks.held`, `chunks.free`, `chunks.orphan` nor `perClass`:
 * free + held + orphan + cached chunks = all chunks.
 */
export interface PoolCensusWithCache extends PoolCensus {
  /** Blocks cached by their clients; `byClient` lists up to 64 clients (the totals count all). */
  cached: { blocks: number; chunks: number; byClient: Array<{ client: number; blocks: number; chunks: number }> };
}

/** Pools whose transport they opened themselves, and so close. */
const owners = new WeakSet<Pool>();

/** Marks `pool` as the owner of its transport: `close()` closes it too (src/open.ts). @internal */
export function ownTransport(pool: Pool): Pool {
  owners.add(pool);
  return pool;
}

/** One client's handle on a pool. Not safe to share between threads; open one per thread/process. */
export class Pool {
  readonly transport: Transport;
  readonly geometry: PoolGeometry;
  /** Memory-node id in this pool's gaddrs. */
  readonly node: number;
  private readonly core: Core;
  private readonly x: Core['exports'];
  private readonly dataOffset: number;
  private readonly dataEnd: number;
  private readonly base: number;
  private closed = false;
  private readonly lease: ClientLease;

  /** What this Pool's heap, regions and epochs see of it (src/internals.ts). */
  private readonly internals: PoolInternals;
  private heapHandle: Heap | undefined;
  private epochDepth = 0;

  /** Blocks per class 0..4 this client's block cache may hold (assembly/cache.ts). */
  private readonly cacheLimit: number;

  /** The block cache's JS fast path (src/blockcache.ts), where the pool is one mapped window and no crash point is armed. */
  private readonly fast: BlockCacheFastPath | null;

  private constructor(transport: Transport, core: Core, node: number, heartbeatMs: number | null, cacheLimit: number, crashArmed: boolean) {
    this.cacheLimit = cacheLimit;
    this.transport = transport;
    this.core = core;
    this.x = core.exports;
    this.node = node;
    this.geometry = readGeometry(core);
    this.dataOffset = this.geometry.dataOffset;
    this.dataEnd = this.dataOffset + this.geometry.dataBytes;
    this.base = toGaddr(node, 0);
    const fastOk = !crashArmed && endianness() === 'LE';
    const mapping = fastOk ? transport.mapped?.windowArrays() ?? null : null;
    this.internals = {
      core, x: this.x, transport, node,
      guard: () => this.guard(),
      offset: (gaddr) => this.offset(gaddr),
      gaddr: (offset) => this.base + offset,
      fastMapping: mapping,
    };
    this.lease = new ClientLease(core, transport, heartbeatMs);
    // The block cache's fast path touches only owner-log words: it needs the
    // whole owner log in the mapping's first window (one window, or pools
    // up to about 120 GiB with the default 1 GiB windows).
    const chunks = this.geometry.sections * Layout.sectionSpans * Layout.spanChunks;
    const logOffset = this.x.geometry(Geometry.ownerLogOffset);
    const words = cacheLimit > 0 && mapping !== null && mapping.words.length > 0 && logOffset + 8 * chunks <= mapping.words[0].byteLength
      ? mapping.words[0] : null;
    this.fast = words === null ? null : new BlockCacheFastPath(core, words, logOffset, this.dataOffset, chunks, cacheLimit);
  }

  /**
   * Formats (when `opts.create`) or attaches to the pool on `transport` and
   * registers a client. The transport stays the caller's: `close()` does not
   * close it (several Pools may share one transport, one per client).
   * @throws InvalidArgumentError (transport or an option of the wrong type or
   *   range, named with its value), CorruptPoolError (a superblock that does not
   *   fit the medium: the message gives both sizes); otherwise see openPool
   */
  static attach(transport: Transport, opts: PoolOptions = {}): Pool {
    checkTransport(transport);
    const o = checkPoolOptions(opts);
    const core = new Core(transport, o.seed, opts.debug ?? false, opts.direct ?? process.env.DMEM_DIRECT !== '0');
    try {
      return Pool.attachCore(transport, core, o, opts);
    } catch (err) {
      core.releaseDirect();
      throw err;
    }
  }

  /** attach() once its core exists. */
  private static attachCore(transport: Transport, core: Core, o: ReturnType<typeof checkPoolOptions>, opts: PoolOptions): Pool {
    const x = core.exports;
    if (opts.create) {
      const clients = o.clients;
      const r = x.format(transport.size, clients);
      if (r === Status.INVALID_ARGUMENT) {
        throw new InvalidArgumentError(`cannot format a pool of ${transport.size} bytes with ${clients} clients: it needs at least one 2 MiB section plus metadata, and the medium must not already hold a pool`);
      }
      check(r, 'format');
    } else {
      attachWhenFormatted(core, transport, o.attachTimeoutMs, opts.medium ?? `the ${transport.kind} medium`);
    }
    const crash = opts.crashPoint ?? process.env.DMEM_CRASH_POINT;
    if (crash) {
      const { id, skip } = parseCrashPoint(crash);
      x.crashAt(id, skip);
    }
    check(x.register(process.pid, hostId(), processStartTime(process.pid) ?? 0n, pidNamespace(), bootId()), 'register');
    const cacheLimit = x.setBlockCache(o.blockCache);
    return new Pool(transport, core, o.node, opts.heartbeatMs ?? null, cacheLimit, Boolean(crash));
  }

  /** Hash of this host's name, as recorded in client slots. */
  static get hostId(): bigint {
    return hostId();
  }

  /** This client's id in the pool's client table (1..4093). */
  get clientId(): number {
    return this.x.geometry(Geometry.clientId);
  }

  /**
   * Allocates at least `bytes` (1 B .. pool size): the smallest size class
   * 4 KiB * 2^c that fits up to 2 MiB (FineMem, section 4.1), whole 2 MiB
   * sections above. Returns the block's gaddr.
   * @param bytes an integer from 1 to `geometry.dataBytes`
   * @throws InvalidArgumentError (bytes not such an integer: 0, NaN, a
   *   fraction, a BigInt, or more than the pool's data area),
   *   PoolExhaustedError (no free run that large now), LeaseExpiredError, PoolClosedError
   */
  alloc(bytes: number): number {
    this.guard();
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 1 || bytes > this.geometry.dataBytes) this.badSize('alloc', bytes);
    if (this.fast !== null && bytes <= 16 * Layout.chunkBytes) {
      // The smallest class c with 4 KiB * 2^c >= bytes (assembly/layout.ts classOfBytes).
      const f = this.fast.alloc(bytes <= Layout.chunkBytes ? 0 : 32 - Math.clz32(Math.ceil(bytes / Layout.chunkBytes) - 1));
      if (f >= 0) return this.base + f;
    }
    return this.base + this.coreAlloc(bytes, true);
  }

  /**
   * Allocates one block of size class `cls` (an integer 0..9: 4 KiB * 2^cls). Returns its gaddr.
   * @throws InvalidArgumentError, PoolExhaustedError, LeaseExpiredError, PoolClosedError
   */
  allocClass(cls: number): number {
    this.guard();
    // A cached class (0..4; Number.isInteger is false for a non-number, so
    // nothing is coerced) goes to the fast path; everything else, and
    // anything it cannot do, to coreAlloc, which checks cls first.
    if (this.fast !== null && Number.isInteger(cls) && cls >= 0 && cls <= 4) {
      const f = this.fast.alloc(cls);
      if (f >= 0) return this.base + f;
    }
    return this.base + this.coreAlloc(cls, false);
  }

  /**
   * Frees the block that starts at `gaddr` (any client may free any block).
   * @throws InvalidArgumentError (gaddr not a number: a BigInt, a string),
   *   InvalidAddressError (not the start of an allocated block), DoubleFreeError
   */
  free(gaddr: number): void {
    this.guard();
    const off = this.offset(gaddr);
    if (this.fast !== null && this.fast.free(off)) return;
    this.coreFree(off, gaddr);
  }

  /*
   * The hot methods above (alloc, allocClass, free) and guard and offset
   * below keep their rare paths (the core's allocation and free, error
   * messages) in separate methods: V8 inlines callees into a function only
   * up to a budget of inlined bytecode (920 bytes per optimized function in
   * Node 20's V8), so every byte of a message template on the hot path can
   * keep a caller's loop from inlining the whole operation.
   */

  /**
   * The core's allocation of `n` bytes (`bytes`, checked by the caller) or
   * of class `n` (checked here); returns the block's offset.
   */
  private coreAlloc(n: number, bytes: boolean): number {
    if (!bytes) integerIn('allocClass: cls', n, 0, Layout.maxClass);
    const r = bytes ? this.x.allocBytes(n) : this.x.alloc(n);
    if (r < 0) check(r, bytes ? `alloc(${n})` : `allocClass(${n})`);
    return r;
  }

  /** The core's free of the block at offset `off` (`gaddr`, for the message). */
  private coreFree(off: number, gaddr: number): void {
    const r = this.x.free(off);
    if (r < 0) check(r, `free(${gaddr})`);
  }

  /**
   * Reads `length` bytes at `gaddr` into a new Uint8Array.
   * @param length an integer from 0 to the pool's data bytes
   * @throws InvalidArgumentError (length not such an integer: NaN, negative,
   *   a fraction), InvalidAddressError when any byte lies outside allocated blocks
   */
  read(gaddr: number, length: number): Uint8Array {
    if (typeof length !== 'number' || !Number.isSafeInteger(length) || length < 0 || length > this.geometry.dataBytes) {
      integerIn('read: length', length, 0, this.geometry.dataBytes);
    }
    const dst = new Uint8Array(length);
    this.readInto(gaddr, dst);
    return dst;
  }

  /**
   * Reads `dst.byteLength` bytes at `gaddr` into `dst`, any typed array,
   * DataView or Buffer (filled as bytes, in pool order).
   * @throws InvalidArgumentError (dst not such a view), InvalidAddressError
   */
  readInto(gaddr: number, dst: ArrayBufferView): void {
    const bytes = bytesOf('readInto: dst', dst);
    const off = this.range(gaddr, bytes.length, 'read');
    this.transport.read(off, bytes);
  }

  /**
   * Writes `bytes` at `gaddr`. Any typed array, DataView or Buffer is written
   * as the bytes it holds (a `Uint16Array([0x0102])` is 2 bytes, 02 01 on
   * little-endian hosts; a `Float64Array` 8 bytes per element).
   * @throws InvalidArgumentError (not a byte view: an Array of numbers, a
   *   string), InvalidAddressError when any byte lies outside allocated blocks
   */
  write(gaddr: number, bytes: ArrayBufferView | ArrayBufferLike): void {
    const src = bytesOf('write: bytes', bytes);
    const off = this.range(gaddr, src.length, 'write');
    this.transport.write(off, src);
  }

  /**
   * Atomic 64-bit compare-and-swap on the 8-aligned word at `gaddr`; returns
   * the word found (== expected when the swap happened), signed 64-bit.
   * `expected` and `desired` are BigInts from -(2^63) to 2^64 - 1: a value
   * of 2^63 or more is taken as its unsigned 64-bit pattern (2^64 - 1 is the
   * same word as -1n); anything outside is refused, never wrapped.
   * @throws InvalidArgumentError (not a BigInt, or out of that range),
   *   InvalidAddressError (unaligned or outside allocated blocks)
   */
  cas(gaddr: number, expected: bigint, desired: bigint): bigint {
    const e = word64('cas: expected', expected);
    const d = word64('cas: desired', desired);
    const off = this.word(gaddr, 'cas');
    return this.transport.cas64(off, e, d);
  }

  /**
   * Atomic 64-bit fetch-and-add on the 8-aligned word at `gaddr` (the sum
   * wraps modulo 2^64); returns the word before the add, signed 64-bit.
   * `delta` is a BigInt from -(2^63) to 2^64 - 1, as for `cas`.
   * @throws InvalidArgumentError (not a BigInt, or out of that range),
   *   InvalidAddressError (unaligned or outside allocated blocks)
   */
  faa(gaddr: number, delta: bigint): bigint {
    const d = word64('faa: delta', delta);
    const off = this.word(gaddr, 'faa');
    return this.transport.faa64(off, d);
  }

  /** This client's counters (allocs, frees, CAS retries, transport ops per op) and its block cache. */
  stats(): PoolClientStats {
    this.guard();
    const perClass: number[] = [];
    let blocks = 0;
    let chunks = 0;
    for (let c = 0; c < 5; c++) {
      const n = this.x.blockCacheCount(c);
      perClass.push(n);
      blocks += n;
      chunks += n * 2 ** c;
    }
    const cache = { limit: this.cacheLimit, blocks, chunks, perClass };
    const s = readStats(this.core, this.clientId);
    if (this.fast !== null) {
      // The fast path's operations: one CAS each, counted here (the core counts its own).
      let fa = 0;
      let ff = 0;
      for (let c = 0; c < 5; c++) {
        fa += this.fast.allocs[c];
        ff += this.fast.frees[c];
        s.perClass.allocated[c] += this.fast.allocs[c];
        s.perClass.freed[c] += this.fast.frees[c];
      }
      const allocOps = s.transportOps.perAlloc * s.allocs + fa;
      const freeOps = s.transportOps.perFree * s.frees + ff;
      s.allocs += fa;
      s.frees += ff;
      s.cas.attempts += fa + ff;
      s.cas.retriesPerAlloc = s.allocs ? s.cas.retries / s.allocs : 0;
      s.transportOps = { total: s.transportOps.total + fa + ff, perAlloc: s.allocs ? allocOps / s.allocs : 0, perFree: s.frees ? freeOps / s.frees : 0 };
    }
    return { ...s, cache };
  }

  /**
   * Pool-wide census from metadata (reads every header: O(pool size / 2 MiB)
   * bulk reads), with the blocks each client keeps in its block cache.
   */
  census(): PoolCensusWithCache {
    this.live();
    const census = readCensus(this.core, this.geometry.sections);
    const f = this.core.floats(this.x.scanCached(), 3 + 3 * 64);
    const byClient = [];
    for (let i = 0; i < f[2]; i++) byClient.push({ client: f[3 + 3 * i], blocks: f[4 + 3 * i], chunks: f[5 + 3 * i] });
    return { ...census, cached: { blocks: f[0], chunks: f[1], byClient } };
  }

  /**
   * Gives every block of this client's block cache back to the pool (close
   * and recovery do it too; an allocation that finds the pool exhausted
   * does it before it fails).
   * @returns how many blocks went back
   * @throws LeaseExpiredError, PoolClosedError
   */
  flushCache(): number {
    this.guard();
    return this.x.blockCacheFlush();
  }

  /**
   * Frees every block this client still holds (so a closed client leaks
   * nothing), releases its slot, and closes the transport if `openPool`
   * opened it. Blocks this client allocated and handed to others are freed
   * too: a block belongs to the client that allocated it. Idempotent; after a
   * revoked lease it only lets go of the transport (recovery reclaims).
   * @returns how many blocks were still held and are now freed
   */
  close(): number {
    if (this.closed) return 0;
    this.closed = true;
    this.lease.stop();
    let freed = 0;
    try {
      if (this.lease.fenced === null && this.lease.slotIsOurs()) {
        // The delayed-free ring's lock may be held by a paused client: try a
        // few times (each waits up to two leases, renewing); if it stays
        // busy, keep the slot and the transport so that a later close()
        // retries, and say so.
        for (let attempt = 0; ; attempt++) {
          const r = readReclaim(this.core, this.x.releaseHeld());
          freed += r?.blocks ?? 0;
          if (r === null || r.complete) break;
          if (attempt === 2) {
            this.closed = false;
            this.lease.restart();
            throw new PoolBusyError('close: the delayed-free ring\'s lock stayed held by a live client, so some heap objects of this client could not be freed yet; the pool stays open: call close() again');
          }
        }
        this.x.unregister();
      } else {
        // Revoked: the cached blocks are its recovery's to free; forget them
        // (no pool write: a fenced client writes nothing, assembly/cache.ts).
        this.x.blockCacheDrop();
        // Revoked without noticing (no call since): acknowledge, so recovery need not wait.
        if (this.lease.fenced === null) this.lease.acknowledgeIfRevoked();
      }
    } finally {
      if (this.closed) {
        this.core.releaseDirect();
        if (owners.has(this)) this.transport.close();
      }
    }
    return freed;
  }

  /**
   * Runs `fn` as one operation of the pool's epoch scheme (Fraser 2004; HPE
   * NVMM's epochs): a `heap.freeDelayed` object is not reused while any
   * operation that was in progress when it was queued is still running, in
   * any client. Operations of one client may overlap and nest; the client
   * counts as in progress from the first one's start until the last ends.
   * @returns what `fn` returns
   * @throws what `fn` throws; LeaseExpiredError, PoolClosedError
   */
  async epoch<T>(fn: () => Promise<T> | T): Promise<T> {
    this.guard();
    if (typeof fn !== 'function') throw new InvalidArgumentError(`epoch: fn must be a function, got ${show(fn)}`);
    if (this.epochDepth === 0) check(this.x.epochEnter(), 'epoch');
    this.epochDepth++;
    try {
      return await fn();
    } finally {
      if (--this.epochDepth === 0 && !this.closed && this.lease.fenced === null) this.x.epochExit();
    }
  }

  /**
   * Advances the global epoch if every client in an operation has seen the
   * current one, then frees the delayed frees that are safe (queued two or
   * more epochs ago). A LeaseMonitor (`dmem server`) does this every lease.
   * @returns how many objects were freed
   * @throws PoolBusyError (another client held the ring's lock too long), LeaseExpiredError, PoolClosedError
   */
  reclaim(): number {
    this.guard();
    return check(this.x.reclaim(), 'reclaim');
  }

  /** The global epoch and the delayed frees still waiting. */
  epochState(): { epoch: number; pending: number; inEpoch: boolean } {
    this.guard();
    return { epoch: this.x.epochGlobal(), pending: this.x.delayedPending(), inEpoch: this.epochDepth > 0 };
  }

  /**
   * A far-memory space of `bytes` (or "1GiB") over this pool, owned by this
   * client: pages of 4 KiB allocated on first touch, cached locally in
   * `cacheBytes` with an eviction policy (lru, clock, linux, heat) and
   * optional sequential prefetch; with `far`, tiered between this pool
   * (near) and another (src/space.ts, docs/paging.md; ExtMem ATC '24, Rcmp
   * TACO '23). `close()` of the space (or of this client, or its recovery)
   * frees its pages.
   * @throws InvalidArgumentError bad size, cache, policy, prefetch or tier options
   */
  space(bytes: number | string, opts: SpaceOptions): Space {
    return createSpace(this, bytes, opts);
  }

  /** The pool's object heap (src/heap.ts): objects of any size, freed by any client. */
  get heap(): Heap {
    this.heapHandle ??= new Heap(this.internals);
    return this.heapHandle;
  }

  /** The pool's client lease (ms): a client that renews later than this is revoked. */
  get leaseMs(): number {
    return this.x.lease();
  }

  /**
   * Sets the pool's client lease (ms, 10 .. 86,400,000), for every client;
   * other clients adapt at their next renewal, and a LeaseMonitor keeps
   * judging by the old lease for one old lease after a shortening.
   * @throws InvalidArgumentError (not an integer in range)
   */
  setLeaseMs(ms: number): void {
    this.live();
    integerIn('setLeaseMs: ms', ms, Layout.minLeaseMs, Layout.maxLeaseMs);
    if (this.x.setLease(ms) !== 0) throw new InvalidArgumentError(`lease must be ${Layout.minLeaseMs} .. ${Layout.maxLeaseMs} ms, got ${ms}`);
    this.lease.leaseChanged(ms);
  }

  /** Every slot of the client table (a monitor's view; reads 6 words per slot). */
  clientSlots(): ClientSlot[] {
    this.live();
    const slots: ClientSlot[] = [];
    for (let id = 1; id <= this.geometry.maxClients; id++) slots.push(this.clientSlot(id));
    return slots;
  }

  /** Slot `id` (1 .. geometry.maxClients) of the client table. @throws InvalidArgumentError */
  clientSlot(id: number): ClientSlot {
    integerIn('clientSlot: id', id, 1, this.geometry.maxClients);
    return readSlot(this.core, id);
  }

  /**
   * Revokes client `id`'s lease if its slot is still LIVE in generation
   * `gen`. Returns false when the slot changed (renewed decisions are never
   * applied to a new owner).
   */
  revokeClient(id: number, gen: number): boolean {
    this.guard();
    integerIn('revokeClient: id', id, 1, this.geometry.maxClients);
    integerIn('revokeClient: gen', gen, 0, 2 ** 32 - 1);
    return this.x.revoke(id, gen) === 0;
  }

  /**
   * Reclaims everything client `id` holds or left half done, as this client
   * (online: others keep allocating), then frees its slot. The slot must be
   * REVOKED, or RECOVERING by `deadRecoverer` (a takeover). Only call it for
   * a fenced client (acknowledged, or its process gone): see assembly/client.ts.
   * @returns the report, or null when the slot was not in a recoverable state
   */
  recoverClient(id: number, deadRecoverer = 0): ReclaimReport | null {
    this.guard();
    integerIn('recoverClient: id', id, 1, this.geometry.maxClients);
    integerIn('recoverClient: deadRecoverer', deadRecoverer, 0, this.geometry.maxClients);
    return readReclaim(this.core, this.x.recover(id, deadRecoverer));
  }

  /**
   * Caps every later wait of this client on a pool metadata lock (ms; < 0
   * removes the cap). A lease monitor sets a short cap, so that a lock held
   * by a paused client never stalls its sweeps (the work is retried at the
   * next sweep).
   * @throws InvalidArgumentError (not a number), PoolClosedError
   */
  setLockWait(ms: number): void {
    this.guard();
    if (typeof ms !== 'number' || Number.isNaN(ms)) throw new InvalidArgumentError(`setLockWait: ms must be a number, got ${String(ms)}`);
    this.x.setLockWait(ms);
  }

  /** Lists allocated units no live client owns (at most 2048): in-flight operations or leaks. */
  scanOrphans(): OrphanRecord[] {
    this.guard();
    return readOrphans(this.core, this.x.scanOrphans());
  }

  /**
   * Frees an orphan if its header still holds exactly `r.word` and it is
   * still not owned; of a span's chunks (kind 1), only those in `r.bits`.
   * Only safe for a record seen at least one full lease earlier, with every
   * live client renewed since (the lease monitor's grace rule,
   * assembly/audit.ts): pass that earlier record, not a fresh one, whose
   * bits may include a free in flight.
   * @throws InvalidArgumentError (not such a record), PoolClosedError, LeaseExpiredError
   */
  reclaimOrphan(r: OrphanRecord): boolean {
    this.guard();
    if (r === null || typeof r !== 'object' || typeof r.word !== 'bigint') {
      throw new InvalidArgumentError(`reclaimOrphan: r must be a record from scanOrphans(), got ${show(r)}`);
    }
    integerIn('reclaimOrphan: r.kind', r.kind, 1, 3);
    integerIn('reclaimOrphan: r.index', r.index, 0, 2 ** 32 - 1);
    word64('reclaimOrphan: r.word', r.word);
    integerIn('reclaimOrphan: r.bits', r.bits, 0, 2 ** 32 - 1);
    return this.x.reclaimOrphan(r.kind, r.index, r.word, r.bits) === 1;
  }

  /**
   * Checks every invariant of the pool; with `repair`, fixes what it finds.
   * Meant for a pool no other client is using (`dmem fsck` checks that).
   */
  fsck(opts: { repair?: boolean } = {}): FsckReport {
    this.guard();
    optionsObject('fsck: opts', opts);
    return readFsck(this.core, this.x.fsck(opts.repair ? 1 : 0));
  }

  private live(): void {
    if (this.closed) throw new PoolClosedError('pool is closed');
  }

  // ----------------------------------------------- named regions (src/region.ts)

  private regionDir: RegionDirectory | undefined;
  private get regions(): RegionDirectory {
    return (this.regionDir ??= new RegionDirectory(this.internals));
  }

  /**
   * Creates region `name` (1..40 bytes of UTF-8, no NUL) of `bytes` (or a
   * size such as "1MiB"), zero-filled, owned by the pool: it outlives this
   * client, and only `destroyRegion` frees it (HPE gull's Regions).
   * @throws InvalidArgumentError (bad name or size), RegionExistsError,
   *   PoolExhaustedError (no room, or 1024 regions), PoolBusyError (another
   *   live client held the region lock for two leases)
   */
  createRegion(name: string, bytes: number | string): Region {
    return this.regions.create(name, bytes);
  }

  /** Opens region `name`. @throws InvalidArgumentError, RegionNotFoundError */
  openRegion(name: string): Region {
    return this.regions.open(name);
  }

  /**
   * Destroys region `name` and frees its memory.
   * @throws InvalidArgumentError, RegionNotFoundError, PoolBusyError
   */
  destroyRegion(name: string): void {
    this.regions.destroy(name);
  }

  /** Every region of the pool: name, size in bytes, gaddr. */
  listRegions(): RegionInfo[] {
    return this.regions.list();
  }

  /** True when region `name` exists. @throws InvalidArgumentError (bad name) */
  regionExists(name: string): boolean {
    return this.regions.exists(name);
  }

  /**
   * Every call's entry check: closed, then the lease (src/lease.ts): fenced,
   * revoked (one Atomics.load of this client's slot word, ~7 ns), and every
   * 64 calls a clock read to renew the lease while a caller loops without
   * yielding to the event loop.
   */
  private guard(): void {
    if (this.closed || !this.lease.ready()) this.guardSlow();
  }

  /**
   * guard() when the pool is closed or the lease needs more than its quick
   * test (src/lease.ts `ready`): throws PoolClosedError, or settles the
   * lease: throws LeaseExpiredError (and drops the block cache) once the
   * lease was revoked, renews it every 64th call.
   */
  private guardSlow(): void {
    if (this.closed) throw new PoolClosedError('pool is closed');
    try {
      this.lease.settle();
    } catch (e) {
      if (this.lease.fenced !== null) this.x.blockCacheDrop();
      throw e;
    }
  }

  /** @throws InvalidArgumentError for a size that is not an integer in 1 .. dataBytes */
  private badSize(what: string, bytes: unknown): never {
    if (typeof bytes === 'number' && Number.isInteger(bytes) && bytes > this.geometry.dataBytes) {
      throw new InvalidArgumentError(`${what}: bytes ${bytes} is more than the pool's whole data area (${this.geometry.dataBytes} bytes); it can never be allocated`);
    }
    throw new InvalidArgumentError(`${what}: bytes must be an integer from 1 to ${this.geometry.dataBytes}, got ${show(bytes)}`);
  }

  private offset(gaddr: number): number {
    // gaddr - base is offsetOf(gaddr) exactly when nodeOf(gaddr) is this
    // node (safe integers subtract exactly), without the float division and
    // modulo by 2^40 those two cost on every free. Anything else goes to
    // offsetChecked, which throws the error that fits.
    if (typeof gaddr === 'number' && gaddr > 0 && gaddr - this.base >= 0 && gaddr - this.base < NODE_SPAN && Number.isSafeInteger(gaddr)) return gaddr - this.base;
    return this.offsetChecked(gaddr);
  }

  /** offset() with every check in order: the one that fails throws. */
  private offsetChecked(gaddr: number): number {
    if (typeof gaddr !== 'number') throw new InvalidArgumentError(`gaddr must be a number (a gaddr from alloc), got ${show(gaddr)}`);
    if (!Number.isSafeInteger(gaddr) || gaddr <= 0) {
      throw new InvalidAddressError(`${String(gaddr)} is not a gaddr (a positive integer below 2^53)`);
    }
    const off = gaddr - this.base;
    if (off < 0 || off >= NODE_SPAN) throw new InvalidAddressError(`gaddr ${gaddr} is on node ${nodeOf(gaddr)}, this pool is node ${this.node}`);
    return off;
  }

  private range(gaddr: number, length: number, what: string): number {
    this.guard();
    const off = this.offset(gaddr);
    if (off < this.dataOffset || off + length > this.dataEnd || this.x.check(off, length) !== 0) {
      throw new InvalidAddressError(`${what}(${gaddr}, ${length} B): range is not inside allocated blocks`);
    }
    return off;
  }

  private word(gaddr: number, what: string): number {
    const off = this.range(gaddr, 8, what);
    if (off % 8 !== 0) throw new InvalidAddressError(`${what}(${gaddr}): 64-bit atomics need an 8-byte aligned gaddr`);
    return off;
  }
}

/** Names of the superblock words (docs/layout.md), for CorruptPoolError messages. */
const SUPERBLOCK_WORDS: Record<number, string> = {
  8: 'version and headerBytes', 16: 'poolBytes', 24: 'nSections and maxClients', 32: 'clientTableOff', 40: 'sectionHdrOff',
  48: 'spanHdrOff', 56: 'ownerLogOff', 64: 'dataOff', 72: 'chunkShift and spanChunks', 80: 'sectionSpans', 104: 'leaseMs',
  120: 'limboOff (delayed-free ring)', 128: 'limboLock', 136: 'regionDirOff (region directory)', 144: 'regionLock',
};

/**
 * The CorruptPoolError for an attach the core refused: which superblock word
 * (assembly/layout.ts, readSuperblock), what it holds, and, for a medium
 * shorter than its pool, both sizes.
 */
function corruptSuperblock(core: Core, transport: Transport, medium: string): CorruptPoolError {
  const off = core.exports.corruptOffset();
  const value = BigInt.asUintN(64, core.exports.corruptWordValue());
  if (off === 16) {
    return new CorruptPoolError(`${medium} is ${transport.size} bytes but its superblock says the pool is ${value} bytes: the file was truncated or resized after it was created; nothing was changed`);
  }
  const name = SUPERBLOCK_WORDS[off] ?? 'a reserved word, which must be zero';
  return new CorruptPoolError(`attach ${medium}: superblock word at byte ${off} (${name}) holds 0x${value.toString(16)}, which no pool of this layout holds; nothing was changed`);
}

/**
 * Attaches the core to an existing pool, waiting up to `timeoutMs` while the
 * superblock is all zero or carries an opener's FORMAT_CLAIM (a creator that
 * is still formatting).
 * @param medium the file or device, for messages
 * @throws NotAPoolError, VersionMismatchError, CorruptPoolError (naming the
 *   medium's size and the size its superblock expects when they disagree)
 */
function attachWhenFormatted(core: Core, transport: Transport, timeoutMs: number, medium: string): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = core.exports.attach(transport.size);
    if (r === Status.CORRUPT) throw corruptSuperblock(core, transport, medium);
    if (r !== Status.NOT_A_POOL) { check(r, `attach ${medium}`); return; }
    // An all-zero superblock, or a claimed one, may be a pool whose creator is still formatting.
    const first = transport.size < 8 ? -1n : transport.load64(0);
    if ((first !== 0n && first !== FORMAT_CLAIM) || Date.now() >= deadline) {
      const why = first === FORMAT_CLAIM
        ? `another process claimed it for formatting ${timeoutMs} ms ago and has not finished; if none is running, clear its first 8 bytes and open it again`
        : 'no dmem superblock magic';
      throw new NotAPoolError(`attach ${medium}: not a dmem pool (${why}); nothing was changed`);
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
}

/**
 * Checks the options of Pool.attach and openPool, and returns the ones with defaults. @internal
 * @throws InvalidArgumentError naming the first bad option and its value
 */
export function checkPoolOptions(opts: PoolOptions): { node: number; seed: bigint; clients: number; attachTimeoutMs: number; blockCache: number } {
  optionsObject('Pool.attach: opts', opts);
  const o = opts as Record<string, unknown>;
  if (o.size !== undefined) sizeArgument('size', o.size);
  for (const k of ['create', 'debug', 'direct'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'boolean') throw new InvalidArgumentError(`option ${k} must be true or false, got ${show(o[k])}`);
  }
  for (const k of ['crashPoint', 'medium'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'string') throw new InvalidArgumentError(`option ${k} must be a string, got ${show(o[k])}`);
  }
  if (o.heartbeatMs !== undefined) integerIn('option heartbeatMs', o.heartbeatMs, 0, Layout.maxLeaseMs);
  if (o.windowBytes !== undefined) integerIn('option windowBytes', o.windowBytes, 1, 2 ** 32);
  const node = o.node === undefined ? 0 : integerIn('option node', o.node, 0, MAX_NODE);
  const clients = o.clients === undefined ? 256 : integerIn('option clients', o.clients, 1, Layout.maxClients);
  const attachTimeoutMs = o.attachTimeoutMs === undefined ? 5000 : integerIn('option attachTimeoutMs', o.attachTimeoutMs, 0, 2 ** 31 - 1);
  const envCache = process.env.DMEM_BLOCK_CACHE;
  // On by default at the most (see PoolOptions.blockCache for why 256).
  const blockCache = o.blockCache !== undefined ? integerIn('option blockCache', o.blockCache, 0, BLOCK_CACHE_MAX)
    : envCache === undefined || envCache === '' ? BLOCK_CACHE_MAX : integerIn('DMEM_BLOCK_CACHE', Number(envCache), 0, BLOCK_CACHE_MAX);
  let seed: bigint;
  if (o.seed === undefined) seed = randomBytes(8).readBigUInt64LE();
  else if (typeof o.seed === 'bigint') seed = word64('option seed', o.seed);
  else seed = BigInt(integerIn('option seed', o.seed, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER));
  return { node, seed, clients, attachTimeoutMs, blockCache };
}

/** @throws InvalidArgumentError unless `t` has the shape of a Transport */
function checkTransport(t: unknown): asserts t is Transport {
  const ops = ['load64', 'store64', 'cas64', 'faa64', 'read', 'write', 'close'] as const;
  const bad = t === null || typeof t !== 'object'
    || ops.some((k) => typeof (t as Record<string, unknown>)[k] !== 'function')
    || typeof (t as Transport).size !== 'number' || !Number.isSafeInteger((t as Transport).size) || (t as Transport).size < 0;
  if (bad) throw new InvalidArgumentError(`Pool.attach: transport must implement Transport (dmem/transport: size, ${ops.join(', ')}), got ${show(t)}`);
}

let cachedHostId: bigint | undefined;
function hostId(): bigint {
  cachedHostId ??= createHash('sha256').update(hostname()).digest().readBigInt64LE(0);
  return cachedHostId;
}

