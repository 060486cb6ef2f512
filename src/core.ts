/**
 * Instantiates the Wasm core (build/dmem.wasm, or build/dmem.debug.wasm with
 * asserts on) and binds its imports to a transport (docs/abi.md). The module
 * is compiled once per process (src/abi.ts); each `Core` is one instance,
 * serving one client, so several clients can live in one process over one
 * transport. Where the transport maps pool memory (`transport.mapped`), the
 * word imports are bound straight to Atomics on it.
 */
import { Layout, Status, compiledCore } from './abi.js';
import {
  ClientTableFullError, CorruptPoolError, DmemError, DoubleFreeError, InvalidAddressError, InvalidArgumentError,
  LeaseExpiredError, NotAPoolError, PoolBusyError, PoolExhaustedError, RegionExistsError, RegionNotFoundError, VersionMismatchError,
} from './errors.js';
import type { DirectWindow, Transport } from './transport.js';

/** The core's exports, as docs/abi.md describes them. */
export interface CoreExports {
  memory: WebAssembly.Memory;
  init(seed: bigint): void;
  format(bytes: number, clients: number): number;
  attach(transportBytes: number): number;
  register(pid: number, hostId: bigint, startTime: bigint, pidNs: number, bootId: number): number;
  renew(): void;
  unregister(): number;
  releaseHeld(): number;
  acknowledgeRevoked(): void;
  revoke(id: number, gen: number): number;
  recover(id: number, deadRecoverer: number): number;
  slotInfo(id: number): number;
  lease(): number;
  setLease(ms: number): number;
  crashAt(point: number, skip: number): void;
  setLockWait(ms: number): void;
  corruptOffset(): number;
  corruptWordValue(): bigint;
  scanOrphans(): number;
  orphanRecords(): number;
  reclaimOrphan(kind: number, index: number, word: bigint, bits: number): number;
  fsck(repair: number): number;
  alloc(cls: number): number;
  allocBytes(bytes: number): number;
  classOfBytes(bytes: bigint): number;
  free(offset: number): number;
  check(offset: number, len: number): number;
  geometry(field: number): number;
  stats(): number;
  scanPool(): number;
  layoutVersion(): number;
  heapAlloc(bytes: number): number;
  heapFree(offset: number): number;
  heapAllocDirect(bytes: number): number;
  heapFreeDirect(offset: number): number;
  heapDirectOps(which: number): number;
  heapFreeDelayed(offset: number): number;
  heapRelease(): number;
  heapTrimSlabs(): number;
  heapCensus(): number;
  heapCachedObjects(): number;
  heapClassSize(k: number): number;
  heapClassObjects(k: number): number;
  epochEnter(): number;
  epochExit(): void;
  epochGlobal(): number;
  setDirectWindow(base: number, bytes: bigint): void;
  reclaim(): number;
  delayedPending(): number;
  setBlockCache(n: number): number;
  blockCacheCount(cls: number): number;
  blockCacheDrop(): void;
  blockCacheFlush(): number;
  blockCacheLayout(field: number): number;
  heapCacheLayout(field: number): number;
  heapClearFull(head: number): void;
  blockCacheWord(cls: number, cached: number): bigint;
  scanCached(): number;
}

/** Raised when the core traps on a failed assert (debug build only). */
export class CoreAbortError extends DmemError {
  constructor(message: string) { super('CORE_ABORT', message); }
}

/** Reads the AssemblyScript string at `ptr` (UTF-16, length in bytes at ptr - 4). */
function readString(memory: WebAssembly.Memory, ptr: number): string {
  if (ptr === 0) return '';
  const len = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
  return Buffer.from(memory.buffer, ptr, len).toString('utf16le');
}

/**
 * The import object for one core instance over `transport`. Exported for
 * hosts that instantiate the module themselves.
 */
