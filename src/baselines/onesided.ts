/**
 * The one-sided array baseline (FineMem's "cxl" baseline, CXL-SHM's style)
 * for the allocator study: a client of the `oa*` exports of the Wasm core
 * (assembly/baselines/onesided.ts), bound to a Transport through the same
 * imports as dmem's own client (src/core.ts `coreImports`), so both count
 * transport operations the same way.
 *
 * One instance per process and pool; not thread-safe (a process has one
 * JS thread). Processes share a pool by opening the same shm file.
 */
import { compiledCore, Status } from '../abi.js';
import { check, coreImports } from '../core.js';
import { InvalidArgumentError, InvalidAddressError, NotAPoolError } from '../errors.js';
import type { Transport } from '../transport.js';
import { openShm, removeShm } from '../../plugins/cxl-shm/index.js';
import type { AllocatorStats, StudyAllocator } from '../study/allocator.js';

/** Word of the superblock that hands out client ids (byte offset; the core does not use it). */
const CLIENT_COUNTER = 32;
const CHUNK_BYTES = 4096;
/** Largest block: 2^13 chunks = 32 MiB. */
export const ONESIDED_MAX_BYTES = CHUNK_BYTES * 2 ** 13;

interface OaExports {
  memory: WebAssembly.Memory;
  oaFormat(bytes: number): number;
  oaAttach(bytes: number, id: number, seed: bigint): number;
  oaAlloc(cls: number): number;
  oaAllocBytes(bytes: number): number;
  oaFree(offset: number): number;
  oaCheck(offset: number, len: number): number;
  oaStat(i: number): number;
  oaHeldChunks(): number;
  oaDetach(): void;
}

/** Options of `OnesidedPool.attach`. */
export interface OnesidedOptions {
  /** Format the pool first (its headers must read as zero: a fresh file or fresh memory). */
  format?: boolean;
  /** Seed of the client's starting cursor (default random). */
  seed?: number;
  /** Close the transport on `close()` (default true). */
  ownTransport?: boolean;
}

/**
 * A client of a one-sided array pool. gaddrs are byte offsets into the pool
 * (the data area starts after the header array, so 0 is never a block).
 */
export class OnesidedPool implements StudyAllocator {
  readonly name = 'onesided-array' as const;
  private readonly x: OaExports;
  private closed = false;

  private constructor(readonly transport: Transport, x: OaExports, private readonly own: boolean) {
    this.x = x;
  }

  /**
   * Attaches a client to the pool on `transport` (formatting it first with `format`).
   * @throws NotAPoolError (no onesided superblock, e.g. a dmem pool), InvalidArgumentError (pool too small to format)
   */
  static attach(transport: Transport, opts: OnesidedOptions = {}): OnesidedPool {
    let mem: WebAssembly.Memory | undefined;
    const instance = new WebAssembly.Instance(compiledCore(false), coreImports(transport, () => mem!));
    const x = instance.exports as unknown as OaExports;
    mem = x.memory;
    if (opts.format) {
      const r = x.oaFormat(transport.size);
      if (r < 0) throw new InvalidArgumentError(`onesided: a pool of ${transport.size} bytes holds no chunk`);
    }
    const id = Number(transport.faa64(CLIENT_COUNTER, 1n) % 65535n) + 1;
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    const r = x.oaAttach(transport.size, id, BigInt(seed >>> 0) * 0x9E3779B1n + 1n);
    if (r === Status.NOT_A_POOL) throw new NotAPoolError('onesided: not a one-sided array pool (no "DMEMOA01" superblock)');
    check(r, 'onesided attach');
    return new OnesidedPool(transport, x, opts.ownTransport ?? true);
  }

  /** Chunks in the pool. */
  get chunks(): number { return this.x.oaStat(7); }

  /**
   * Allocates 2^c chunks for the smallest c that holds `bytes` (1 .. 32 MiB); returns the gaddr.
   * @throws InvalidArgumentError, PoolExhaustedError (a whole pass found no free range)
   */
  alloc(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 1 || bytes > ONESIDED_MAX_BYTES) throw new InvalidArgumentError(`onesided alloc: bytes must be an integer from 1 to ${ONESIDED_MAX_BYTES}, got ${bytes}`);
    const r = this.x.oaAllocBytes(bytes);
    return r < 0 ? check(r, `onesided alloc(${bytes})`) : r;
  }

  /** Allocates one block of class `cls` (0..13: 4 KiB * 2^cls). @throws InvalidArgumentError, PoolExhaustedError */
  allocClass(cls: number): number {
    const r = this.x.oaAlloc(cls);
    return r < 0 ? check(r, `onesided allocClass(${cls})`) : r;
  }

  /** Frees the block at `gaddr`. @throws InvalidAddressError, DoubleFreeError */
  free(gaddr: number): void {
    if (typeof gaddr !== 'number') throw new InvalidArgumentError(`onesided free: gaddr must be a number, got ${typeof gaddr}`);
    const r = this.x.oaFree(gaddr);
    if (r < 0) check(r, `onesided free(${gaddr})`);
  }

  private guard(gaddr: number, length: number, what: string): void {
    if (this.x.oaCheck(gaddr, length) !== 0) throw new InvalidAddressError(`onesided ${what}(${gaddr}, ${length}): not inside one allocated block`);
  }

  /** Reads `length` bytes of an allocated block. @throws InvalidAddressError */
  read(gaddr: number, length: number): Uint8Array {
    this.guard(gaddr, length, 'read');
    const out = new Uint8Array(length);
    this.transport.read(gaddr, out);
    return out;
  }

  /** Writes `bytes` into an allocated block. @throws InvalidAddressError */
  write(gaddr: number, bytes: Uint8Array): void {
    this.guard(gaddr, bytes.length, 'write');
    this.transport.write(gaddr, bytes);
  }

  /** This client's counters since attach. */
  stats(): AllocatorStats {
    const s = (i: number): number => this.x.oaStat(i);
    return { allocs: s(0), frees: s(1), allocOps: s(2), freeOps: s(3), casRetries: s(4), casRetriesMax: s(5) };
  }

  /** Bytes of chunks whose header is taken (pool-wide census). */
  reservedBytes(): number {
    return this.x.oaHeldChunks() * CHUNK_BYTES;
  }

  /** Detaches; closes the transport when this client owns it. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.x.oaDetach();
    if (this.own) this.transport.close();
  }
}

/**
 * Opens (and with `size` creates and formats) the one-sided pool `name` in
 * /dev/shm (plugins/cxl-shm, file /dev/shm/dmem-NAME).
 * @throws the errors of openShm and OnesidedPool.attach
 */
export function openOnesided(name: string, opts: { size?: number; seed?: number } = {}): OnesidedPool {
  const m = openShm(name, opts.size === undefined ? {} : { size: opts.size, create: true });
  try {
    return OnesidedPool.attach(m.transport, { format: m.created, seed: opts.seed });
  } catch (err) {
    m.transport.close();
    if (m.created) removeShm(name);
    throw err;
  }
}
