/**
 * The transport contract (docs/design.md, "Layers"), exported as
 * `dmem/transport`: the only way the Wasm core and the public API reach pool
 * memory, and the only module a transport plugin needs to import. It is a
 * leaf: it depends on src/errors.ts alone, never on the pool, the core or
 * another transport.
 *
 * One implementation per medium: in-process memory (src/transports/memory.ts),
 * CXL-style shared memory (plugins/cxl-shm/), and, registered by scheme in
 * src/open.ts, the remote transports.
 *
 * Offsets are byte offsets from the start of the pool, exact integers below
 * 2^53 (JS numbers, no BigInt on the addressing path). 64-bit words are
 * 8-byte aligned; their values are BigInt because that is what 64-bit
 * `Atomics` take and what Wasm i64 imports pass.
 *
 * Atomicity: `cas64` and `faa64` are atomic with respect to each other across
 * every process and host that reaches the same pool. `load64` never returns a
 * torn word on transports that can read 8 aligned bytes at once (shared
 * memory, RDMA); `store64` is a plain store, used only on words that no other
 * client may CAS concurrently (the concurrency argument is in
 * assembly/alloc.ts).
 *
 * Mapped memory: a transport whose pool bytes are in this process's address
 * space (in-process, cxl-shm) says so with `mapped`. The core's host then
 * binds its word imports straight to `Atomics` on those arrays (one JS call
 * less per operation), a Pool watches its own client slot with one
 * `Atomics.load`, and `Region.map()` hands out the memory itself. Code asks
 * for the capability (`t.mapped`), never for a class.
 */
import { InvalidArgumentError, TransportClosedError } from './errors.js';

export { DmemError, InvalidArgumentError, TransportClosedError, TransportUnavailableError } from './errors.js';

/**
 * Word 0 of a medium an opener found empty (all zero) and claimed for
 * formatting, by cas64(0, 0n, FORMAT_CLAIM) ("DMEMFMT?" little-endian).
 * Exactly one opener wins the CAS and reports `created`; the Pool formats the
 * medium (format writes the magic over this word last), and every other
 * opener waits while it reads this value. Only media that cannot be created
 * exclusively (a devdax device) need it: a file is claimed by O_EXCL.
 */
export const FORMAT_CLAIM = 0x3F544D464D454D44n;

/** The pool medium, as the core and the client API see it. */
export interface Transport {
  /** Short name of the medium, such as `'memory'` or `'cxl-shm'`. */
  readonly kind: string;
  /** Pool size in bytes. */
  readonly size: number;
  /** Present when the pool bytes are mapped into this process (see the module comment). */
  readonly mapped?: MappedMemory;
  /** Atomic 64-bit load of the word at `offset` (bytes, 8-aligned). */
  load64(offset: number): bigint;
  /** Plain 64-bit store of `value` at `offset` (bytes, 8-aligned). */
  store64(offset: number, value: bigint): void;
  /** Atomic compare-and-swap; returns the word found (== `expected` on success). */
  cas64(offset: number, expected: bigint, desired: bigint): bigint;
  /** Atomic fetch-and-add (wrapping, 64-bit); returns the word before the add. */
  faa64(offset: number, delta: bigint): bigint;
  /** Copies `dst.length` bytes starting at `offset` into `dst`. */
  read(offset: number, dst: Uint8Array): void;
  /** Copies `src` into pool memory starting at `offset`. */
  write(offset: number, src: Uint8Array): void;
  /** Releases the medium (unmap, disconnect). Idempotent. */
  close(): void;
}

/**
 * Pool memory mapped into this process, as one or more windows of
 * `windowBytes` (every window but the last exactly that long, a power of two,
 * so an aligned 64-bit word never straddles two). Every array is invalid once
 * the transport is closed.
 */
export interface MappedMemory {
  /** The whole pool as one BigInt64Array when it is a single window, else null (also after close). */
  singleWindow(): BigInt64Array | null;
  /** Every window as a BigInt64Array, and the window size in bytes (no windows after close). */
  windowArrays(): { words: BigInt64Array[]; windowBytes: number };
  /**
   * The pool bytes [offset, offset + length) as a Uint8Array over the memory
   * itself (no copy), or null when the range straddles two windows, leaves
   * the pool, or the transport is closed.
   */
  view(offset: number, length: number): Uint8Array | null;
  /**
   * Maps pool bytes [0, bytes) a second time, into `memory` (a Wasm
   * instance's own linear memory, grown for it), so that the core reaches
   * them with Wasm loads and atomics instead of import calls (docs/abi.md,
   * "Direct window"). Both mappings are the same physical pages.
   * Optional: only media that can map pool memory at a chosen address (the
   * cxl-shm plugin) have it.
   * @param bytes pool bytes from 0, at most the first window, a multiple of 8
   * @returns where they lie in `memory`, or null when this medium cannot do
   *   it now (closed, the memory cannot grow that far, the OS refused)
   */
  mapInto?(memory: WebAssembly.Memory, bytes: number): DirectWindow | null;
}

/** Pool bytes [0, bytes) mapped into a Wasm memory by `MappedMemory.mapInto`. */
export interface DirectWindow {
  /** Byte offset in the memory where pool byte 0 lies (a multiple of the medium's alignment). */
  readonly base: number;
  /** Pool bytes mapped there, from pool byte 0. */
  readonly bytes: number;
  /** Puts plain zero pages back over the range, which is the memory's own again (idempotent). */
  release(): void;
}

