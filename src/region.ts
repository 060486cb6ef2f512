/**
 * Named regions (HPE NVMM / gull "Regions"): `pool.createRegion(name,
 * bytes)` gives a range of pool memory a name that any client of the pool
 * can open, list and destroy, and that outlives the client that made it (the
 * memory belongs to the pool, not to a client: close and recovery leave it
 * alone, and `pool.free` refuses it). The directory, its locking and the
 * crash argument are in assembly/region.ts and docs/regions.md.
 */
import { Geometry, Layout, RegionResult, Status } from './abi.js';
import { check, type CoreExports } from './core.js';
import {
  InvalidAddressError, InvalidArgumentError, RegionNotFoundError, TransportUnavailableError,
} from './errors.js';
import type { PoolInternals } from './internals.js';
import { bytesOf, show, sizeArgument } from './args.js';
import { parseBytes } from './units.js';

/** Longest region name, in bytes of UTF-8. */
export const REGION_NAME_MAX = RegionResult.nameMax;

/** What `Pool.listRegions` reports of one region. */
export interface RegionInfo {
  name: string;
  /** Size in bytes, as created. */
  bytes: number;
  /** gaddr of its first byte. */
  gaddr: number;
}

/** The core's region exports (assembly/region.ts). */
interface RegionExports {
  regionNameBuffer(): number;
  regionResult(): number;
  regionCreate(nameLen: number, bytes: number): number;
  regionDestroy(nameLen: number): number;
  regionOpen(nameLen: number): number;
  regionNext(from: number): number;
}

type Exports = CoreExports & RegionExports;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * One named region of a pool, as opened by this client. Reads and writes
 * are bounds-checked against the region and go through the pool's
 * transport; `map()` gives the memory itself where the transport maps it.
 * A Region stays usable while its Pool is open; if another client destroys
 * the region meanwhile, later calls fail with InvalidAddressError once the
 * memory is no longer allocated (regions are not reference counted).
 */
export class Region implements RegionInfo {
  readonly name: string;
  readonly bytes: number;
  readonly gaddr: number;
  private readonly p: PoolInternals;
  /** Pool byte offset of the region's first byte. */
  private readonly offset: number;

  /** @internal made by RegionDirectory only */
  constructor(p: PoolInternals, name: string, bytes: number, offset: number) {
    this.p = p;
    this.name = name;
    this.bytes = bytes;
    this.offset = offset;
    this.gaddr = p.gaddr(offset);
  }

  /**
   * Reads `length` bytes at byte `offset` of the region into a new array.
   * @throws InvalidArgumentError (offset or length not a non-negative integer),
   *   InvalidAddressError (the range leaves the region, or its memory was freed)
   */
  read(offset: number, length: number): Uint8Array {
    const at = this.range(offset, length, 'read');
    const dst = new Uint8Array(length);
    this.p.transport.read(at, dst);
    return dst;
  }

  /**
   * Writes `bytes` at byte `offset` of the region: any typed array, DataView
   * or Buffer, as the bytes it holds (as `Pool.write`).
   * @throws InvalidArgumentError (not a byte view; offset not a non-negative
   *   integer), InvalidAddressError (as `read`)
   */
  write(offset: number, bytes: ArrayBufferView | ArrayBufferLike): void {
    const src = bytesOf(`region "${this.name}" write: bytes`, bytes);
    const at = this.range(offset, src.length, 'write');
    this.p.transport.write(at, src);
  }

  /**
   * The region's memory itself as a Uint8Array of `bytes` bytes, no copy:
   * stores through it are seen by every process that maps the pool (cxl-shm)
   * at once. Plain loads and stores only, with no ordering between
   * processes: publish with `pool.cas`/`faa` on a word where order matters.
   * Valid while the Pool is open: after `close()` the mapping is gone, and
   * touching the array kills the process (SIGSEGV on cxl-shm).
   * @throws TransportUnavailableError when the transport does not map pool
   *   memory into this process, or the region straddles two mapping windows
   */
  map(): Uint8Array {
    this.p.guard();
    const t = this.p.transport;
    if (t.mapped === undefined) {
      throw new TransportUnavailableError(`region "${this.name}": the ${t.kind} transport does not map pool memory into this process, so map() has nothing to give; use region.read/write`);
    }
    const view = t.mapped.view(this.offset, this.bytes);
    if (view === null) {
      throw new TransportUnavailableError(`region "${this.name}" (${this.bytes} B at pool offset ${this.offset}) straddles two mapping windows of the ${t.kind} transport; open the pool with a larger windowBytes to map it, or use region.read/write`);
    }
    return view;
  }

  /** Pool offset of [offset, offset + length) of the region, checked. */
  private range(offset: number, length: number, what: string): number {
    this.p.guard();
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw new InvalidArgumentError(`region "${this.name}" ${what}: offset and length must be non-negative integers, got ${show(offset)} and ${show(length)}`);
    }
    if (offset + length > this.bytes) {
      throw new InvalidAddressError(`region "${this.name}" ${what}(${offset}, ${length} B): the range ends at byte ${offset + length}, past the region's ${this.bytes} B`);
    }
    const at = this.offset + offset;
    // The core checks at least one byte: an empty range at the region's end needs no check.
    if (length > 0 && this.p.x.check(at, length) !== Status.OK) {
      throw new InvalidAddressError(`region "${this.name}" ${what}(${offset}, ${length} B): its memory is no longer allocated (was the region destroyed?)`);
    }
    return at;
  }
}

