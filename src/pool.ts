/**
 * The public API over one memory node's pool (../shared/DESIGN.md, "client
 * API"): `openPool(uri)` creates or attaches, then alloc/free/read/write/
 * cas/faa by gaddr. In one-sided mode (memory, cxl-shm) the Wasm core runs
 * here, in the client, and every call is synchronous.
 */
import { hostname } from 'node:os';
import { randomBytes, createHash } from 'node:crypto';
import { Core, Geometry, Status, check } from './core.js';
import { DmemError, InvalidAddressError, InvalidArgumentError, NotAPoolError, PoolClosedError } from './errors.js';
import { MAX_NODE, nodeOf, offsetOf, toGaddr } from './gaddr.js';
import type { Transport } from './transport.js';
import { memoryTransport } from './transports/memory.js';
import { parseBytes } from './units.js';

/** Options of `openPool` and `Pool.attach`. */
export interface PoolOptions {
  /** Pool size in bytes (or "1GiB"); required to create, ignored on attach. */
  size?: number | string;
  /** Create the pool when it does not exist (default true). */
  create?: boolean;
  /** Client-table slots when formatting (1..4095, default 256). */
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
  /** Lease heartbeat period (ms, default 250); 0 turns the timer off. */
  heartbeatMs?: number;
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
      if (!Number.isInteger(clients) || clients < 1 || clients > 4095) throw new InvalidArgumentError(`clients must be 1..4095, got ${clients}`);
      const r = x.format(transport.size, clients);
      if (r === Status.INVALID_ARGUMENT) {
        throw new InvalidArgumentError(`cannot format a pool of ${transport.size} bytes with ${clients} clients: it needs at least one 2 MiB section plus metadata, and the medium must not already hold a pool`);
      }
      check(r, 'format');
    } else {
      attachWhenFormatted(core, transport, opts.attachTimeoutMs ?? 5000);
    }
    check(x.register(process.pid, hostId()), 'register');
    const pool = new Pool(transport, core, node);
    const hb = opts.heartbeatMs ?? 250;
    if (hb > 0) {
      pool.timer = setInterval(() => x.renew(), hb);
      pool.timer.unref();
    }
    return pool;
  }

  /** This client's id in the pool's client table (1..4095). */
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
    this.live();
    const r = this.x.allocBytes(bytes);
    if (r < 0) check(r, `alloc(${bytes})`);
    return this.base + r;
  }

  /**
   * Allocates one block of size class `cls` (0..9: 4 KiB * 2^cls). Returns its gaddr.
   * @throws InvalidArgumentError, PoolExhaustedError
   */
  allocClass(cls: number): number {
    this.live();
    const r = this.x.alloc(cls);
    if (r < 0) check(r, `allocClass(${cls})`);
    return this.base + r;
  }

  /**
   * Frees the block that starts at `gaddr` (any client may free any block).
   * @throws InvalidAddressError (not the start of an allocated block), DoubleFreeError
   */
  free(gaddr: number): void {
    this.live();
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
    this.live();
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

  /** Releases this client's slot, and the transport if `openPool` opened it. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.x.unregister();
    if (owners.has(this)) this.transport.close();
  }

  private live(): void {
    if (this.closed) throw new PoolClosedError('pool is closed');
  }

  private offset(gaddr: number): number {
    if (typeof gaddr !== 'number' || !Number.isSafeInteger(gaddr) || gaddr <= 0) {
      throw new InvalidAddressError(`${String(gaddr)} is not a gaddr (a positive integer below 2^53)`);
    }
    if (nodeOf(gaddr) !== this.node) throw new InvalidAddressError(`gaddr ${gaddr} is on node ${nodeOf(gaddr)}, this pool is node ${this.node}`);
    return offsetOf(gaddr);
  }

  private range(gaddr: number, length: number, what: string): number {
    this.live();
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
