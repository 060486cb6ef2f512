/**
 * The memory server of server-side mode (../shared/DESIGN.md, "Two ways to
 * run the core"): the Wasm core runs here, next to the pool, and remote
 * clients send one request per operation over TCP, TLS or a Unix socket
 * (src/transports/tcp/protocol.ts, docs/protocol.md).
 *
 * Sessions. The server opens the pool's transport once. Each authenticated
 * connection gets a session that is a client of the pool of its own:
 * `Pool.attach(transport, { create: false })` (one Core instance, one client
 * slot, its own lease and recovery). Every request goes through that Pool,
 * whose checks bound it to one block, heap object or region exactly as on
 * shm. A session whose connection is cut keeps its Pool for one lease: the
 * client may come back (HELLO with the session id and its secret) and
 * continue.
 *
 * Leases and fencing. A session counts as alive while its connection sends
 * frames (requests, or PINGs the client sends every lease/4 when idle). The
 * sweep (every lease/4) fences a session that was silent for longer than the
 * lease: it closes the session's Pool, which frees everything the client
 * held and releases its slot, and from then on answers every request of that
 * session (on its old connection, or a resume) with LEASE_EXPIRED, without
 * touching the pool. Fencing by the server is safe without waiting for the
 * client: the client reaches the pool only through this process, requests
 * run one at a time on its event loop, and a fenced session has no Pool left
 * to run them on. If the pool's own lease monitor revokes a session's slot
 * first (this process stalled for a lease), the session's Pool throws
 * LeaseExpiredError on its next call, acknowledges, and the session is
 * fenced the same way; the monitor then recovers the slot.
 *
 * Security. Until HELLO is accepted, frames are limited to 1 KiB and no pool
 * byte is read or written. The token is compared in constant time
 * (crypto.timingSafeEqual on SHA-256 digests, so its length leaks nothing
 * either); a refusal is answered after AUTH_FAIL_DELAY_MS, then the
 * connection closes. Without a token the server listens on loopback (or a
 * Unix socket) only. A protocol violation closes only that connection.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { rmSync } from 'node:fs';
import type { Logger } from 'pino';
import { openPool, Pool } from '../../pool.js';
import { LeaseMonitor } from '../../monitor.js';
import type { Region } from '../../region.js';
import type { Transport } from '../../transport.js';
import { DmemError, InvalidArgumentError, LeaseExpiredError } from '../../errors.js';
import {
  AuthFailedError, DEFAULT_MAX_FRAME_BYTES, FrameReader, FrameWriter, HEADER_BYTES, HELLO_MAX_BYTES, Op,
  PROTOCOL_VERSION, ProtocolError, ST_ERROR, ST_OK, decodeHello, encodeError, encodeWelcome, payloadProblem,
  type Welcome,
} from './protocol.js';

/** Where to listen: "HOST:PORT", { host, port } (port 0 = ephemeral) or { path } for a Unix socket. */
export type ListenAddress = string | { host?: string; port?: number } | { path: string };

/** Options of `serveTcp`. */
export interface ServeTcpOptions {
  /** Default 127.0.0.1 on an ephemeral port. */
  listen?: ListenAddress;
  /** Shared secret every client must present (string or bytes, up to 512 B); absent: loopback only. */
  token?: string | Buffer | null;
  /** PEM certificate and key: serve TLS (node:tls) instead of plain TCP. */
  tls?: { cert: string | Buffer; key: string | Buffer } | null;
  /** Pool size (bytes or "64MiB") when the pool is created; see openPool. */
  size?: number | string;
  /** Create the pool when absent (a URI source only; default true when `size` is given). */
  create?: boolean;
  /** Client-table slots when the pool is created (default 1024: one per connection). */
  clients?: number;
  /** Memory-node id put into this server's gaddrs (0..4095, default 0). */
  node?: number;
  /** Set the pool's client lease (ms); default: keep the pool's. */
  leaseMs?: number;
  /** Run a LeaseMonitor on the server's own client (default true). */
  monitor?: boolean;
  /** Largest frame after HELLO (bytes, default 4 MiB + 64). */
  maxFrameBytes?: number;
  /** A connection must send HELLO within this time (ms, default 5000). */
  helloTimeoutMs?: number;
  logger?: Logger;
}

