/**
 * Reading FineMem's allocation traces (../shared/traces/README.md): one
 * request per line, `<arrival_us> <size_class>`, arrivals non-decreasing,
 * classes 0..9 (4 KiB * 2^c).
 */
import { readFileSync } from 'node:fs';
import { InvalidArgumentError } from '../errors.js';

/** A parsed trace; arrays are indexed by request (line) number. */
export interface Trace {
  path: string;
  /** Arrival time of each request, microseconds since the replay start (non-decreasing). */
  arrivalsUs: Float64Array;
  /** Size class of each request, 0..9. */
  classes: Uint8Array;
  /** The trace's own duration: the last arrival (us). */
  durationUs: number;
  /** Bytes one replay allocates before it frees: sum of 4 KiB * 2^c over the requests. */
  bytes: number;
}

const CHUNK_BYTES = 4096;

/** Latest arrival a trace may have (us): 24 h; a replay busy-waits until each arrival. */
export const MAX_ARRIVAL_US = 24 * 3600 * 1e6;

/**
 * Reads and checks a trace file. Blank lines are skipped.
 * @throws InvalidArgumentError when the file cannot be read or holds no
 *   request, or a line is not two integers, a class is outside 0..9, an
 *   arrival goes back in time or lies past 24 h (the message names the line)
 */
export function readTrace(path: string): Trace {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidArgumentError(`cannot read trace ${path}: ${(err as Error).message}`);
  }
  const lines = text.split('\n');
  const arrivals = new Float64Array(lines.length);
  const classes = new Uint8Array(lines.length);
  let n = 0;
  let bytes = 0;
  let last = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const m = /^(\d+)\s+(\d+)$/.exec(line);
    if (!m) throw new InvalidArgumentError(`${path}:${i + 1}: expected "<arrival_us> <size_class>", got ${JSON.stringify(line.slice(0, 60))}`);
    const at = Number(m[1]);
    const cls = Number(m[2]);
    if (!(at <= MAX_ARRIVAL_US)) {
      throw new InvalidArgumentError(`${path}:${i + 1}: arrival ${m[1]} us is past ${MAX_ARRIVAL_US} us (24 h): not a replayable trace (arrivals are microseconds from the start)`);
    }
    if (cls > 9) throw new InvalidArgumentError(`${path}:${i + 1}: size class ${cls} is outside 0..9`);
    if (at < last) throw new InvalidArgumentError(`${path}:${i + 1}: arrival ${at} us is before the previous one (${last} us); arrivals must not decrease`);
    arrivals[n] = at;
    classes[n] = cls;
    bytes += CHUNK_BYTES * 2 ** cls;
    last = at;
    n++;
  }
  if (n === 0) throw new InvalidArgumentError(`trace ${path} holds no request (expected lines "<arrival_us> <size_class>"): nothing to replay`);
  return { path, arrivalsUs: arrivals.slice(0, n), classes: classes.slice(0, n), durationUs: last, bytes };
}
