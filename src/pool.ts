/**
 * The public API over one memory node's pool (../shared/DESIGN.md, "client
 * API"): `openPool(uri)` creates or attaches, then alloc/free/read/write/
 * cas/faa by gaddr. In one-sided mode (memory, cxl-shm) the Wasm core runs
 * here, in the client, and every call is synchronous.
 */
import { hostname } from 'node:os';
import { randomBytes, createHash } from 'node:crypto';
import { Core, Geometry, Status, check } from './core.js';
import { parseCrashPoint } from './crash.js';
import {
  CorruptPoolError, DmemError, InvalidAddressError, InvalidArgumentError, LeaseExpiredError, NotAPoolError, PoolClosedError,
} from './errors.js';
import { bootId, pidNamespace, processStartTime } from './proc.js';
import { MAX_NODE, nodeOf, offsetOf, toGaddr } from './gaddr.js';
import { Heap } from './heap.js';
import type { PoolInternals } from './internals.js';
import { RegionDirectory, type Region, type RegionInfo } from './region.js';
import type { Transport } from './transport.js';
import { memoryTransport } from './transports/memory.js';
import { WindowedTransport } from './transports/windows.js';
import { parseBytes } from './units.js';

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

/** One client-table slot, as a lease monitor sees it. */
export interface ClientSlot {
  id: number;
  state: 'free' | 'live' | 'revoked' | 'recovering';
  gen: number;
  pid: number;
  /** Last lease renewal, ms since the Unix epoch. */
  heartbeatMs: number;
  /** Hash of the owner's host name (compare with `Pool.hostId`). */
  hostId: bigint;
  /** Owner process start time (clock ticks since boot), 0 if unknown. */
  startTime: bigint;
  /** The owner acknowledged the revocation of this generation (it is fenced). */
  acknowledged: boolean;
  /** While recovering: the recoverer's client id. */
  recoverer: number;
  /** While recovering: the recoverer's slot gen when it began (tells it from a later owner of its slot). */
  recovererGen: number;
  /** Owner's PID namespace (inode of /proc/PID/ns/pid), 0 if unknown. */
  pidNs: number;
  /** Owner's kernel boot id (52-bit hash), 0 if unknown. */
  bootId: number;
  /** The pid the identity fields (startTime, pidNs, bootId) were written for; they describe this owner only when it equals `pid`. */
  identityPid: number;
}

/** Allocated metadata that no live client owns (assembly/audit.ts). */
export interface OrphanRecord {
  /** 1 chunk bits of a span, 2 a whole-span header, 3 a LARGE section header. */
  kind: 1 | 2 | 3;
  /** Global span index (kinds 1, 2) or section index (kind 3). */
  index: number;
  /** The header word as seen; reclaim acts only if it is unchanged. */
  word: bigint;
}

/** fsck's findings (docs/layout.md lists the invariants). */
export interface FsckReport {
  sections: number;
  orphanChunks: number;
  blocksOfDeadClients: number;
  sealedSpansInChunkSections: number;
  retiringSections: number;
  unsealedSpansInFreeSections: number;
  largeTailsWithoutHead: number;
  hintMismatches: number;
  entriesScanned: number;
  repaired: number;
  /** True when no invariant is broken (hint mismatches are not invariants). */
  clean: boolean;
}

/** What one reclaim or recovery gave back. */
export interface ReclaimReport {
  blocks: number;
  chunks: number;
  spansUnsealed: number;
  sectionsFixed: number;
  /** Owner-log entries read. */
  entriesScanned: number;
  /** Operations the client left half done, completed or undone. */
  inFlight: number;
  /** Heap objects freed from slabs (handed out or cached by the client). */
  objects: number;
  /**
   * False when heap objects were left for a later run (the delayed-free
   * ring's lock stayed held by a live client); a recovery then stays begun
   * and is finished by the next run.
   */
  complete: boolean;
}