/**
 * A Pool's access to its region directory (one per Pool, made on first use).
 * Create and destroy take the pool's region lock (they wait up to two leases
 * for a live holder); open, exists and list take none.
 */
export class RegionDirectory {
  private readonly p: PoolInternals;
  private readonly x: Exports;

  constructor(p: PoolInternals) {
    this.p = p;
    this.x = p.x as Exports;
  }

  /**
   * Creates region `name` of `bytes` (a number, or a size such as "1MiB"),
   * zero-filled: the smallest size class that fits up to 2 MiB, whole 2 MiB
   * sections above (as `Pool.alloc`).
   * @throws InvalidArgumentError (name not 1..40 bytes of UTF-8 without NUL;
   *   size below 1 B, malformed, or larger than the pool's data area),
   *   RegionExistsError, PoolExhaustedError (no room, or 1024 regions),
   *   PoolBusyError (the region lock stayed held by a live client)
   */
  create(name: string, bytes: number | string): Region {
    const size = parseBytes(sizeArgument(`createRegion("${String(name)}"): bytes`, bytes));
    const dataBytes = this.x.geometry(Geometry.sections) * Layout.sectionBytes;
    if (size < 1 || size > dataBytes) {
      throw new InvalidArgumentError(`region "${name}": size must be 1 B .. the pool's ${dataBytes} B of data, got ${size} B`);
    }
    const len = this.putName(name);
    this.p.guard();
    const r = this.x.regionCreate(len, size);
    if (r < 0) check(r, `createRegion("${name}", ${size})`);
    return new Region(this.p, name, size, r);
  }

  /**
   * Opens region `name`.
   * @throws InvalidArgumentError (bad name), RegionNotFoundError
   */
  open(name: string): Region {
    const r = this.lookUp(name);
    if (r === null) throw new RegionNotFoundError(`openRegion("${name}"): no region of that name`);
    return r;
  }

  /** True when region `name` exists. @throws InvalidArgumentError (bad name) */
  exists(name: string): boolean {
    return this.lookUp(name) !== null;
  }

  /**
   * Destroys region `name` and frees its memory. Clients that still have it
   * open keep a stale address (their calls fail once the memory is reused
   * or freed).
   * @throws InvalidArgumentError, RegionNotFoundError, PoolBusyError,
   *   CorruptPoolError (the memory had already been freed by other means;
   *   the name is removed all the same)
   */
  destroy(name: string): void {
    const len = this.putName(name);
    this.p.guard();
    const r = this.x.regionDestroy(len);
    if (r < 0) check(r, `destroyRegion("${name}")`);
  }

  /** Every region, in directory order (at most 1024). */
  list(): RegionInfo[] {
    this.p.guard();
    const out: RegionInfo[] = [];
    for (let i = this.x.regionNext(0); i >= 0; i = this.x.regionNext(i + 1)) {
      const { name, bytes, offset } = this.result();
      out.push({ name, bytes, gaddr: this.p.gaddr(offset) });
    }
    return out;
  }

  private lookUp(name: string): Region | null {
    const len = this.putName(name);
    this.p.guard();
    const r = this.x.regionOpen(len);
    if (r === Status.NOT_FOUND) return null;
    check(r, `openRegion("${name}")`);
    const { bytes, offset } = this.result();
    return new Region(this.p, name, bytes, offset);
  }

  /** Writes `name` into the core's name buffer; returns its length in bytes. */
  private putName(name: string): number {
    if (typeof name !== 'string') throw new InvalidArgumentError(`a region name must be a string, got ${typeof name}`);
    const bytes = encoder.encode(name);
    if (bytes.length === 0) throw new InvalidArgumentError('a region name must not be empty');
    if (bytes.length > REGION_NAME_MAX) {
      throw new InvalidArgumentError(`region name "${name}" is ${bytes.length} bytes of UTF-8; the limit is ${REGION_NAME_MAX} bytes`);
    }
    if (bytes.includes(0)) throw new InvalidArgumentError(`region name ${JSON.stringify(name)} contains a NUL character`);
    const buf = new Uint8Array(this.x.memory.buffer, this.x.regionNameBuffer(), REGION_NAME_MAX);
    buf.fill(0);
    buf.set(bytes);
    return bytes.length;
  }

  /** The result block of the last regionOpen / regionNext. */
  private result(): { name: string; bytes: number; offset: number } {
    const ptr = this.x.regionResult();
    const f = this.p.core.floats(ptr, 2);
    const offset = f[RegionResult.offset];
    const bytes = f[RegionResult.bytes];
    const raw = new Uint8Array(this.x.memory.buffer, ptr + RegionResult.nameAt, REGION_NAME_MAX);
    const end = raw.indexOf(0);
    return { name: decoder.decode(raw.subarray(0, end < 0 ? REGION_NAME_MAX : end)), bytes, offset };
  }
}
