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
import { hostname } from 'node:os';
import { randomBytes, createHash } from 'node:crypto';
import {
  readCensus, readFsck, readGeometry, readOrphans, readReclaim, readSlot, readStats,
  type ClientSlot, type ClientStats, type FsckReport, type OrphanRecord, type PoolCensus, type PoolGeometry, type ReclaimReport,
} from './admin.js';
import { Geometry, Layout, Status } from './abi.js';
import { Core, check } from './core.js';
import { parseCrashPoint } from './crash.js';
import { DmemError, InvalidAddressError, InvalidArgumentError, NotAPoolError, PoolClosedError } from './errors.js';
import { processStartTime } from './proc.js';
import { MAX_NODE, nodeOf, offsetOf, toGaddr } from './gaddr.js';
import { Heap } from './heap.js';
import type { PoolInternals } from './internals.js';
import { ClientLease } from './lease.js';
import { RegionDirectory, type Region, type RegionInfo } from './region.js';
import type { Transport } from './transport.js';

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

  private constructor(transport: Transport, core: Core, node: number, heartbeatMs: number | null) {
    this.transport = transport;
    this.core = core;
    this.x = core.exports;
    this.node = node;
    this.geometry = readGeometry(core);
    this.dataOffset = this.geometry.dataOffset;
    this.dataEnd = this.dataOffset + this.geometry.dataBytes;
    this.base = toGaddr(node, 0);
    this.internals = {
      core, x: this.x, transport, node,
      get clientId() { return core.exports.geometry(Geometry.clientId); },
      guard: () => this.guard(),
      offset: (gaddr) => this.offset(gaddr),
      gaddr: (offset) => this.base + offset,
    };
    this.lease = new ClientLease(core, transport, heartbeatMs);
  }

  /**
   * Formats (when `opts.create`) or attaches to the pool on `transport` and
   * registers a client. The transport stays the caller's: `close()` does not
   * close it (several Pools may share one transport, one per client).
   * @throws see openPool
   */
  static attach(transport: Transport, opts: PoolOptions = {}): Pool {
    const node = opts.node ?? 0;
    if (!Number.isInteger(node) || node < 0 || node > MAX_NODE) throw new InvalidArgumentError(`node must be 0..${MAX_NODE}, got ${node}`);
    const seed = opts.seed === undefined ? randomBytes(8).readBigUInt64LE() : BigInt(opts.seed);
    const core = new Core(transport, seed, opts.debug ?? false);
    const x = core.exports;
    if (opts.create) {
      const clients = opts.clients ?? 256;
      if (!Number.isInteger(clients) || clients < 1 || clients > Layout.maxClients) throw new InvalidArgumentError(`clients must be 1..${Layout.maxClients}, got ${clients}`);
      const r = x.format(transport.size, clients);
      if (r === Status.INVALID_ARGUMENT) {
        throw new InvalidArgumentError(`cannot format a pool of ${transport.size} bytes with ${clients} clients: it needs at least one 2 MiB section plus metadata, and the medium must not already hold a pool`);
      }
      check(r, 'format');
    } else {
      attachWhenFormatted(core, transport, opts.attachTimeoutMs ?? 5000);
    }
    const crash = opts.crashPoint ?? process.env.DMEM_CRASH_POINT;
    if (crash) {
      const { id, skip } = parseCrashPoint(crash);
      x.crashAt(id, skip);
    }
    check(x.register(process.pid, hostId(), processStartTime(process.pid) ?? 0n), 'register');
    return new Pool(transport, core, node, opts.heartbeatMs ?? null);
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
   * @throws InvalidArgumentError (bytes < 1 or not a number), PoolExhaustedError
   */
  alloc(bytes: number): number {
    this.guard();
    const r = this.x.allocBytes(bytes);
    if (r < 0) check(r, `alloc(${bytes})`);
    return this.base + r;
  }

  /**
   * Allocates one block of size class `cls` (0..9: 4 KiB * 2^cls). Returns its gaddr.
   * @throws InvalidArgumentError, PoolExhaustedError
   */
  allocClass(cls: number): number {
    this.guard();
    const r = this.x.alloc(cls);
    if (r < 0) check(r, `allocClass(${cls})`);
    return this.base + r;
  }

  /**
   * Frees the block that starts at `gaddr` (any client may free any block).
   * @throws InvalidAddressError (not the start of an allocated block), DoubleFreeError
   */
  free(gaddr: number): void {
    this.guard();
    const r = this.x.free(this.offset(gaddr));
    if (r < 0) check(r, `free(${gaddr})`);
  }

  /**
   * Reads `length` bytes at `gaddr` into a new Uint8Array.
   * @throws InvalidAddressError when any byte lies outside allocated blocks
   */
  read(gaddr: number, length: number): Uint8Array {
    const dst = new Uint8Array(length);
    this.readInto(gaddr, dst);
    return dst;
  }

  /** Reads `dst.length` bytes at `gaddr` into `dst`. @throws InvalidAddressError */
  readInto(gaddr: number, dst: Uint8Array): void {
    const off = this.range(gaddr, dst.length, 'read');
    this.transport.read(off, dst);
  }

  /** Writes `bytes` at `gaddr`. @throws InvalidAddressError when any byte lies outside allocated blocks */
  write(gaddr: number, bytes: Uint8Array): void {
    const off = this.range(gaddr, bytes.length, 'write');
    this.transport.write(off, bytes);
  }

  /**
   * Atomic 64-bit compare-and-swap on the 8-aligned word at `gaddr`; returns
   * the word found (== expected when the swap happened). Values are signed
   * 64-bit (BigInt64).
   * @throws InvalidAddressError (unaligned or outside allocated blocks)
   */
  cas(gaddr: number, expected: bigint, desired: bigint): bigint {
    const off = this.word(gaddr, 'cas');
    return this.transport.cas64(off, BigInt.asIntN(64, expected), BigInt.asIntN(64, desired));
  }

  /**
   * Atomic 64-bit fetch-and-add (wrapping) on the 8-aligned word at `gaddr`;
   * returns the word before the add.
   * @throws InvalidAddressError (unaligned or outside allocated blocks)
   */
  faa(gaddr: number, delta: bigint): bigint {
    const off = this.word(gaddr, 'faa');
    return this.transport.faa64(off, BigInt.asIntN(64, delta));
  }

  /** This client's counters (allocs, frees, CAS retries, transport ops per op). */
  stats(): ClientStats {
    this.guard();
    return readStats(this.core, this.clientId);
  }

  /** Pool-wide census from metadata (reads every header: O(pool size / 2 MiB) bulk reads). */
  census(): PoolCensus {
    this.live();
    return readCensus(this.core, this.geometry.sections);
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
        freed = this.core.floats(this.x.releaseHeld(), 1)[0];
        this.x.unregister();
      }
    } finally {
      if (owners.has(this)) this.transport.close();
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
   * @throws InvalidArgumentError
   */
  setLeaseMs(ms: number): void {
    this.live();
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

  /** Slot `id` of the client table. */
  clientSlot(id: number): ClientSlot {
    return readSlot(this.core, id);
  }

  /**
   * Revokes client `id`'s lease if its slot is still LIVE in generation
   * `gen`. Returns false when the slot changed (renewed decisions are never
   * applied to a new owner).
   */
  revokeClient(id: number, gen: number): boolean {
    this.guard();
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
    return readReclaim(this.core, this.x.recover(id, deadRecoverer));
  }

  /** Lists allocated units no live client owns (at most 2048): in-flight operations or leaks. */
  scanOrphans(): OrphanRecord[] {
    this.guard();
    return readOrphans(this.core, this.x.scanOrphans());
  }

  /**
   * Frees an orphan if its header still holds exactly `r.word` and it is
   * still not owned. Only safe for an orphan seen at least one full lease
   * earlier, with every live client renewed since (the lease monitor's
   * grace rule, assembly/audit.ts).
   */
  reclaimOrphan(r: OrphanRecord): boolean {
    this.guard();
    return this.x.reclaimOrphan(r.kind, r.index, r.word) === 1;
  }

  /**
   * Checks every invariant of the pool; with `repair`, fixes what it finds.
   * Meant for a pool no other client is using (`dmem fsck` checks that).
   */
  fsck(opts: { repair?: boolean } = {}): FsckReport {
    this.guard();
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
    if (this.closed) throw new PoolClosedError('pool is closed');
    this.lease.check();
  }

  private offset(gaddr: number): number {
    if (typeof gaddr !== 'number' || !Number.isSafeInteger(gaddr) || gaddr <= 0) {
      throw new InvalidAddressError(`${String(gaddr)} is not a gaddr (a positive integer below 2^53)`);
    }
    if (nodeOf(gaddr) !== this.node) throw new InvalidAddressError(`gaddr ${gaddr} is on node ${nodeOf(gaddr)}, this pool is node ${this.node}`);
    return offsetOf(gaddr);
  }

  private range(gaddr: number, length: number, what: string): number {
    this.guard();
    const off = this.offset(gaddr);
    if (!Number.isSafeInteger(length) || length < 0) throw new InvalidArgumentError(`${what}: length must be a non-negative integer, got ${length}`);
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

function attachWhenFormatted(core: Core, transport: Transport, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = core.exports.attach(transport.size);
    if (r !== Status.NOT_A_POOL) { check(r, 'attach'); return; }
    // An all-zero superblock may be a pool whose creator is still formatting.
    if (transport.size < 8 || transport.load64(0) !== 0n || Date.now() >= deadline) {
      throw new NotAPoolError('attach: not a dmem pool (no dmem superblock magic); nothing was changed');
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
}

let cachedHostId: bigint | undefined;
function hostId(): bigint {
  cachedHostId ??= createHash('sha256').update(hostname()).digest().readBigInt64LE(0);
  return cachedHostId;
}

export { DmemError };