/** The attached pool's geometry. Offsets are bytes from the pool start. */
export interface PoolGeometry {
  poolBytes: number;
  sections: number;
  sectionBytes: number;
  chunkBytes: number;
  dataOffset: number;
  dataBytes: number;
  maxClients: number;
  layoutVersion: number;
}

/** This client's counters since it attached. */
export interface ClientStats {
  clientId: number;
  allocs: number;
  frees: number;
  /** CAS issued (all paths) and alloc CAS that failed and were retried. */
  cas: { attempts: number; retries: number; retriesPerAlloc: number; maxRetries: number };
  /** Transport operations (load/store/CAS/bulk read) per alloc and per free. */
  transportOps: { total: number; perAlloc: number; perFree: number };
  /** Blocks allocated / freed by this client per size class 0..9; index 10 = blocks above 2 MiB. */
  perClass: { allocated: number[]; freed: number[] };
}

/** Pool-wide census, read from metadata alone. */
export interface PoolCensus {
  sections: { total: number; free: number; chunk: number; large: number };
  chunks: { total: number; free: number; held: number; orphan: number };
  freeBytes: number;
  /** Largest run of free chunks, in bytes (upper bound on one more allocation). */
  largestFreeBytes: number;
  /** External fragmentation, 1 - largestFree / free (0 = all free space in one run). */
  fragmentation: number;
  sealedSpans: number;
  liveClients: number;
  /** Per size class 0..9 and index 10 (above 2 MiB): blocks held and chunks they cover. */
  perClass: Array<{ blocks: number; chunks: number }>;
}

const CHUNK_BYTES = 4096;
const SECTION_BYTES = 2 * 1024 * 1024;

/**
 * Opens a pool by URI, creating and formatting it when absent:
 *   `shm:NAME`          /dev/shm/dmem-NAME, shared by every process of the host
 *   `shm:/path`         a file on tmpfs or hugetlbfs (/dev/hugepages/...), or a devdax device (/dev/dax0.0)
 *   `memory:`           a private in-process pool (size required)
 * @throws InvalidArgumentError bad URI or options; NotAPoolError / VersionMismatchError for a
 *   file that is not a pool of this layout (nothing is written to it); TransportUnavailableError
 *   when the medium cannot be opened; ClientTableFullError
 */
export async function openPool(uri: string, opts: PoolOptions = {}): Promise<Pool> {
  const colon = uri.indexOf(':');
  const scheme = colon < 0 ? '' : uri.slice(0, colon);
  const rest = uri.slice(colon + 1);
  const size = opts.size === undefined ? undefined : parseBytes(opts.size);
  if (scheme === 'memory') {
    if (size === undefined) throw new InvalidArgumentError('memory: pools need a size, e.g. openPool("memory:", { size: "64MiB" })');
    return own(Pool.attach(memoryTransport(size), { ...opts, create: true }));
  }
  if (scheme === 'shm' || scheme === 'dax') {
    if (rest === '') throw new InvalidArgumentError(`"${uri}" names no pool: write shm:NAME or shm:/path/to/file`);
    const { openShm, removeShm } = await import('../plugins/cxl-shm/index.js');
    const m = openShm(rest, { size, create: opts.create ?? true, windowBytes: opts.windowBytes });
    try {
      if (m.created && size === undefined) throw new InvalidArgumentError(`pool ${m.path} does not exist: give a size to create it`);
      return own(Pool.attach(m.transport, { ...opts, create: m.created }));
    } catch (e) {
      m.transport.close();
      if (m.created) removeShm(m.path);
      throw e;
    }
  }
  throw new InvalidArgumentError(`unknown pool URI "${uri}": use shm:NAME, shm:/path or memory:`);
}