/**
 * A transport over one or more ArrayBuffers ("windows") that together hold
 * the pool: the in-process transport uses one window, cxl-shm maps a large
 * pool as several, since one koffi.view (and one V8 ArrayBuffer) cannot
 * exceed 4 GiB. Every window but the last is exactly `windowBytes` long, a
 * power of two and a multiple of 8, so an aligned 64-bit word never
 * straddles two windows; bulk copies may, and are split.
 *
 * 64-bit atomics are `Atomics.compareExchange` / `Atomics.add` on a
 * BigInt64Array view; both work on shared and unshared buffers and on
 * external (mmap-backed) buffers, so cross-process atomicity comes from the
 * CPU's lock cmpxchg on the shared mapping.
 */
export class WindowedTransport implements Transport, MappedMemory {
  readonly kind: string;
  readonly size: number;
  private readonly windowBytes: number;
  private words: BigInt64Array[];
  private bytes: Uint8Array[];
  /** Fast path: the whole pool is one window (no division per access). */
  private words0: BigInt64Array;
  private readonly single: boolean;
  private closed = false;
  private readonly onClose: () => void;
  private readonly mapIntoMedium: ((memory: WebAssembly.Memory, bytes: number) => DirectWindow | null) | null;

  /**
   * @param kind name reported as `Transport.kind`
   * @param windows buffers in pool order; all but the last exactly `windowBytes` long
   * @param windowBytes power of two >= 8 (bytes)
   * @param onClose called once by `close()` (unmap, for example)
   * @param mapInto the medium's `MappedMemory.mapInto`, where it has one
   * @throws InvalidArgumentError when no window is given
   */
  constructor(kind: string, windows: ArrayBufferLike[], windowBytes: number, onClose: () => void = () => {}, mapInto?: (memory: WebAssembly.Memory, bytes: number) => DirectWindow | null) {
    if (windows.length === 0) throw new InvalidArgumentError('a windowed transport needs at least one window');
    this.kind = kind;
    this.windowBytes = windowBytes;
    this.words = windows.map((w) => new BigInt64Array(w, 0, Math.floor(w.byteLength / 8)));
    this.bytes = windows.map((w) => new Uint8Array(w));
    this.size = windows.reduce((s, w) => s + w.byteLength, 0);
    this.words0 = this.words[0];
    this.single = windows.length === 1;
    this.onClose = onClose;
    this.mapIntoMedium = mapInto ?? null;
  }

  /** This transport maps the pool: it is its own MappedMemory (a getter, so the transport serializes without a cycle). */
  get mapped(): MappedMemory {
    return this;
  }

  load64(offset: number): bigint {
    if (this.single) return Atomics.load(this.words0, offset / 8);
    const w = Math.floor(offset / this.windowBytes);
    return Atomics.load(this.words[w], (offset - w * this.windowBytes) / 8);
  }

  store64(offset: number, value: bigint): void {
    if (this.single) { Atomics.store(this.words0, offset / 8, value); return; }
    const w = Math.floor(offset / this.windowBytes);
    Atomics.store(this.words[w], (offset - w * this.windowBytes) / 8, value);
  }

  cas64(offset: number, expected: bigint, desired: bigint): bigint {
    if (this.single) return Atomics.compareExchange(this.words0, offset / 8, expected, desired);
    const w = Math.floor(offset / this.windowBytes);
    return Atomics.compareExchange(this.words[w], (offset - w * this.windowBytes) / 8, expected, desired);
  }

  faa64(offset: number, delta: bigint): bigint {
    if (this.single) return Atomics.add(this.words0, offset / 8, delta);
    const w = Math.floor(offset / this.windowBytes);
    return Atomics.add(this.words[w], (offset - w * this.windowBytes) / 8, delta);
  }

  /** @throws TransportClosedError after close() */
  read(offset: number, dst: Uint8Array): void {
    if (this.closed) throw new TransportClosedError(`${this.kind} transport is closed`);
    let done = 0;
    while (done < dst.length) {
      const at = offset + done;
      const w = Math.floor(at / this.windowBytes);
      const local = at - w * this.windowBytes;
      const n = Math.min(dst.length - done, this.windowBytes - local);
      dst.set(this.bytes[w].subarray(local, local + n), done);
      done += n;
    }
  }

  /** @throws TransportClosedError after close() */
  write(offset: number, src: Uint8Array): void {
    if (this.closed) throw new TransportClosedError(`${this.kind} transport is closed`);
    let done = 0;
    while (done < src.length) {
      const at = offset + done;
      const w = Math.floor(at / this.windowBytes);
      const local = at - w * this.windowBytes;
      const n = Math.min(src.length - done, this.windowBytes - local);
      this.bytes[w].set(src.subarray(done, done + n), local);
      done += n;
    }
  }

  singleWindow(): BigInt64Array | null {
    return this.single && !this.closed ? this.words0 : null;
  }

  windowArrays(): { words: BigInt64Array[]; windowBytes: number } {
    return { words: this.words.slice(), windowBytes: this.windowBytes };
  }

  view(offset: number, length: number): Uint8Array | null {
    if (this.closed || offset < 0 || length < 0 || offset + length > this.size) return null;
    const w = Math.floor(offset / this.windowBytes);
    const local = offset - w * this.windowBytes;
    if (w >= this.bytes.length || local + length > this.bytes[w].length) return null;
    return this.bytes[w].subarray(local, local + length);
  }

  mapInto(memory: WebAssembly.Memory, bytes: number): DirectWindow | null {
    if (this.closed || this.mapIntoMedium === null || bytes > this.bytes[0].length) return null;
    return this.mapIntoMedium(memory, bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Drop every view before unmapping: a late access then throws instead of
    // touching unmapped memory (a segfault).
    this.words = [];
    this.bytes = [];
    this.words0 = new BigInt64Array(0);
    this.onClose();
  }
}