/** Delay before a refused HELLO is answered (ms): slows down token guessing. */
export const AUTH_FAIL_DELAY_MS = 200;
/** Most region handles one session may hold open. */
const MAX_REGION_HANDLES = 4096;
/** Fenced session ids remembered (so a late resume hears LEASE_EXPIRED, not "unknown session"). */
const MAX_TOMBSTONES = 65536;

/** One remote client: its Pool, while it is not fenced, and its connection, while it has one. */
class Session {
  readonly key: string;
  readonly secret: Buffer;
  pool: Pool | null;
  conn: Conn | null = null;
  /** Set by every frame, read and cleared by the sweep. */
  heard = true;
  lastHeard = Date.now();
  fenced: LeaseExpiredError | null = null;
  readonly regions = new Map<number, Region>();
  nextHandle = 1;
  /** Ends the epoch this session is in (EPOCH_ENTER .. EPOCH_EXIT). */
  epochEnd: (() => void) | null = null;

  constructor(key: string, secret: Buffer, pool: Pool) {
    this.key = key;
    this.secret = secret;
    this.pool = pool;
  }
}

/** One connection (before HELLO it has no session). */
class Conn {
  readonly socket: Socket;
  readonly reader: FrameReader;
  readonly writer: FrameWriter;
  session: Session | null = null;
  closed = false;
  /** Set while a refused HELLO waits out its delay: later frames are ignored. */
  refusing = false;
  helloTimer: NodeJS.Timeout | undefined;

  constructor(socket: Socket, reader: (c: Conn) => FrameReader) {
    this.socket = socket;
    this.writer = new FrameWriter(socket);
    this.reader = reader(this);
  }
}

/** A running memory server. */
export class TcpServer {
  /** The server's own client of the pool (census, monitor). */
  readonly pool: Pool;
  /** `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:PATH` to give to openTcpPool. */
  url = '';
  /** Bound port (0 for a Unix socket). */
  port = 0;
  private readonly server: Server;
  private readonly sessions = new Map<string, Session>();
  private readonly conns = new Set<Conn>();
  private readonly tombstones = new Map<string, number>();
  private readonly tokenDigest: Buffer | null;
  private readonly monitor: LeaseMonitor | null;
  private readonly maxFrameBytes: number;
  private readonly helloTimeoutMs: number;
  private readonly log: Logger | undefined;
  private readonly ownsPool: boolean;
  private sweepTimer: NodeJS.Timeout | undefined;
  private socketPath: string | null = null;
  private stopped = false;

