/**
 * What the two one-sided client transports share (transport.ts for ofi,
 * verbs-transport.ts for verbs): the bounds check, the failure latch (once
 * an operation of unknown fate is left in the fabric, every later call
 * throws the same error), close-once with the bootstrap connection's
 * `onClose`, and bulk `read`/`write` through a native staging area:
 *
 *   read:  for each piece of at most `piece` bytes: one remote read into
 *          the staging area (`readStage`), then a copy out into `dst`
 *   write: for each piece: a copy of `src` into the staging area, then one
 *          remote write from it (`writeStage`)
 *
 * Pieces go one at a time, in order, each waited for before the next, so a
 * bulk write has landed completely when `write` returns (the backend's
 * completion semantics: FI_DELIVERY_COMPLETE, an RC WRITE's ack). A failure
 * in the middle leaves the pieces before it done and the transport broken.
 * The staging area is the backend's (registered or not, as its fabric
 * needs); `stage` views its first `piece` bytes. Everything runs on the one
 * thread that owns the transport.
 */
import { InvalidArgumentError } from '../../src/errors.js';

/** See the file comment. `E`: the backend's failure error (TransportFailedError or a subclass). */
export abstract class StagedTransport<E extends Error> {
  /** Pool size in bytes. */
  readonly size: number;
  /** The error every call throws once set (the first failure wins); null while healthy. */
  protected broken: E | null = null;
  /** Most bytes one remote operation moves through the staging area (> 0). */
  protected abstract readonly piece: number;
  /** The staging area's bytes, at least `piece` long (a view of native memory). */
  protected abstract readonly stage: Uint8Array;
  private readonly label: string;
  private closed = false;
  private onClose: (() => void) | null;

  /**
   * @param label the transport's name, prefixed to messages (`ofi`, `verbs`)
   * @param size pool size in bytes
   * @param onClose called once by `close()` (the bootstrap connection's end)
   */
  protected constructor(label: string, size: number, onClose: (() => void) | undefined) {
    this.label = label;
    this.size = size;
    this.onClose = onClose ?? null;
  }

  /** Remote read of `n` bytes at pool `offset` into the staging area's first `n` bytes; waits for it. @throws E */
  protected abstract readStage(offset: number, n: number): void;
  /** Remote write of the staging area's first `n` bytes at pool `offset`; waits for it. @throws E */
  protected abstract writeStage(offset: number, n: number): void;
  /** Breaks the transport with a "closed" error (unless broken already) and releases its fabric resources; called once. */
  protected abstract shutdown(): void;

  /** Copies `dst.length` bytes at pool `offset` into `dst`, a piece at a time. @throws InvalidArgumentError outside the pool, E */
  read(offset: number, dst: Uint8Array): void {
    this.check(offset, dst.length);
    for (let done = 0; done < dst.length; done += this.piece) {
      const n = Math.min(this.piece, dst.length - done);
      this.readStage(offset + done, n);
      dst.set(this.stage.subarray(0, n), done);
    }
  }

  /** Copies `src` to pool `offset`, a piece at a time; it has landed when this returns. @throws InvalidArgumentError outside the pool, E */
  write(offset: number, src: Uint8Array): void {
    this.check(offset, src.length);
    for (let done = 0; done < src.length; done += this.piece) {
      const n = Math.min(this.piece, src.length - done);
      this.stage.set(src.subarray(done, done + n), 0);
      this.writeStage(offset + done, n);
    }
  }

  /** Releases the fabric resources (`shutdown`), then calls `onClose`; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.shutdown();
    } finally {
      this.onClose?.();
      this.onClose = null;
    }
  }

  /** @throws the latched failure, or InvalidArgumentError when [offset, offset + length) is not inside the pool */
  protected check(offset: number, length: number): void {
    if (this.broken !== null) throw this.broken;
    if (!(offset >= 0 && offset + length <= this.size)) throw this.outside(offset, length);
  }

  /** What `check` would throw, or null (for calls that reject instead of throwing). */
  protected refusal(offset: number, length: number): Error | null {
    if (this.broken !== null) return this.broken;
    return offset >= 0 && offset + length <= this.size ? null : this.outside(offset, length);
  }

  private outside(offset: number, length: number): InvalidArgumentError {
    return new InvalidArgumentError(`${this.label}: ${length} B at offset ${offset} is outside the ${this.size} B pool`);
  }
}