/** Pools whose transport they opened themselves, and so close. */
const owners = new WeakSet<Pool>();
function own(pool: Pool): Pool {
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
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Set once the lease was found revoked: every later call throws it. */
  private fenced: LeaseExpiredError | null = null;
  /** The low half of this client's slot owner word, watched on every call (null: transport without a view). */
  private slotLow: Int32Array | null = null;
  private liveLow = 0;
  private ops = 0;
  private renewAt = 0;
  private renewEvery = 250;
  /** The caller's heartbeatMs, or null to follow the lease (a quarter of it). */
  private fixedHeartbeat: number | null = null;
  private timerEvery = 0;

  /** What this Pool's heap, regions and epochs see of it (src/internals.ts). */
  private readonly internals: PoolInternals;
  private heapHandle: Heap | undefined;
  private epochDepth = 0;

  private constructor(transport: Transport, core: Core, node: number) {
    this.transport = transport;
    this.core = core;
    this.x = core.exports;
    this.node = node;
    const g = (f: number) => this.x.geometry(f);
    this.geometry = {
      poolBytes: g(Geometry.poolBytes), sections: g(Geometry.sections), sectionBytes: SECTION_BYTES,
      chunkBytes: CHUNK_BYTES, dataOffset: g(Geometry.dataOffset), dataBytes: g(Geometry.sections) * SECTION_BYTES,
      maxClients: g(Geometry.maxClients), layoutVersion: this.x.layoutVersion(),
    };
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
      if (!Number.isInteger(clients) || clients < 1 || clients > 4093) throw new InvalidArgumentError(`clients must be 1..4093, got ${clients}`);
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
    check(x.register(process.pid, hostId(), processStartTime(process.pid) ?? 0n, pidNamespace(), bootId()), 'register');
    const pool = new Pool(transport, core, node);
    pool.watchSlot();
    pool.fixedHeartbeat = opts.heartbeatMs ?? null;
    pool.schedule();
    return pool;
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
    const s = this.core.floats(this.x.stats(), 30);
    const allocs = s[0];
    const frees = s[1];
    return {
      clientId: this.clientId,
      allocs, frees,
      cas: { attempts: s[2], retries: s[3], retriesPerAlloc: allocs ? s[3] / allocs : 0, maxRetries: s[4] },
      transportOps: { total: s[7], perAlloc: allocs ? s[5] / allocs : 0, perFree: frees ? s[6] / frees : 0 },
      perClass: { allocated: Array.from(s.subarray(8, 19)), freed: Array.from(s.subarray(19, 30)) },
    };
  }

  /** Pool-wide census from metadata (reads every header: O(pool size / 2 MiB) bulk reads). */
  census(): PoolCensus {
    this.live();
    const s = this.core.floats(this.x.scanPool(), 30);
    const total = this.geometry.sections * 512;
    const perClass = [];
    for (let c = 0; c <= 10; c++) perClass.push({ blocks: s[8 + c], chunks: s[19 + c] });
    const held = perClass.reduce((a, p) => a + p.chunks, 0);
    const freeBytes = s[3] * CHUNK_BYTES;
    const largest = s[5] * CHUNK_BYTES;
    return {
      sections: { total: this.geometry.sections, free: s[0], chunk: s[1], large: s[2] },
      chunks: { total, free: s[3], held, orphan: s[4] },
      freeBytes,
      largestFreeBytes: largest,
      fragmentation: freeBytes > 0 ? 1 - largest / freeBytes : 0,
      sealedSpans: s[6],
      liveClients: s[7],
      perClass,
    };
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
    if (this.timer) clearInterval(this.timer);
    let freed = 0;
    try {
      if (this.fenced === null && this.slotIsOurs()) {
        // The delayed-free ring's lock may be busy (a paused holder): try a
        // few times (each waits up to two leases, renewing); if it stays
        // busy, keep the slot and the transport so a later close() retries.
        for (let attempt = 0; ; attempt++) {
          const f = this.core.floats(this.x.releaseHeld(), 9);
          freed += f[0];
          if (f[8] === 0) break;
          if (attempt === 2) {
            this.closed = false;
            this.schedule(true);
            check(f[8], 'close');
          }
        }
        this.x.unregister();
      } else if (this.fenced === null) {
        // Revoked without noticing (no call since): acknowledge, so recovery may proceed.
        this.acknowledgeIfRevoked();
      }
    } finally {
      if (this.closed && owners.has(this)) this.transport.close();
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
      if (--this.epochDepth === 0 && !this.closed && this.fenced === null) this.x.epochExit();
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
    if (this.x.setLease(ms) !== 0) throw new InvalidArgumentError(`lease must be 10 .. 86400000 ms, got ${ms}`);
    this.renewEvery = Math.max(5, Math.floor(ms / 4));
    this.renewAt = Math.min(this.renewAt, Date.now() + this.renewEvery);
    this.schedule();
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
    const f = this.core.floats(this.x.slotInfo(id), 13);
    const states = ['free', 'live', 'revoked', 'recovering'] as const;
    return {
      id, state: states[f[0]], gen: f[1], pid: f[2], heartbeatMs: f[3],
      hostId: BigInt.asIntN(64, (BigInt(f[5]) << 32n) | BigInt(f[4])),
      startTime: BigInt(f[6]), acknowledged: f[7] === 1, recoverer: f[8],
      recovererGen: f[9], pidNs: f[10], bootId: f[11], identityPid: f[12],
    };
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
    const f = this.core.floats(this.x.recover(id, deadRecoverer), 9);
    if (f[6] < 0) return null;
    return reclaimReport(f);
  }

  /**
   * Caps every later wait of this client on a pool metadata lock (ms; < 0
   * removes the cap). A lease monitor sets a short cap, so that a lock held
   * by a paused client never stalls its sweeps (the work is retried at the
   * next sweep).
   */
  setLockWait(ms: number): void {
    this.guard();
    this.x.setLockWait(ms);
  }

  /** Lists allocated units no live client owns (at most 2048): in-flight operations or leaks. */
  scanOrphans(): OrphanRecord[] {
    this.guard();
    const n = this.x.scanOrphans();
    const w = this.core.words(this.x.orphanRecords(), n * 3);
    const out: OrphanRecord[] = [];
    for (let i = 0; i < n; i++) out.push({ kind: Number(w[i * 3]) as 1 | 2 | 3, index: Number(w[i * 3 + 1]), word: w[i * 3 + 2] });
    return out;
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
    const f = this.core.floats(this.x.fsck(opts.repair ? 1 : 0), 10);
    const r = {
      sections: f[0], orphanChunks: f[1], blocksOfDeadClients: f[2], sealedSpansInChunkSections: f[3],
      retiringSections: f[4], unsealedSpansInFreeSections: f[5], largeTailsWithoutHead: f[6], hintMismatches: f[7],
      entriesScanned: f[8], repaired: f[9],
    };
    const broken = r.orphanChunks + r.blocksOfDeadClients + r.sealedSpansInChunkSections + r.retiringSections
      + r.unsealedSpansInFreeSections + r.largeTailsWithoutHead;
    return { ...r, clean: broken === 0 };
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
   * Every call's entry check: closed, fenced, lease revoked (one Atomics.load
   * of this client's slot word, ~7 ns), and every 64 calls a clock read to
   * renew the lease while a caller loops without yielding to the event loop.
   */
  private guard(): void {
    if (this.closed) throw new PoolClosedError('pool is closed');
    if (this.fenced !== null) throw this.fenced;
    if (this.slotLow !== null && Atomics.load(this.slotLow, 0) !== this.liveLow) this.fence();
    if ((++this.ops & 63) === 0 && Date.now() >= this.renewAt) this.heartbeat();
  }

  private watchSlot(): void {
    const off = this.x.geometry(Geometry.slotOffset);
    const bytes = this.transport instanceof WindowedTransport ? this.transport.view(off, 8) : null;
    if (bytes) {
      this.slotLow = new Int32Array(bytes.buffer, bytes.byteOffset, 2);
      this.liveLow = Atomics.load(this.slotLow, 0);
    }
    this.renewEvery = Math.max(5, Math.floor(this.x.lease() / 4));
    this.renewAt = Date.now() + this.renewEvery;
  }

  /** True while this client's slot is LIVE in the generation it registered. */
  private slotIsOurs(): boolean {
    const id = this.clientId;
    if (id <= 0) return false;
    const slot = this.clientSlot(id);
    return slot.state === 'live' && slot.gen === this.x.geometry(Geometry.slotGen);
  }

  /** Renews the lease, or fences this client if it was revoked. */
  private heartbeat(): void {
    if (this.closed || this.fenced !== null) return;
    if (!this.slotIsOurs()) {
      try { this.fence(); } catch { /* recorded in this.fenced */ }
      return;
    }
    this.x.renew();
    this.renewEvery = Math.max(5, Math.floor(this.x.lease() / 4));
    this.renewAt = Date.now() + this.renewEvery;
    this.schedule();
  }

  /** (Re)starts the idle heartbeat timer when its period no longer matches the lease (or `force`). */
  private schedule(force = false): void {
    const every = this.fixedHeartbeat ?? this.renewEvery;
    if ((every === this.timerEvery && !force) || this.closed) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.timerEvery = every;
    if (every <= 0) return;
    this.timer = setInterval(() => this.heartbeat(), every);
    this.timer.unref();
  }

  /** Writes the fence acknowledgement if this client's slot is REVOKED in its own generation. */
  private acknowledgeIfRevoked(): void {
    const id = this.clientId;
    if (id <= 0) return;
    const slot = this.clientSlot(id);
    if (slot.state === 'revoked' && slot.gen === this.x.geometry(Geometry.slotGen)) this.x.acknowledgeRevoked();
  }

  /** The slot is no longer ours: acknowledge (so recovery may proceed) and refuse every later call. */
  private fence(): never {
    const id = this.clientId;
    this.acknowledgeIfRevoked();
    if (this.timer) clearInterval(this.timer);
    this.fenced = new LeaseExpiredError(`client ${id}'s lease expired (no renewal within ${this.x.lease()} ms) and was revoked; its memory is reclaimed: open the pool again to continue`);
    throw this.fenced;
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

/** Names of the superblock words (docs/layout.md), for CorruptPoolError messages. */
const SUPERBLOCK_WORDS: Record<number, string> = {
  8: 'version and headerBytes', 16: 'poolBytes', 24: 'nSections and maxClients', 32: 'clientTableOff', 40: 'sectionHdrOff',
  48: 'spanHdrOff', 56: 'ownerLogOff', 64: 'dataOff', 72: 'chunkShift and spanChunks', 80: 'sectionSpans', 104: 'leaseMs',
  120: 'limboOff (delayed-free ring)', 128: 'limboLock', 136: 'regionDirOff (region directory)', 144: 'regionLock',
};

/** The CorruptPoolError for an attach the core refused: which superblock word, what it holds, and what that means. */
function corruptSuperblock(core: Core, transport: Transport): CorruptPoolError {
  const off = core.exports.corruptOffset();
  const value = BigInt.asUintN(64, core.exports.corruptWordValue());
  if (off === 16) {
    return new CorruptPoolError(`attach: the ${transport.kind} medium is ${transport.size} bytes, but its superblock says the pool is ${value} bytes (truncated?); nothing was changed`);
  }
  const name = SUPERBLOCK_WORDS[off] ?? 'a reserved word (must be zero)';
  return new CorruptPoolError(`attach: superblock word at byte ${off} (${name}) holds 0x${value.toString(16)}, which this layout cannot hold; nothing was changed`);
}

function attachWhenFormatted(core: Core, transport: Transport, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = core.exports.attach(transport.size);
    if (r === Status.CORRUPT) throw corruptSuperblock(core, transport);
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

/** The reclaim counters the core wrote (9 floats, assembly/recover.ts) as a report. */
function reclaimReport(f: Float64Array): ReclaimReport {
  return {
    blocks: f[0], chunks: f[1], spansUnsealed: f[2], sectionsFixed: f[3], entriesScanned: f[4], inFlight: f[5], objects: f[7],
    complete: f[8] === 0,
  };
}
