/**
 * The bootstrap exchange of the ofi transport: a TCP connection to the
 * memory node's listen address (node:net) that carries three lines of JSON
 * and then stays open as the client's liveness signal.
 *
 *   client -> server   {"v":1,"token":"..."}                       (hello)
 *   server -> client   {"v":1,"provider","addr","key","base","size","layoutVersion","maxMsgSize"}
 *                      or {"error":{"code","message"}} and close
 *   client -> server   {"client":ID,"gen":GEN}                      (after Pool.attach registered it)
 *
 * Nothing about the pool (not even its provider) is sent before the token
 * is checked; the check compares SHA-256 digests with crypto.timingSafeEqual
 * so its time does not depend on how much of the token was right. A line
 * longer than MAX_LINE bytes, malformed JSON, or silence past the deadline
 * closes the connection; none of them can crash the server. The token
 * travels in clear: on untrusted networks run the bootstrap through a
 * tunnel (docs/rdma.md).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';

/** Protocol version of the bootstrap lines. */
export const BOOTSTRAP_VERSION = 1;
/** Longest accepted line, in bytes (the server's reply carries a fabric address of at most 256 B). */
export const MAX_LINE = 4096;

/** What the server tells an authenticated client. */
export interface BootstrapInfo {
  v: number;
  /** libfabric provider string the server opened (`tcp;ofi_rxm`). */
  provider: string;
  /** The server endpoint's fabric address (fi_getname), base64. */
  addr: string;
  /** This client's memory-registration key, decimal (a 64-bit unsigned integer). */
  key: string;
  /** Added to pool offsets to form remote addresses (the mapping address under FI_MR_VIRT_ADDR, else 0). */
  base: number;
  /** Pool size in bytes. */
  size: number;
  /** Pool layout version (src/core.ts LAYOUT_VERSION). */
  layoutVersion: number;
  /** Largest single transfer the server's provider allows, bytes. */
  maxMsgSize: number;
}

/** True when `given` is the token; constant time in the token's contents. */
export function tokenMatches(given: unknown, expected: Buffer): boolean {
  if (typeof given !== 'string') return false;
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * Reads newline-terminated JSON objects from `sock` and hands each to
 * `onLine`; calls `onBad` once (and stops reading) on a line that is too
 * long or not a JSON object.
 */
export function readLines(sock: Socket, onLine: (msg: Record<string, unknown>) => void, onBad: (why: string) => void): void {
  let pending = '';
  let dead = false;
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    if (dead) return;
    pending += chunk;
    for (;;) {
      const nl = pending.indexOf('\n');
      if (nl < 0) break;
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        dead = true;
        onBad('malformed JSON');
        return;
      }
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
        dead = true;
        onBad('not a JSON object');
        return;
      }
      onLine(msg as Record<string, unknown>);
      if (dead) return;
    }
    if (pending.length > MAX_LINE) {
      dead = true;
      onBad(`line longer than ${MAX_LINE} bytes`);
    }
  });
}

/** Writes one JSON line. */
export function sendLine(sock: Socket, msg: object): void {
  if (!sock.destroyed) sock.write(`${JSON.stringify(msg)}\n`);
}
