/**
 * The memory node's side of the ofi transport: registers the pool memory
 * for remote read, write and atomics, answers the bootstrap exchange
 * (bootstrap.ts) on a TCP listen address, and keeps its completion queue
 * progressing. It does no per-allocation work: clients run the allocator
 * themselves (transport.ts).
 *
 * One memory registration per client. Each authenticated bootstrap
 * connection gets its own registration of the whole pool (one MR, however
 * large the pool), with a fresh random key of the provider's key size.
 * Cutting a client is fi_close of its MR: from then on the provider refuses
 * every operation that carries its key, so nothing the client posts after
 * the cut reaches the pool (DESIGN.md, "Fencing": "its transport was cut by
 * the memory node"). Keys are never reused, so a cut key stays dead.
 *
 * When a client is cut:
 *  - `cutClient(id)`, called by whoever decides (the lease monitor through
 *    `fenceOnRevoke`, an operator);
 *  - its pool slot is no longer LIVE in the generation it reported (revoked
 *    by anyone, checked every `watchMs`);
 *  - its bootstrap connection closes (the process died or the network
 *    between them broke: the client cannot tell it is still wanted);
 *  - it has not reported its client id within `reportMs` (garbage
 *    collection of silent connections). Until it reports, the connection
 *    is cut along with any revocation the server cannot attribute: a
 *    `cutClient` of an unknown id, or a slot unknown to the server seen
 *    revoked or recovering. So a slot the server cannot name never
 *    outlives its revocation with a live key.
 *
 * Progress: ofi_rxm emulates RMA and atomics in software on the target and
 * its data progress is manual, so the server must call into the CQ. It
 * blocks in fi_cq_sread (timeout `sreadMs`) on one of koffi's worker
 * threads (an async koffi call), so the event loop stays free for the
 * bootstrap and the lease monitor, and an idle server sleeps in poll(2)
 * instead of spinning. The domain is opened FI_THREAD_SAFE for that. A
 * provider without fi_cq_sread falls back to fi_cq_read from a 1 ms timer.
 */
import { markTransportCut } from '../../src/fencing.js';
import { createServer, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, TransportUnavailableError } from '../../src/errors.js';
import type { Pool } from '../../src/pool.js';
import { BOOTSTRAP_VERSION, readLines, sendLine, tokenMatches } from './bootstrap.js';
import { OfiEndpoint } from './endpoint.js';
import { FI_MR_VIRT_ADDR, FI_PROGRESS_AUTO, FI_READ, FI_REMOTE_READ, FI_REMOTE_WRITE, FI_WRITE, nativeBuffer, providerString, type NativeBuffer } from './ofi.js';

/** The memory to serve: a mapping of the whole pool. */
export interface ServedMemory {
  /** Address of the mapping (koffi BigInt pointer). */
  ptr: bigint;
  /** Bytes (the pool size). */
  bytes: number;
  /** Pool layout version, sent to clients. */
  layoutVersion: number;
}

/** Options of `serveOfi`. */
export interface ServeOfiOptions {
  /** URI provider name or libfabric provider string (default `tcp`, i.e. `tcp;ofi_rxm`). */
  provider?: string;
  /** Bootstrap listen address `HOST:PORT` (port 0: ephemeral, see `address`). The fabric endpoint binds to HOST too. */
  listen: string;
  /** The shared secret clients must present. */
  token: string | Buffer;
  /** A Pool on the same memory: clients whose slot stops being LIVE in their generation are cut. */
  pool?: Pool;
  /** Period of that slot check (ms, default 250). */
  watchMs?: number;
  /** Time a client has to report its client id after the bootstrap (ms, default 30000). */
  reportMs?: number;
  /** fi_cq_sread timeout of the progress loop (ms, default 100; also bounds `close`). */
  sreadMs?: number;
  /** Force the fi_cq_sread loop even where the provider progresses data by itself (measurements). */
  progress?: 'sread';
  /** Told about each connection, cut and refusal (for logs). */
  onEvent?: (e: OfiServerEvent) => void;
}

/** What the server reports through `onEvent`. */
export type OfiServerEvent =
  | { event: 'client-connected'; conn: number; remote: string }
  | { event: 'client-registered'; conn: number; client: number; gen: number }
  | { event: 'client-cut'; conn: number; client: number | null; reason: string }
  | { event: 'refused'; remote: string; reason: string };

