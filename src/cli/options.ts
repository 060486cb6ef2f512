/**
 * Parsers of command-line values. Each throws commander's
 * InvalidArgumentError, which commander reports as a usage error (exit 2)
 * naming the option.
 */
import { InvalidArgumentError } from 'commander';
import { parseBytes } from '../units.js';
import { shmPath } from '../../plugins/cxl-shm/index.js';
import { existsSync } from 'node:fs';

/** A size in bytes: "4096", "64MiB", "1GiB", "2GB" (src/units.ts). */
export function parseSize(value: string): number {
  try {
    return parseBytes(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

/** A positive byte size (parseSize, and > 0). */
export function parsePositiveSize(value: string): number {
  const n = parseSize(value);
  if (n <= 0) throw new InvalidArgumentError('size must be more than 0 bytes');
  return n;
}

/** Returns a parser of integers from `min` to `max` (decimal digits only). */
export function intIn(min: number, max: number): (value: string) => number {
  return (value: string): number => {
    const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got "${value}"`);
    return n;
  };
}

/** A size class, 0..9 (block = 4 KiB * 2^c). */
export const parseClass = intIn(0, 9);

/**
 * A list of size classes: "0-9", "0,4,9", "0-3,9". Returns them in the given
 * order without repeats.
 */
export function parseClassList(value: string): number[] {
  const out: number[] = [];
  for (const part of value.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) throw new InvalidArgumentError(`expected size classes like "0-9" or "0,4,9", got "${value}"`);
    const lo = parseClass(m[1]);
    const hi = m[2] === undefined ? lo : parseClass(m[2]);
    if (hi < lo) throw new InvalidArgumentError(`range "${part.trim()}" goes backwards`);
    for (let c = lo; c <= hi; c++) if (!out.includes(c)) out.push(c);
  }
  return out;
}

/** A pool name as `shm:NAME` takes it: a bare name (/dev/shm/dmem-NAME) or an absolute path. */
export function parsePoolName(value: string): string {
  try {
    shmPath(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return value;
}

/** A 32-bit seed (0 .. 2^32-1). */
export const parseSeed = intIn(0, 2 ** 32 - 1);

/** An existing file path (checked now, read later). */
export function parseExistingFile(value: string, previous: string[] | undefined): string[] {
  if (!existsSync(value)) throw new InvalidArgumentError(`no such file: ${value}`);
  return [...(previous ?? []), value];
}
