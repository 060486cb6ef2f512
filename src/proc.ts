/**
 * Process facts a lease monitor needs to tell a dead client from a live one
 * on the same host: is pid alive, and is it still the process that
 * registered (its start time, /proc/PID/stat field 22, in clock ticks since
 * boot, so a recycled pid is not mistaken for the client).
 */
import { createHash } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';

/** Start time of process `pid` in clock ticks since boot, or null when unknown (no /proc, gone). */
export function processStartTime(pid: number): bigint | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return BigInt(fields[19]);
  } catch {
    return null;
  }
}

/** State letter of process `pid` (R, S, D, T stopped, Z zombie, ...), or null when it is gone. */
export function processState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return null;
  }
}

/**
 * True when process `pid` exists, is not a zombie, and (when `startTime` is
 * known, non-zero) started at that time.
 */
export function processAlive(pid: number, startTime: bigint): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const state = processState(pid);
  if (state === 'Z' || state === 'X') return false;
  if (startTime === 0n) return true;
  const now = processStartTime(pid);
  return now === null ? true : now === startTime;
}

/**
 * This process's PID namespace: the inode number of /proc/self/ns/pid, or 0
 * when unknown. Two processes can judge each other's pids only when this is
 * the same for both (a pid means nothing across namespaces).
 */
export function pidNamespace(pid: number | 'self' = 'self'): number {
  try {
    return Number(statSync(`/proc/${pid}/ns/pid`).ino);
  } catch {
    return 0;
  }
}

let cachedBootId: number | undefined;

/**
 * This kernel boot's id (/proc/sys/kernel/random/boot_id) as a 52-bit
 * number (so it survives a float64 round trip through the core), or 0 when
 * unknown. Process start times (clock ticks since boot) only compare within
 * one boot, and two hosts sharing a pool medium differ here.
 */
export function bootId(): number {
  if (cachedBootId !== undefined) return cachedBootId;
  try {
    const text = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const digest = createHash('sha256').update(text).digest();
    cachedBootId = digest.readUIntLE(0, 6) + (digest[6] & 0x0f) * 2 ** 48;
  } catch {
    cachedBootId = 0;
  }
  return cachedBootId;
}