interface Conn {
  id: number;
  sock: Socket;
  mr: bigint;
  client: number | null;
  gen: number;
  reportTimer: NodeJS.Timeout | null;
}

/** A running ofi memory node; see the file comment. */
export class OfiServer {
  readonly provider: string;
  readonly ep: OfiEndpoint;
  private readonly mem: ServedMemory;
  private readonly opts: ServeOfiOptions;
  private readonly token: Buffer;
  private readonly net: Server;
  private readonly conns = new Map<number, Conn>();
  private nextConn = 1;
  private readonly keyBytes: number;
  private readonly usedKeys = new Set<bigint>();
  private readonly entry: NativeBuffer;
  private progressing = false;
  private progressDone: Promise<void> = Promise.resolve();
  private pollTimer: NodeJS.Timeout | null = null;
  private watchTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Progress-loop wake-ups so far (sread returns or timer ticks). */
  progressCalls = 0;
  /** How the CQ is progressed: `'auto'` (the provider's own thread), `'sread'` (blocking, worker thread) or `'poll'` (1 ms timer). */
  readonly progressMode: 'auto' | 'sread' | 'poll';

  private constructor(mem: ServedMemory, opts: ServeOfiOptions, ep: OfiEndpoint, net: Server) {
    this.mem = mem;
    this.opts = opts;
    this.ep = ep;
    this.net = net;
    this.provider = ep.facts.provName;
    this.token = Buffer.isBuffer(opts.token) ? opts.token : Buffer.from(opts.token, 'utf8');
    this.keyBytes = Math.max(1, Math.min(8, ep.facts.mrKeySize || 8));
    this.entry = nativeBuffer(ep.o, 256);
    this.progressMode = ep.facts.dataProgress === FI_PROGRESS_AUTO && opts.progress !== 'sread' ? 'auto' : ep.cqSread !== null ? 'sread' : 'poll';
  }

  /**
   * Opens the fabric endpoint on HOST and the bootstrap listener on HOST:PORT.
   * @throws InvalidArgumentError (bad listen address, empty token), TransportUnavailableError (libfabric, provider, address in use)
   */
  static async start(mem: ServedMemory, opts: ServeOfiOptions): Promise<OfiServer> {
    const { host, port } = parseListen(opts.listen);
    if ((typeof opts.token === 'string' ? opts.token.length : opts.token.length) === 0) throw new InvalidArgumentError('the ofi server needs a non-empty token');
    const ep = OfiEndpoint.open({ prov: providerString(opts.provider ?? 'tcp'), node: host, server: true });
    const net = createServer();
    const s = new OfiServer(mem, opts, ep, net);
    try {
      await new Promise<void>((resolve, reject) => {
        net.once('error', (e: NodeJS.ErrnoException) => reject(new TransportUnavailableError(
          e.code === 'EADDRINUSE' ? `${opts.listen} is in use: pick another --listen port` : `cannot listen on ${opts.listen}: ${e.message}`, { cause: e },
        )));
        net.listen({ host, port }, () => resolve());
      });
    } catch (e) {
      ep.close();
      throw e;
    }
    net.on('error', () => undefined);
    net.on('connection', (sock) => s.accept(sock));
    s.startProgress();
    if (opts.pool) {
      s.watchTimer = setInterval(() => s.watchSlots(), opts.watchMs ?? 250);
      s.watchTimer.unref();
    }
    return s;
  }

  /** The bootstrap listen address (the real port when listening on port 0). */
  get address(): { host: string; port: number } {
    const a = this.net.address();
    if (a === null || typeof a === 'string') throw new TransportUnavailableError('the ofi server is not listening');
    return { host: a.address, port: a.port };
  }

  /** Client ids registered through this server, with their generation. */
  clients(): Array<{ client: number; gen: number; conn: number }> {
    const out = [];
    for (const c of this.conns.values()) if (c.client !== null) out.push({ client: c.client, gen: c.gen, conn: c.id });
    return out;
  }

  /**
   * Cuts client `clientId` off: closes its memory registration (its key is
   * dead from now on) and its bootstrap connection.
   * @returns how many connections it had (0: not a client of this server)
   */
  cutClient(clientId: number, reason = 'cut'): number {
    let n = 0;
    for (const c of [...this.conns.values()]) {
      if (c.client === clientId) { this.cut(c, reason); n++; }
    }
    // A connection that has not reported its id yet may be this client
    // (it registered and is about to report): it is cut too, so no key
    // outlives the revocation of the slot it might own.
    if (n === 0) {
      for (const c of [...this.conns.values()]) {
        if (c.client === null) { this.cut(c, `${reason} (client ${clientId} unknown; this connection had not reported its id)`); n++; }
      }
    }
    return n;
  }