export function coreImports(transport: Transport, memory: () => WebAssembly.Memory, onCrash: (point: number) => void = crashNow): WebAssembly.Imports {
  const t = transport;
  const words = t.mapped?.singleWindow() ?? null;
  const windows = t.mapped && !words ? t.mapped.windowArrays() : null;
  // Hot path: pools in memory bind the word ops straight to Atomics (a
  // window index and a subtraction for pools of several windows).
  let word;
  if (words) {
    word = {
      load64: (offset: number): bigint => Atomics.load(words, offset / 8),
      store64: (offset: number, value: bigint): void => { Atomics.store(words, offset / 8, value); },
      cas64: (offset: number, expected: bigint, desired: bigint): bigint => Atomics.compareExchange(words, offset / 8, expected, desired),
      faa64: (offset: number, delta: bigint): bigint => Atomics.add(words, offset / 8, delta),
    };
  } else if (windows) {
    const w = windows.words;
    const size = windows.windowBytes;
    word = {
      load64: (o: number): bigint => { const i = Math.floor(o / size); return Atomics.load(w[i], (o - i * size) / 8); },
      store64: (o: number, v: bigint): void => { const i = Math.floor(o / size); Atomics.store(w[i], (o - i * size) / 8, v); },
      cas64: (o: number, e: bigint, d: bigint): bigint => { const i = Math.floor(o / size); return Atomics.compareExchange(w[i], (o - i * size) / 8, e, d); },
      faa64: (o: number, d: bigint): bigint => { const i = Math.floor(o / size); return Atomics.add(w[i], (o - i * size) / 8, d); },
    };
  } else {
    word = {
      load64: (offset: number): bigint => t.load64(offset),
      store64: (offset: number, value: bigint): void => t.store64(offset, value),
      cas64: (offset: number, expected: bigint, desired: bigint): bigint => t.cas64(offset, expected, desired),
      faa64: (offset: number, delta: bigint): bigint => t.faa64(offset, delta),
    };
  }
  const poolBytes = words ? new Uint8Array(words.buffer, words.byteOffset, words.byteLength) : null;
  let mem8 = new Uint8Array(0);
  const coreBytes = (): Uint8Array => {
    const buffer = memory().buffer;
    if (mem8.buffer !== buffer) mem8 = new Uint8Array(buffer);
    return mem8;
  };
  const bulk = poolBytes ? {
    read: (offset: number, ptr: number, len: number): void => { coreBytes().set(poolBytes.subarray(offset, offset + len), ptr); },
    write: (offset: number, ptr: number, len: number): void => { poolBytes.set(coreBytes().subarray(ptr, ptr + len), offset); },
  } : {
    read: (offset: number, ptr: number, len: number): void => t.read(offset, coreBytes().subarray(ptr, ptr + len)),
    write: (offset: number, ptr: number, len: number): void => t.write(offset, coreBytes().subarray(ptr, ptr + len)),
  };
  return {
    dmem: {
      ...word,
      ...bulk,
      now: (): number => Date.now(),
      crash: (point: number): void => onCrash(point),
    },
    env: {
      abort(msg: number, file: number, line: number, column: number): never {
        const m = memory();
        throw new CoreAbortError(`core assert failed: ${readString(m, msg)} at ${readString(m, file)}:${line}:${column}`);
      },
    },
  };
}

/**
 * The default crash-point action: die at once, as a crash would (no
 * cleanup, no exit handlers); with DMEM_CRASH_ACTION=stop, freeze instead
 * (SIGSTOP), so a test holds the client at that exact step and resumes it
 * there with SIGCONT: a paused client, the adversary of docs/recovery.md.
 */
function crashNow(): void {
  process.kill(process.pid, process.env.DMEM_CRASH_ACTION === 'stop' ? 'SIGSTOP' : 'SIGKILL');
}

/** One instance of the core bound to a transport. */
export class Core {
  readonly exports: CoreExports;
  /** Pool bytes mapped into this instance's memory, or null (src/core.ts mapDirect). */
  private direct: DirectWindow | null;
  private readonly f64: () => Float64Array;

  /**
   * @param transport the pool medium
   * @param seed PRNG seed (same seed + same transport answers = same run)
   * @param debug load the debug build (asserts on)
   * @param direct map the pool's first window into the core's memory where the transport can (mapDirect)
   */
  constructor(transport: Transport, seed: bigint, debug = false, direct = false) {
    let mem: WebAssembly.Memory | undefined;
    const instance = new WebAssembly.Instance(compiledCore(debug), coreImports(transport, () => mem!));
    this.exports = instance.exports as unknown as CoreExports;
    mem = this.exports.memory;
    this.direct = direct ? mapDirect(transport, this.exports) : null;
    let view = new Float64Array(mem.buffer);
    this.f64 = () => (view.buffer === mem!.buffer ? view : (view = new Float64Array(mem!.buffer)));
    this.exports.init(BigInt.asIntN(64, seed));
  }

