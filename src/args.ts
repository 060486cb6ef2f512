/**
 * Argument checks of the public API: each throws InvalidArgumentError naming
 * the call, the argument and the value it got, so a wrong type (a BigInt
 * where a number goes, an Array where bytes go, NaN) never reaches the core
 * or the transport as a silent conversion. Cheap enough for the data path:
 * typeof and Number.isSafeInteger, no allocation unless the check fails.
 */
import { InvalidArgumentError } from './errors.js';

/** One past the largest BigInt a 64-bit word op takes (2^64 - 1, the unsigned maximum); the smallest is -(2^63). */
const WORD_LIMIT = 2n ** 64n;

/** A value as an error message shows it: strings quoted, BigInts with n, objects by their class. */
export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}...` : v);
  if (typeof v === 'bigint') return `${v}n (a BigInt)`;
  if (typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null) return String(v);
  if (typeof v === 'function') return 'a function';
  if (Array.isArray(v)) return `an Array of ${v.length}`;
  const name = (v as { constructor?: { name?: string } }).constructor?.name;
  return name ? `a ${name}` : `a ${typeof v}`;
}

/**
 * `v` as an integer in [min, max].
 * @param what "call: argument", for the message
 * @throws InvalidArgumentError otherwise (including NaN, fractions, BigInts, strings)
 */
export function integerIn(what: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${what} must be an integer from ${min} to ${max}, got ${show(v)}`);
  }
  return v;
}

/**
 * A 64-bit word value for cas/faa: a BigInt in [-(2^63), 2^64), returned as
 * its signed 64-bit form (2^63 .. 2^64-1 are the same bits as -2^63 .. -1).
 * @throws InvalidArgumentError for a non-BigInt or a value outside that range
 */
export function word64(what: string, v: unknown): bigint {
  if (typeof v === 'bigint') {
    // Common case first: one asIntN and one compare for a value that is already signed 64-bit.
    const w = BigInt.asIntN(64, v);
    if (w === v || (v > 0n && v < WORD_LIMIT)) return w;
  }
  throw new InvalidArgumentError(`${what} must be a BigInt from -(2^63) to 2^64 - 1 (a 64-bit word), got ${show(v)}`);
}

/**
 * The bytes of `v` as a Uint8Array over the same memory (no copy): any typed
 * array, a DataView or a Buffer is taken as the bytes it holds
 * (`Uint16Array([0x0102])` is 2 bytes, 02 01 on little-endian hosts), an
 * ArrayBuffer or SharedArrayBuffer as all of its bytes.
 * @throws InvalidArgumentError for anything else (an Array of numbers, a string)
 */
export function bytesOf(what: string, v: unknown): Uint8Array {
  if (v instanceof Uint8Array) return v;
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer)) return new Uint8Array(v);
  throw new InvalidArgumentError(`${what} must be a Uint8Array, another typed array, a DataView, a Buffer or an ArrayBuffer, got ${show(v)}`);
}

/** @throws InvalidArgumentError unless `v` is undefined or a plain object */
export function optionsObject(what: string, v: unknown): void {
  if (v !== undefined && (v === null || typeof v !== 'object' || Array.isArray(v))) {
    throw new InvalidArgumentError(`${what} must be an options object, got ${show(v)}`);
  }
}

/** @throws InvalidArgumentError unless `v` is a byte size: a non-negative integer number or a string such as "64MiB" */
export function sizeArgument(what: string, v: unknown): number | string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw new InvalidArgumentError(`${what} must be a byte count (a non-negative integer) or a size such as "64MiB", got ${show(v)}`);
}