  /**
   * Makes `pool.revokeClient` cut the revoked client's key before it
   * returns, so the lease monitor (which revokes, then checks fencing, then
   * recovers) never reclaims memory a revoked client of this server could
   * still write. The wrapper is installed on this Pool object only.
   */
  fenceOnRevoke(pool: Pool): void {
    const revoke = pool.revokeClient.bind(pool);
    pool.revokeClient = (id: number, gen: number): boolean => {
      const ok = revoke(id, gen);
      if (ok) this.cutClient(id, 'revoked');
      return ok;
    };
  }

  /** Stops listening, cuts every client and closes the endpoint (waits for the progress thread). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watchTimer) clearInterval(this.watchTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.net.close();
    for (const c of [...this.conns.values()]) this.cut(c, 'server closing');
    this.progressing = false;
    await this.progressDone;
    this.ep.close();
    this.ep.o.free(this.entry.ptr);
  }

  private startProgress(): void {
    this.progressing = true;
    const sread = this.ep.cqSread;
    if (this.progressMode === 'auto') return;
    if (sread === null) {
      this.pollTimer = setInterval(() => { this.ep.cqRead(this.ep.cq, this.entry.ptr, 1); this.progressCalls++; }, 1);
      return;
    }
    const ms = this.opts.sreadMs ?? 100;
    this.progressDone = new Promise<void>((resolve) => {
      const step = (): void => {
        if (!this.progressing) { resolve(); return; }
        sread.async(this.ep.cq, this.entry.ptr, 1, null, ms, () => {
          this.progressCalls++;
          step();
        });
      };
      step();
    });
  }

  private accept(sock: Socket): void {
    const remote = `${sock.remoteAddress}:${sock.remotePort}`;
    sock.setNoDelay(true);
    sock.on('error', () => undefined);
    let authed = false;
    const authTimer = setTimeout(() => {
      this.opts.onEvent?.({ event: 'refused', remote, reason: 'no hello in time' });
      sock.destroy();
    }, 5000);
    authTimer.unref();
    sock.once('close', () => clearTimeout(authTimer));
    readLines(sock, (msg) => {
      if (authed) { this.report(sock, msg); return; }
      clearTimeout(authTimer);
      if (msg.v !== BOOTSTRAP_VERSION || !tokenMatches(msg.token, this.token)) {
        this.opts.onEvent?.({ event: 'refused', remote, reason: msg.v !== BOOTSTRAP_VERSION ? 'bootstrap version' : 'wrong token' });
        sendLine(sock, { error: { code: 'AUTH_FAILED', message: msg.v !== BOOTSTRAP_VERSION ? `bootstrap version ${String(msg.v)} not supported (want ${BOOTSTRAP_VERSION})` : 'wrong token' } });
        sock.end();
        sock.destroySoon?.();
        return;
      }
      authed = true;
      this.welcome(sock, remote);
    }, (why) => {
      this.opts.onEvent?.({ event: 'refused', remote, reason: why });
      sock.destroy();
    });
  }

  private welcome(sock: Socket, remote: string): void {
    if (this.closed) { sock.destroy(); return; }
    let reg: { mr: bigint; key: bigint };
    try {
      reg = this.ep.register(this.mem.ptr, this.mem.bytes, FI_REMOTE_READ | FI_REMOTE_WRITE | FI_READ | FI_WRITE, this.freshKey());
    } catch (e) {
      sendLine(sock, { error: { code: 'TRANSPORT_UNAVAILABLE', message: `the memory node could not register the pool for this client: ${(e as Error).message}` } });
      sock.end();
      return;
    }
    this.usedKeys.add(reg.key);
    const conn: Conn = { id: this.nextConn++, sock, mr: reg.mr, client: null, gen: 0, reportTimer: null };
    this.conns.set(conn.id, conn);
    conn.reportTimer = setTimeout(() => this.cut(conn, 'no client id reported in time'), this.opts.reportMs ?? 30_000);
    conn.reportTimer.unref();
    sock.once('close', () => this.cut(conn, 'bootstrap connection closed'));
    this.opts.onEvent?.({ event: 'client-connected', conn: conn.id, remote });
    const base = (this.ep.facts.mrMode & FI_MR_VIRT_ADDR) !== 0 ? Number(this.mem.ptr) : 0;
    sendLine(sock, {
      v: BOOTSTRAP_VERSION, provider: this.provider, addr: this.ep.name().toString('base64'), key: reg.key.toString(),
      base, size: this.mem.bytes, layoutVersion: this.mem.layoutVersion, maxMsgSize: this.ep.facts.maxMsgSize,
    });
  }

  /** The client's {client, gen} line. */
  private report(sock: Socket, msg: Record<string, unknown>): void {
    const conn = [...this.conns.values()].find((c) => c.sock === sock);
    if (conn === undefined) return;
    if (conn.client !== null || !Number.isInteger(msg.client) || !Number.isInteger(msg.gen) || (msg.client as number) < 1) {
      this.cut(conn, 'bad client report');
      return;
    }
    conn.client = msg.client as number;
    conn.gen = msg.gen as number;
    if (conn.reportTimer) clearTimeout(conn.reportTimer);
    conn.reportTimer = null;
    this.opts.onEvent?.({ event: 'client-registered', conn: conn.id, client: conn.client, gen: conn.gen });
    // A report for a slot that is not live in that generation is cut at once.
    this.watchSlots();
  }