  /**
   * Gives the direct window back (docs/abi.md, "Direct window"): the core
   * reaches the pool through its imports again and the pages are plain
   * memory. Idempotent. The Pool calls it when it closes.
   */
  releaseDirect(): void {
    if (this.direct === null) return;
    this.exports.setDirectWindow(0, 0n);
    this.direct.release();
    this.direct = null;
  }

  /** Pool bytes the core reaches without imports (from pool byte 0; 0: none). */
  get directBytes(): number {
    return this.direct?.bytes ?? 0;
  }

  /** `count` i64 values the core wrote at `ptr`. */
  words(ptr: number, count: number): BigInt64Array {
    return new BigInt64Array(this.exports.memory.buffer.slice(ptr, ptr + count * 8));
  }

  /** `count` f64 values the core wrote at `ptr`. */
  floats(ptr: number, count: number): Float64Array {
    return this.f64().slice(ptr / 8, ptr / 8 + count);
  }
}

/** The largest direct window (bytes): Wasm memories stop at 4 GiB, and the core's own pages come first. */
const DIRECT_MAX_BYTES = 2 ** 31;

/**
 * Maps the pool's first window (up to 2 GiB) into the core's own memory
 * where the transport can (`MappedMemory.mapInto`: cxl-shm) and tells the
 * core (`setDirectWindow`), so its pool accesses there are Wasm loads and
 * atomics instead of import calls (Pool's `direct` option, on by default).
 * @returns the window, or null (no such transport, off, or refused)
 */
function mapDirect(transport: Transport, x: CoreExports): DirectWindow | null {
  const m = transport.mapped;
  if (m?.mapInto === undefined) return null;
  const bytes = Math.min(transport.size, m.windowArrays().windowBytes, DIRECT_MAX_BYTES);
  const w = m.mapInto(x.memory, bytes - (bytes % 8));
  if (w !== null) x.setDirectWindow(w.base, BigInt(w.bytes));
  return w;
}

/**
 * Throws the DmemError for a negative core status; returns `r` otherwise.
 * @param what names the operation and its argument, for the message
 */
export function check(r: number, what: string): number {
  if (r >= 0) return r;
  switch (r) {
    case Status.NOT_A_POOL: throw new NotAPoolError(`${what}: not a dmem pool (no dmem superblock magic); nothing was changed`);
    case Status.VERSION: throw new VersionMismatchError(`${what}: the pool was written with another layout version; this build reads only layout version ${LAYOUT_VERSION}`);
    case Status.CORRUPT: throw new CorruptPoolError(`${what}: pool metadata is inconsistent`);
    case Status.EXHAUSTED: throw new PoolExhaustedError(`${what}: pool exhausted, no free block of that size`);
    case Status.INVALID_ADDRESS: throw new InvalidAddressError(`${what}: address is not inside an allocated block (or not the start of one)`);
    case Status.DOUBLE_FREE: throw new DoubleFreeError(`${what}: block was already freed`);
    case Status.INVALID_ARGUMENT: throw new InvalidArgumentError(`${what}: invalid argument`);
    case Status.CLIENT_TABLE_FULL: throw new ClientTableFullError(`${what}: every client slot of the pool is taken`);
    case Status.NOT_ATTACHED: throw new DmemError('NOT_ATTACHED', `${what}: core is not attached to a pool or has no client id`);
    case Status.EXISTS: throw new RegionExistsError(`${what}: a region of that name exists already; nothing was changed`);
    case Status.NOT_FOUND: throw new RegionNotFoundError(`${what}: no region of that name`);
    case Status.BUSY: throw new PoolBusyError(`${what}: a pool metadata lock stayed held by a live client; nothing was changed, try again`);
    case Status.LEASE_EXPIRED: throw new LeaseExpiredError(`${what}: this client's lease was revoked while it waited; open the pool again to continue`);
    default: throw new DmemError('CORE_STATUS', `${what}: unexpected core status ${r}`);
  }
}

/** Layout version of the pools this build reads and writes (assembly/layout.ts). */
export const LAYOUT_VERSION = Layout.version;

export { Status, Geometry, corePath } from './abi.js';
