/**
 * Byte sizes as people write them on a command line: "4096", "64KiB",
 * "1GiB", "2MB" (decimal SI), "1.5GiB". Binary (KiB, MiB, GiB, TiB) and
 * decimal (KB, MB, GB, TB) suffixes, case-insensitive; "K", "M", "G", "T"
 * alone mean binary.
 */
import { InvalidArgumentError } from './errors.js';

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 2 ** 10, kib: 2 ** 10, kb: 1e3,
  m: 2 ** 20, mib: 2 ** 20, mb: 1e6,
  g: 2 ** 30, gib: 2 ** 30, gb: 1e9,
  t: 2 ** 40, tib: 2 ** 40, tb: 1e12,
};

/**
 * Parses a size into bytes (an integer).
 * @throws InvalidArgumentError on a malformed size, a fraction of a byte, or a negative number
 */
export function parseBytes(text: string | number): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text < 0) throw new InvalidArgumentError(`size must be a non-negative integer number of bytes, got ${text}`);
    return text;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new InvalidArgumentError(`cannot read size "${text}": write bytes or a number with KiB, MiB, GiB, TiB (or KB, MB, GB, TB)`);
  }
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`size "${text}" is not a whole number of bytes`);
  return bytes;
}

/** Formats bytes with a binary unit: 1536 -> "1.5 KiB". */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[i]}`;
}