  private watchSlots(): void {
    const pool = this.opts.pool;
    if (!pool || this.closed) return;
    const conns = [...this.conns.values()];
    if (conns.some((c) => c.client === null)) {
      // Unreported connections cannot be matched to a slot: cut them if
      // any slot we do not know of is being revoked or recovered.
      const known = new Set(conns.map((c) => c.client));
      let slots: ReturnType<Pool['clientSlots']> = [];
      try { slots = pool.clientSlots(); } catch { /* a closed pool: nothing to compare */ }
      const gone = slots.find((s) => (s.state === 'revoked' || s.state === 'recovering') && !known.has(s.id));
      if (gone) for (const c of conns) if (c.client === null) this.cut(c, `slot ${gone.id} is ${gone.state} and this connection had not reported its id`);
    }
    for (const c of [...this.conns.values()]) {
      if (c.client === null) continue;
      let slot;
      try { slot = pool.clientSlot(c.client); } catch { continue; }
      if (slot.state !== 'live' || slot.gen !== c.gen) this.cut(c, `slot ${c.client} is ${slot.state} (gen ${slot.gen}, reported ${c.gen})`);
    }
  }

  private cut(c: Conn, reason: string): void {
    if (!this.conns.has(c.id)) return;
    this.conns.delete(c.id);
    if (c.reportTimer) clearTimeout(c.reportTimer);
    const rc = this.ep.closeFid(c.mr);
    c.sock.destroy();
    // Its key is dead: tell the fencing authority (src/fencing.ts), so the
    // lease monitor of this process may recover the client at once instead
    // of waiting for it to exit. Only when no other key of this server may
    // still belong to it (no other connection of that client, none unreported).
    const others = [...this.conns.values()].some((o) => o.client === null || o.client === c.client);
    if (rc === 0 && c.client !== null && !others) markTransportCut(c.client, c.gen);
    this.opts.onEvent?.({ event: 'client-cut', conn: c.id, client: c.client, reason: rc === 0 ? reason : `${reason} (fi_close of its MR returned ${rc})` });
  }

  private freshKey(): bigint {
    const bits = BigInt(this.keyBytes * 8);
    for (;;) {
      const k = BigInt.asUintN(Number(bits), randomBytes(8).readBigUInt64LE());
      if (k !== 0n && !this.usedKeys.has(k)) return k;
    }
  }
}

/**
 * Starts serving `mem` (see OfiServer).
 * @throws see OfiServer.start
 */
export function serveOfi(mem: ServedMemory, opts: ServeOfiOptions): Promise<OfiServer> {
  return OfiServer.start(mem, opts);
}

/** Parses `HOST:PORT` (`[v6]:PORT`). @throws InvalidArgumentError */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:\s]+):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[2]) : -1;
  if (m === null || port > 65535) throw new InvalidArgumentError(`--listen "${listen}" is not HOST:PORT (e.g. 127.0.0.1:7420; port 0 picks a free one)`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}
