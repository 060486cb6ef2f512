/**
 * In-process transport: the pool is a SharedArrayBuffer of this process, so
 * worker threads can share it. Used by tests, by embedded use without
 * services, and as the reference for other transports' semantics.
 */
import { InvalidArgumentError } from '../errors.js';
import { WindowedTransport } from '../transport.js';

/** Largest in-process pool: one SharedArrayBuffer window (bytes). */
export const MEMORY_MAX_BYTES = 2 ** 31;

/**
 * Creates an in-process pool medium of `size` bytes (zero-filled), or wraps
 * an existing SharedArrayBuffer (to share one pool between worker threads).
 * @throws InvalidArgumentError when size is not a positive multiple of 8 up to 2 GiB
 */
export function memoryTransport(sizeOrBuffer: number | SharedArrayBuffer): WindowedTransport {
  const buf = typeof sizeOrBuffer === 'number' ? allocate(sizeOrBuffer) : sizeOrBuffer;
  return new WindowedTransport('memory', [buf], MEMORY_MAX_BYTES);
}

function allocate(size: number): SharedArrayBuffer {
  if (!Number.isInteger(size) || size <= 0 || size % 8 !== 0 || size > MEMORY_MAX_BYTES) {
    throw new InvalidArgumentError(`in-process pool size must be a positive multiple of 8 up to ${MEMORY_MAX_BYTES} bytes, got ${size}`);
  }
  return new SharedArrayBuffer(size);
}