  /** @internal use serveTcp */
  constructor(pool: Pool, ownsPool: boolean, opts: ServeTcpOptions) {
    this.pool = pool;
    this.ownsPool = ownsPool;
    this.log = opts.logger;
    this.tokenDigest = opts.token == null ? null : digest(Buffer.from(opts.token));
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.helloTimeoutMs = opts.helloTimeoutMs ?? 5000;
    this.monitor = opts.monitor === false ? null : new LeaseMonitor(pool, { logger: opts.logger, intervalMs: Math.max(5, Math.floor(pool.leaseMs / 4)) });
    const onSocket = (s: Socket): void => this.accept(s);
    this.server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, onSocket) : createNetServer(onSocket);
    this.server.on('error', (err) => this.log?.error({ err }, 'server socket error'));
  }

  /** Sessions with a Pool (live remote clients, connected or within their lease after a cut). */
  get liveSessions(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.pool !== null) n++;
    return n;
  }

  /** Open connections. */
  get connections(): number {
    return this.conns.size;
  }

  /** @internal */
  async listen(where: ListenAddress, tls: boolean): Promise<void> {
    const addr = parseListen(where);
    if ('path' in addr) {
      rmSync(addr.path, { force: true });
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(addr.path, () => { this.server.off('error', reject); resolve(); });
      });
      this.socketPath = addr.path;
      this.url = `unix:${addr.path}`;
    } else {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen(addr.port, addr.host, () => { this.server.off('error', reject); resolve(); });
      });
      const a = this.server.address();
      this.port = typeof a === 'object' && a !== null ? a.port : 0;
      const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
      this.url = `${tls ? 'tls' : 'tcp'}://${host}:${this.port}`;
    }
    const every = Math.max(5, Math.floor(this.pool.leaseMs / 4));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
    this.monitor?.start();
  }

  /**
   * Stops listening, closes every connection and every session's Pool (which
   * frees what the remote clients held), then the server's own client.
   */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sweepTimer);
    this.monitor?.stop();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) c.socket.destroy();
    for (const s of this.sessions.values()) this.endSession(s);
    this.sessions.clear();
    await closed;
    if (this.socketPath) rmSync(this.socketPath, { force: true });
    if (this.ownsPool) this.pool.close();
  }

  /**
   * One sweep: a session silent for longer than the lease is fenced; fenced
   * sessions without a connection are forgotten (their id stays a tombstone).
   */
  sweep(now = Date.now()): void {
    const lease = this.pool.leaseMs;
    for (const s of this.sessions.values()) {
      if (s.heard) { s.heard = false; s.lastHeard = now; }
      if (s.fenced === null && now - s.lastHeard > lease) {
        this.fence(s, `no request or ping for ${now - s.lastHeard} ms (lease ${lease} ms)`);
      }
      if (s.fenced !== null && (s.conn === null || now - s.lastHeard > 10 * lease)) {
        s.conn?.socket.destroy();
        this.sessions.delete(s.key);
      }
    }
    if (this.tombstones.size > MAX_TOMBSTONES) {
      for (const k of this.tombstones.keys()) {
        this.tombstones.delete(k);
        if (this.tombstones.size <= MAX_TOMBSTONES / 2) break;
      }
    }
  }

  // ------------------------------------------------------------ connections

  private accept(socket: Socket): void {
    if (this.stopped) { socket.destroy(); return; }
    socket.setNoDelay(true);
    const conn = new Conn(socket, (c) => new FrameReader(HELLO_MAX_BYTES, (kind, id, p) => this.frame(c, kind, id, p)));
    this.conns.add(conn);
    conn.helloTimer = setTimeout(() => { if (conn.session === null) this.drop(conn, 'no HELLO in time'); }, this.helloTimeoutMs);
    conn.helloTimer.unref();
    socket.on('data', (chunk: Buffer) => {
      if (conn.closed || conn.refusing) return;
      try {
        conn.reader.push(chunk);
      } catch (err) {
        this.drop(conn, err instanceof Error ? err.message : String(err));
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.detach(conn));
  }

  /** Closes a connection for a protocol violation; its session (if any) waits for a resume. */
  private drop(conn: Conn, why: string): void {
    if (conn.closed) return;
    this.log?.warn({ remote: conn.socket.remoteAddress, why }, 'connection closed: protocol violation');
    conn.socket.destroy();
    this.detach(conn);
  }

  private detach(conn: Conn): void {
    if (conn.closed) return;
    conn.closed = true;
    clearTimeout(conn.helloTimer);
    this.conns.delete(conn);
    const s = conn.session;
    if (s !== null && s.conn === conn) {
      s.conn = null;
      this.endEpoch(s);
    }
  }

  private frame(conn: Conn, op: number, id: number, p: Buffer): void {
    if (conn.closed || conn.refusing) return;
    const s = conn.session;
    if (s === null) {
      if (op !== Op.HELLO) throw new ProtocolError(`op 0x${op.toString(16)} before HELLO`);
      this.hello(conn, id, p);
      return;
    }
    if (op === Op.HELLO) throw new ProtocolError('second HELLO on one connection');
    const problem = payloadProblem(op, p.length);
    if (problem !== null) throw new ProtocolError(problem);
    s.heard = true;
    if (s.fenced !== null || s.pool === null) { this.error(conn, id, s.fenced ?? new LeaseExpiredError('session closed')); return; }
    try {
      this.request(conn, s, s.pool, op, id, p);
    } catch (err) {
      if (err instanceof LeaseExpiredError) this.fence(s, 'the pool revoked its lease');
      this.error(conn, id, err);
    }
  }

  private hello(conn: Conn, id: number, p: Buffer): void {
    const h = decodeHello(p);
    if (h.version !== PROTOCOL_VERSION) {
      this.refuse(conn, id, new DmemError('VERSION_MISMATCH', `protocol version ${h.version} is not spoken here; this server speaks version ${PROTOCOL_VERSION}`), 0);
      return;
    }
    if (this.tokenDigest !== null && !timingSafeEqual(this.tokenDigest, digest(h.token))) {
      this.log?.warn({ remote: conn.socket.remoteAddress }, 'HELLO refused: bad token');
      this.refuse(conn, id, new AuthFailedError('the server refused the token: check the token file'), AUTH_FAIL_DELAY_MS);
      return;
    }
    let s: Session;
    let resumed = false;
    if (h.resume !== null) {
      const key = h.resume.id.toString('hex');
      const found = this.sessions.get(key);
      const secretOk = found !== undefined && timingSafeEqual(found.secret, h.resume.secret);
      if (!secretOk || found === undefined) {
        const err = this.tombstones.has(key) || found !== undefined
          ? new LeaseExpiredError('this session was fenced: its lease expired and its memory was reclaimed; open the pool again to continue')
          : new LeaseExpiredError('unknown session (the server restarted or forgot it): open the pool again to continue');
        this.refuse(conn, id, err, 0);
        return;
      }
      if (found.fenced !== null) { this.refuse(conn, id, found.fenced, 0); return; }
      if (found.conn !== null && found.conn !== conn) found.conn.socket.destroy();
      s = found;
      resumed = true;
    } else {
      let pool: Pool;
      try {
        pool = Pool.attach(this.pool.transport, { create: false, node: this.pool.node });
      } catch (err) {
        this.refuse(conn, id, err, 0);
        return;
      }
      const key = randomBytes(16);
      s = new Session(key.toString('hex'), randomBytes(32), pool);
      this.sessions.set(s.key, s);
    }
    clearTimeout(conn.helloTimer);
    s.conn = conn;
    s.heard = true;
    conn.session = s;
    conn.reader.maxFrameBytes = this.maxFrameBytes;
    const pool = s.pool!;
    const g = pool.geometry;
    const welcome: Welcome = {
      version: PROTOCOL_VERSION, node: pool.node, clientId: pool.clientId, leaseMs: pool.leaseMs, maxFrameBytes: this.maxFrameBytes,
      geometry: { ...g }, heapClassSizes: [...pool.heap.classSizes], resumed,
    };
    conn.writer.writeFrame(ST_OK, id, encodeWelcome(Buffer.from(s.key, 'hex'), s.secret, welcome));
  }

  /** Answers a HELLO with an error (after `delayMs`) and closes the connection. */
  private refuse(conn: Conn, id: number, err: unknown, delayMs: number): void {
    conn.refusing = true;
    const send = (): void => {
      if (conn.closed) return;
      this.error(conn, id, err);
      conn.writer.flush();
      conn.socket.end();
      setTimeout(() => conn.socket.destroy(), 1000).unref();
    };
    if (delayMs > 0) setTimeout(send, delayMs).unref();
    else send();
  }

  /** Fences a session: closes its Pool (freeing what it held); later requests get LEASE_EXPIRED. */
  private fence(s: Session, why: string): void {
    if (s.fenced !== null) return;
    s.fenced = new LeaseExpiredError(`session of client ${s.pool?.clientId ?? '?'} was fenced (${why}); its memory is reclaimed: open the pool again to continue`);
    this.tombstones.set(s.key, Date.now());
    const freed = this.endSession(s);
    this.log?.warn({ why, freed }, 'session fenced');
  }

  /** Closes a session's Pool, releasing its epoch and regions. Returns the blocks freed. */
  private endSession(s: Session): number {
    this.endEpoch(s);
    s.regions.clear();
    const pool = s.pool;
    s.pool = null;
    if (pool === null) return 0;
    try {
      return pool.close();
    } catch (err) {
      this.log?.error({ err }, 'closing a session pool failed; the lease monitor will recover it');
      return 0;
    }
  }

  private endEpoch(s: Session): void {
    const end = s.epochEnd;
    s.epochEnd = null;
    end?.();
  }

  // ---------------------------------------------------------------- replies

  private error(conn: Conn, id: number, err: unknown): void {
    const code = err instanceof DmemError ? err.code : 'INTERNAL';
    const message = err instanceof Error ? err.message : String(err);
    if (!(err instanceof DmemError)) this.log?.error({ err }, 'request failed with an unexpected error');
    conn.writer.writeFrame(ST_ERROR, id, encodeError(code, message));
  }

  private ok(conn: Conn, id: number): void {
    conn.writer.begin(ST_OK, id, 0);
  }

  private okNumber(conn: Conn, id: number, v: number): void {
    const { buf, at } = conn.writer.begin(ST_OK, id, 8);
    buf.writeDoubleLE(v, at);
  }

  private okWord(conn: Conn, id: number, v: bigint): void {
    const { buf, at } = conn.writer.begin(ST_OK, id, 8);
    buf.writeBigInt64LE(v, at);
  }

  private okJson(conn: Conn, id: number, v: unknown): void {
    conn.writer.writeFrame(ST_OK, id, Buffer.from(JSON.stringify(v)));
  }

  private okRegion(conn: Conn, s: Session, id: number, r: Region): void {
    if (s.regions.size >= MAX_REGION_HANDLES) throw new InvalidArgumentError(`a session may hold at most ${MAX_REGION_HANDLES} regions open`);
    const handle = s.nextHandle++;
    s.regions.set(handle, r);
    const { buf, at } = conn.writer.begin(ST_OK, id, 20);
    buf.writeUInt32LE(handle, at);
    buf.writeDoubleLE(r.gaddr, at + 4);
    buf.writeDoubleLE(r.bytes, at + 12);
  }

  /** Largest read one reply may carry (bytes). */
  private readLimit(len: number): void {
    if (len + HEADER_BYTES > this.maxFrameBytes) {
      throw new InvalidArgumentError(`one read may return at most ${this.maxFrameBytes - HEADER_BYTES} bytes, asked for ${len}`);
    }
  }

  private region(s: Session, handle: number): Region {
    const r = s.regions.get(handle);
    if (r === undefined) throw new InvalidArgumentError(`no open region with handle ${handle} in this session`);
    return r;
  }

  /** Runs one request on the session's Pool and queues its reply. Throws what the Pool throws. */
  private request(conn: Conn, s: Session, pool: Pool, op: number, id: number, p: Buffer): void {
    switch (op) {
      case Op.PING: this.ok(conn, id); return;
      case Op.READ: {
        const len = p.readUInt32LE(8);
        this.readLimit(len);
        conn.writer.writeFrame(ST_OK, id, null, pool.read(p.readDoubleLE(0), len));
        return;
      }
      case Op.WRITE: pool.write(p.readDoubleLE(0), p.subarray(8)); this.ok(conn, id); return;
      case Op.CAS: this.okWord(conn, id, pool.cas(p.readDoubleLE(0), p.readBigInt64LE(8), p.readBigInt64LE(16))); return;
      case Op.FAA: this.okWord(conn, id, pool.faa(p.readDoubleLE(0), p.readBigInt64LE(8))); return;
      case Op.ALLOC: this.okNumber(conn, id, pool.alloc(p.readDoubleLE(0))); return;
      case Op.ALLOC_CLASS: this.okNumber(conn, id, pool.allocClass(p[0])); return;
      case Op.FREE: pool.free(p.readDoubleLE(0)); this.ok(conn, id); return;
      case Op.HEAP_ALLOC: this.okNumber(conn, id, pool.heap.alloc(p.readDoubleLE(0))); return;
      case Op.HEAP_FREE: pool.heap.free(p.readDoubleLE(0)); this.ok(conn, id); return;
      case Op.HEAP_FREE_DELAYED: pool.heap.freeDelayed(p.readDoubleLE(0)); this.ok(conn, id); return;
      case Op.HEAP_FLUSH: this.okNumber(conn, id, pool.heap.flush()); return;
      case Op.HEAP_TRIM: this.okNumber(conn, id, pool.heap.trim()); return;
      case Op.HEAP_STATS: this.okJson(conn, id, pool.heap.stats()); return;
      case Op.STATS: this.okJson(conn, id, pool.stats()); return;
      case Op.CENSUS: this.okJson(conn, id, pool.census()); return;
      case Op.RECLAIM: this.okNumber(conn, id, pool.reclaim()); return;
      case Op.EPOCH_STATE: this.okJson(conn, id, pool.epochState()); return;
      case Op.EPOCH_ENTER: this.epochEnter(conn, s, pool, id); return;
      case Op.EPOCH_EXIT:
        if (s.epochEnd === null) throw new InvalidArgumentError('EPOCH_EXIT without EPOCH_ENTER');
        this.endEpoch(s);
        this.ok(conn, id);
        return;
      case Op.REGION_CREATE: this.okRegion(conn, s, id, pool.createRegion(p.toString('utf8', 8), p.readDoubleLE(0))); return;
      case Op.REGION_OPEN: this.okRegion(conn, s, id, pool.openRegion(p.toString('utf8'))); return;
      case Op.REGION_DESTROY: pool.destroyRegion(p.toString('utf8')); this.ok(conn, id); return;
      case Op.REGION_EXISTS: this.okNumber(conn, id, pool.regionExists(p.toString('utf8')) ? 1 : 0); return;
      case Op.REGION_LIST: this.okJson(conn, id, pool.listRegions()); return;
      case Op.REGION_READ: {
        const len = p.readUInt32LE(12);
        this.readLimit(len);
        conn.writer.writeFrame(ST_OK, id, null, this.region(s, p.readUInt32LE(0)).read(p.readDoubleLE(4), len));
        return;
      }
      case Op.REGION_WRITE: this.region(s, p.readUInt32LE(0)).write(p.readDoubleLE(4), p.subarray(12)); this.ok(conn, id); return;
      case Op.REGION_CLOSE: this.region(s, p.readUInt32LE(0)); s.regions.delete(p.readUInt32LE(0)); this.ok(conn, id); return;
      case Op.BYE: {
        this.endEpoch(s);
        s.regions.clear();
        s.pool = null;
        this.sessions.delete(s.key);
        this.okNumber(conn, id, pool.close());
        conn.writer.flush();
        conn.socket.end();
        return;
      }
      default: throw new ProtocolError(`unknown op 0x${op.toString(16)}`);
    }
  }

  /**
   * EPOCH_ENTER: runs `pool.epoch` around a promise that EPOCH_EXIT (or the
   * end of the connection) resolves. Pool.epoch enters synchronously, so
   * whether it succeeded is known before the reply; its error, if any,
   * arrives as the rejection.
   */
  private epochEnter(conn: Conn, s: Session, pool: Pool, id: number): void {
    if (s.epochEnd !== null) throw new InvalidArgumentError('EPOCH_ENTER while already in an epoch (the client nests locally)');
    let end!: () => void;
    const gate = new Promise<void>((resolve) => { end = resolve; });
    const run = pool.epoch(() => gate);
    if (pool.epochState().inEpoch) {
      s.epochEnd = end;
      run.catch(() => undefined);
      this.ok(conn, id);
      return;
    }
    run.then(() => this.ok(conn, id), (err: unknown) => this.error(conn, id, err));
  }
}

/**
 * Serves a pool over TCP (or TLS, or a Unix socket) in server-side mode
 * (see the file comment).
 * @param source a Transport (the caller keeps owning it), or a pool URI
 *   (`shm:NAME`, `memory:`) or bare shm pool name that the server opens and closes
 * @returns the running server; `url` is what clients pass to openTcpPool
 * @throws InvalidArgumentError (bad options; a non-loopback address without a
 *   token), what openPool throws, and the listen error (EADDRINUSE ...)
 */
export async function serveTcp(source: Transport | string, opts: ServeTcpOptions = {}): Promise<TcpServer> {
  const where = opts.listen ?? { host: '127.0.0.1', port: 0 };
  const addr = parseListen(where);
  if (opts.token == null && 'host' in addr && !isLoopback(addr.host)) {
    throw new InvalidArgumentError(`without a token the server listens on loopback only, not on ${addr.host}: give a token (--token-file) to listen there`);
  }
  let pool: Pool;
  let owns: boolean;
  const clients = opts.clients ?? 1024;
  if (typeof source === 'string') {
    const uri = source.includes(':') ? source : `shm:${source}`;
    pool = await openPool(uri, { size: opts.size, create: opts.create ?? opts.size !== undefined, clients, node: opts.node });
    owns = true;
  } else {
    pool = Pool.attach(source, { create: opts.create ?? false, clients, node: opts.node });
    owns = false;
  }
  try {
    if (opts.leaseMs !== undefined) pool.setLeaseMs(opts.leaseMs);
    const server = new TcpServer(pool, owns, opts);
    await server.listen(where, Boolean(opts.tls));
    return server;
  } catch (err) {
    if (owns) pool.close();
    throw err;
  }
}

function digest(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Parses "HOST:PORT", "[v6]:PORT", "unix:PATH" or an object. @throws InvalidArgumentError */
export function parseListen(where: ListenAddress): { host: string; port: number } | { path: string } {
  if (typeof where !== 'string') {
    if ('path' in where) return { path: where.path };
    return { host: where.host ?? '127.0.0.1', port: where.port ?? 0 };
  }
  if (where.startsWith('unix:')) return { path: where.slice(5) };
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(where);
  if (!m) throw new InvalidArgumentError(`listen address "${where}": write HOST:PORT (port 0 = any free port), [IPv6]:PORT or unix:PATH`);
  const port = Number(m[3]);
  if (port > 65535) throw new InvalidArgumentError(`listen address "${where}": port must be 0..65535`);
  return { host: m[1] ?? m[2], port };
}
