/**
 * The bootstrap exchange of the one-sided transports (ofi, verbs): a TCP
 * connection to the memory node's listen address (node:net) that carries a
 * few lines of JSON and then stays open as the client's liveness signal.
 * The ofi exchange:
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
 * tunnel (docs/rdma.md). The verbs exchange (verbs-server.ts) has the same
 * hello, a reply of its own, and one more server line; both memory nodes
 * accept connections through `BootstrapListener`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { InvalidArgumentError, TransportUnavailableError } from '../../src/errors.js';

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

/** Parses `HOST:PORT` (`[v6]:PORT`). @throws InvalidArgumentError */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[2]) : -1;
  if (m === null || port > 65535) throw new InvalidArgumentError(`--listen "${listen}" is not HOST:PORT (e.g. 127.0.0.1:7420; port 0 picks a free one)`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/** What the bootstrap listener needs from its owner (a memory node). */
export interface BootstrapHandler {
  /**
   * An authenticated connection: return the reply line, or null to drop
   * the connection. After a reply with an `error` member the listener
   * ends the connection (half-close: the line still reaches the client).
   */
  welcome(sock: Socket, remote: string): object | null;
  /** A later line on an authenticated connection. */
  line(sock: Socket, msg: Record<string, unknown>): void;
  /** A refused connection (wrong token, bootstrap version, bad line, silence). */
  refused(remote: string, reason: string): void;
}

/**
 * The TCP half of a memory node: accepts connections on HOST:PORT, checks
 * each one's hello (token, version) within `helloMs`, and hands the
 * authenticated ones to a handler. A refused hello gets an AUTH_FAILED
 * line and the socket is destroyed once that is written; malformed or
 * oversized lines close the connection; none of them can crash the server.
 * Everything runs on the event loop; the handler's calls for one socket
 * come in the order of its lines.
 */
export class BootstrapListener {
  private readonly net: Server;

  private constructor(net: Server) { this.net = net; }

  /**
   * @param helloMs how long a new connection has to send its hello (ms)
   * @throws InvalidArgumentError (bad listen address), TransportUnavailableError (address in use, cannot listen)
   */
  static async open(listen: string, token: Buffer, handler: BootstrapHandler, helloMs = 5000): Promise<BootstrapListener> {
    const { host, port } = parseListen(listen);
    const net = createServer();
    await new Promise<void>((resolve, reject) => {
      net.once('error', (e: NodeJS.ErrnoException) => reject(new TransportUnavailableError(
        e.code === 'EADDRINUSE' ? `${listen} is in use: pick another --listen port` : `cannot listen on ${listen}: ${e.message}`, { cause: e },
      )));
      net.listen({ host, port }, () => resolve());
    });
    net.on('error', () => undefined);
    net.on('connection', (sock: Socket) => {
      const remote = `${sock.remoteAddress}:${sock.remotePort}`;
      sock.setNoDelay(true);
      sock.on('error', () => undefined);
      let authed = false;
      const timer = setTimeout(() => { handler.refused(remote, 'no hello in time'); sock.destroy(); }, helloMs);
      timer.unref();
      sock.once('close', () => clearTimeout(timer));
      readLines(sock, (msg) => {
        if (authed) { handler.line(sock, msg); return; }
        clearTimeout(timer);
        const why = msg.v !== BOOTSTRAP_VERSION ? `bootstrap version ${String(msg.v)} not supported (want ${BOOTSTRAP_VERSION})` : !tokenMatches(msg.token, token) ? 'wrong token' : null;
        if (why !== null) {
          handler.refused(remote, why);
          sendLine(sock, { error: { code: 'AUTH_FAILED', message: why } });
          sock.end();
          sock.destroySoon();
          return;
        }
        authed = true;
        const reply = handler.welcome(sock, remote);
        if (reply === null) { sock.destroy(); return; }
        sendLine(sock, reply);
        if ('error' in reply) sock.end();
      }, (why) => { handler.refused(remote, why); sock.destroy(); });
    });
    return new BootstrapListener(net);
  }

  /** The listen address (the real port when listening on port 0). @throws TransportUnavailableError once closed */
  get address(): { host: string; port: number } {
    const a = this.bound();
    if (a === null) throw new TransportUnavailableError('the bootstrap listener is not listening');
    return a;
  }

  /** The listen address, or null once closed. */
  bound(): { host: string; port: number } | null {
    const a = this.net.address();
    return a === null || typeof a === 'string' ? null : { host: a.address, port: a.port };
  }

  /** Stops accepting (open connections are the owner's to close). */
  close(): void {
    this.net.close();
  }
}
