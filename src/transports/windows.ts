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
import type { Transport } from '../transport.js';

export class WindowedTransport implements Transport {
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

  /**
   * @param kind name reported as `Transport.kind`
   * @param windows buffers in pool order; all but the last exactly `windowBytes` long
   * @param windowBytes power of two >= 8 (bytes)
   * @param onClose called once by `close()` (unmap, for example)
   */
  constructor(kind: string, windows: ArrayBufferLike[], windowBytes: number, onClose: () => void = () => {}) {
    if (windows.length === 0) throw new RangeError('at least one window is needed');
    this.kind = kind;
    this.windowBytes = windowBytes;
    this.words = windows.map((w) => new BigInt64Array(w, 0, Math.floor(w.byteLength / 8)));
    this.bytes = windows.map((w) => new Uint8Array(w));
    this.size = windows.reduce((s, w) => s + w.byteLength, 0);
    this.words0 = this.words[0];
    this.single = windows.length === 1;
    this.onClose = onClose;
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

  read(offset: number, dst: Uint8Array): void {
    if (this.closed) throw new RangeError('transport is closed');
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

  write(offset: number, src: Uint8Array): void {
    if (this.closed) throw new RangeError('transport is closed');
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

  /**
   * The whole pool as one BigInt64Array when it is a single window, else
   * null. Lets the core's host bind its imports straight to Atomics (one JS
   * call less per transport op); invalid after `close()`.
   */
  singleWindow(): BigInt64Array | null {
    return this.single && !this.closed ? this.words0 : null;
  }

  /**
   * Every window as a BigInt64Array, with the window size in bytes, for
   * hosts that bind imports straight to Atomics; invalid after `close()`.
   */
  windowArrays(): { words: BigInt64Array[]; windowBytes: number } {
    return { words: this.words.slice(), windowBytes: this.windowBytes };
  }

  /**
   * The pool bytes at [offset, offset + length) as a Uint8Array over the
   * memory itself (no copy), or null when the range straddles two windows.
   */
  view(offset: number, length: number): Uint8Array | null {
    const w = Math.floor(offset / this.windowBytes);
    const local = offset - w * this.windowBytes;
    if (local + length > this.bytes[w].length) return null;
    return this.bytes[w].subarray(local, local + length);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    // Drop every view before unmapping: a late access then throws a
    // RangeError instead of touching unmapped memory (a segfault).
    this.words = [];
    this.bytes = [];
    this.words0 = new BigInt64Array(0);
    this.onClose();
  }
}
