/**
 * The serving half of the wire protocol (docs/protocol.md), shared by the
 * memory server (server.ts: each session is a Pool of the pool it serves)
 * and the compute-node service (service.ts: each session is a pool over
 * the memory nodes). It accepts connections, checks HELLO, runs sessions
 * and their leases, and turns request frames into calls on a session's
 * backend, which answers synchronously (a Pool) or with Promises (a remote
 * pool); replies are matched by id, so either order is fine.
 *
 * Sessions, leases and fencing. Each accepted HELLO opens a backend for the
 * session. A session counts as alive while its connection sends frames
 * (requests, or PINGs a client sends every lease/4 when idle). The sweep
 * (every lease/4; skipped once after a stall of this process, whose
 * unread frames would otherwise look like silence) fences a session silent
 * for longer than the lease: it
 * closes the session's backend, which frees everything the client held,
 * and from then on answers every request of that session (on its old
 * connection, or a resume) with LEASE_EXPIRED, never calling the backend
 * for it again. This is safe without the client's acknowledgement: the
 * client reaches the memory only through this process, and a fenced session
 * has no backend left. A cut connection keeps its session for one lease: a
 * HELLO with the session id and its secret resumes it. A backend that
 * throws LeaseExpiredError (the pool's own monitor revoked it) fences the
 * session the same way.
 *
 * Security. Until HELLO is accepted, frames are limited to 1 KiB and the
 * backend is not even opened. The token is compared in constant time
 * (crypto.timingSafeEqual on SHA-256 digests, so its length leaks nothing
 * either); a refusal is answered after AUTH_FAIL_DELAY_MS, then the
 * connection closes. A protocol violation closes only that connection.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { rmSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ClientStats, PoolCensus } from '../../pool.js';
import type { HeapStats } from '../../heap.js';
import type { RegionInfo } from '../../region.js';
import { DmemError, InvalidArgumentError, LeaseExpiredError } from '../../errors.js';
import {
  AuthFailedError, FrameReader, FrameWriter, HEADER_BYTES, HELLO_MAX_BYTES, Op, PROTOCOL_VERSION, ProtocolError,
  ST_ERROR, ST_OK, decodeHello, encodeError, encodeWelcome, payloadProblem, type Welcome,
} from './protocol.js';

type Maybe<T> = T | Promise<T>;

/** A region as a backend hands it out (src/region.ts Region, or a RemoteRegion). */
export interface BackendRegion {
  readonly gaddr: number;
  readonly bytes: number;
  read(offset: number, length: number): Maybe<Uint8Array>;
  write(offset: number, bytes: Uint8Array): Maybe<void>;
}

/** What a session runs its requests on: a Pool (sync) or an AsyncPool. */
export interface Backend {
  readonly heap: {
    alloc(bytes: number): Maybe<number>;
    free(gaddr: number): Maybe<void>;
    freeDelayed(gaddr: number): Maybe<void>;
    flush(): Maybe<number>;
    trim(): Maybe<number>;
    stats(): Maybe<HeapStats>;
  };
  alloc(bytes: number): Maybe<number>;
  allocClass(cls: number): Maybe<number>;
  free(gaddr: number): Maybe<void>;
  read(gaddr: number, length: number): Maybe<Uint8Array>;
  write(gaddr: number, bytes: Uint8Array): Maybe<void>;
  cas(gaddr: number, expected: bigint, desired: bigint): Maybe<bigint>;
  faa(gaddr: number, delta: bigint): Maybe<bigint>;
  stats(): Maybe<ClientStats>;
  census(): Maybe<PoolCensus>;
  reclaim(): Maybe<number>;
  epoch<T>(fn: () => Promise<T> | T): Promise<T>;
  createRegion(name: string, bytes: number): Maybe<BackendRegion>;
  openRegion(name: string): Maybe<BackendRegion>;
  destroyRegion(name: string): Maybe<void>;
  listRegions(): Maybe<RegionInfo[]>;
  regionExists(name: string): Maybe<boolean>;
}

/** How a session server opens and closes backends. */
export interface BackendFactory<B extends Backend> {
  /** Opens one session's backend (after its HELLO was accepted). */
  open(): Maybe<B>;
  /** Closes it, freeing what the client held; returns the blocks freed. Never throws. */
  close(b: B): Maybe<number>;
  /** The HELLO reply's description of `b`. */
  welcome(b: B): Omit<Welcome, 'version' | 'maxFrameBytes' | 'resumed' | 'leaseMs'>;
  /** The lease (ms) sessions are judged by. */
  leaseMs(): number;
  /** Epoch state, when the backend can tell. */
  epochState?(b: B): Maybe<unknown>;
}

/** Where to listen: "HOST:PORT", { host, port } (port 0 = ephemeral) or { path } / "unix:PATH" for a Unix socket. */
export type ListenAddress = string | { host?: string; port?: number } | { path: string };

/** Options of a session server. */
export interface SessionServerOptions {
  token?: string | Buffer | null;
  tls?: { cert: string | Buffer; key: string | Buffer } | null;
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

/** One client: its backend, while it is not fenced, and its connection, while it has one. */
class Session<B> {
  readonly key: string;
  readonly secret: Buffer;
  backend: B | null;
  conn: Conn<B> | null = null;
  /** Set by every frame, read and cleared by the sweep. */
  heard = true;
  lastHeard = Date.now();
  fenced: LeaseExpiredError | null = null;
  readonly regions = new Map<number, BackendRegion>();
  nextHandle = 1;
  /** Ends the epoch this session is in (EPOCH_ENTER .. EPOCH_EXIT). */
  epochEnd: (() => void) | null = null;

  constructor(key: string, secret: Buffer, backend: B) {
    this.key = key;
    this.secret = secret;
    this.backend = backend;
  }
}

/** One connection (before HELLO it has no session). */
class Conn<B> {
  readonly socket: Socket;
  readonly writer: FrameWriter;
  reader!: FrameReader;
  session: Session<B> | null = null;
  closed = false;
  /** Set from HELLO until its answer (an async open): a frame then is a violation. */
  busy = false;
  /** Set once a HELLO is refused (during the refusal's delay): later frames are ignored. */
  refusing = false;
  helloTimer: NodeJS.Timeout | undefined;

  constructor(socket: Socket) {
    this.socket = socket;
    this.writer = new FrameWriter(socket);
  }
}

/** Decodes the reply of an op's result. */
const enum Reply { Void, Number, Word, Bytes, Json, Region, Bool }

/** A server of sessions over one listening socket (see the file comment). */
export class SessionServer<B extends Backend> {
  /** `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:PATH`, for openTcpPool. */
  url = '';
  /** Bound port (0 for a Unix socket). */
  port = 0;
  private readonly factory: BackendFactory<B>;
  private readonly server: Server;
  private readonly sessions = new Map<string, Session<B>>();
  private readonly conns = new Set<Conn<B>>();
  private readonly tombstones = new Map<string, number>();
  private readonly tokenDigest: Buffer | null;
  private readonly maxFrameBytes: number;
  private readonly helloTimeoutMs: number;
  protected readonly log: Logger | undefined;
  private readonly tls: boolean;
  private sweepTimer: NodeJS.Timeout | undefined;
  private socketPath: string | null = null;
  private stopped = false;

  constructor(factory: BackendFactory<B>, opts: SessionServerOptions) {
    this.factory = factory;
    this.log = opts.logger;
    this.tokenDigest = opts.token == null ? null : digest(Buffer.from(opts.token));
    this.maxFrameBytes = opts.maxFrameBytes ?? 4 * 1024 * 1024 + 64;
    this.helloTimeoutMs = opts.helloTimeoutMs ?? 5000;
    this.tls = Boolean(opts.tls);
    const onSocket = (s: Socket): void => this.accept(s);
    this.server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key }, onSocket) : createNetServer(onSocket);
    this.server.on('error', (err) => this.log?.error({ err }, 'server socket error'));
  }

  /** Sessions with a backend (live clients, connected or within their lease after a cut). */
  get liveSessions(): number {
    let n = 0;
    for (const s of this.sessions.values()) if (s.backend !== null) n++;
    return n;
  }

  /** Open connections. */
  get connections(): number {
    return this.conns.size;
  }

  /** Starts listening and sweeping. @throws the listen error (EADDRINUSE ...) */
  async listen(where: ListenAddress): Promise<void> {
    const addr = parseListen(where);
    const bind = (...args: unknown[]): Promise<void> => new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      (this.server.listen as (...a: unknown[]) => void)(...args, () => { this.server.off('error', reject); resolve(); });
    });
    if ('path' in addr) {
      rmSync(addr.path, { force: true });
      await bind(addr.path);
      this.socketPath = addr.path;
      this.url = `unix:${addr.path}`;
    } else {
      await bind(addr.port, addr.host);
      const a = this.server.address();
      this.port = typeof a === 'object' && a !== null ? a.port : 0;
      const host = addr.host.includes(':') ? `[${addr.host}]` : addr.host;
      this.url = `${this.tls ? 'tls' : 'tcp'}://${host}:${this.port}`;
    }
    let last = Date.now();
    this.sweepTimer = setInterval(() => {
      // After a stall of this process (or a clock jump), frames the clients
      // sent meanwhile are still unread: skip one sweep rather than fence them.
      const now = Date.now();
      const gap = now - last;
      last = now;
      if (gap > this.factory.leaseMs() / 2) this.log?.warn({ gapMs: gap }, 'the server stalled (or the clock jumped): session sweep postponed once');
      else this.sweep(now);
    }, Math.max(5, Math.floor(this.factory.leaseMs() / 4)));
    this.sweepTimer.unref();
  }

  /** Stops listening, closes every connection and every session's backend (freeing what the clients held). */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sweepTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const c of this.conns) c.socket.destroy();
    await Promise.all([...this.sessions.values()].map((s) => this.endSession(s)));
    this.sessions.clear();
    await closed;
    if (this.socketPath) rmSync(this.socketPath, { force: true });
  }

  /**
   * One sweep: a session silent for longer than the lease is fenced; fenced
   * sessions without a connection are forgotten (their id stays a tombstone).
   */
  sweep(now = Date.now()): void {
    const lease = this.factory.leaseMs();
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
    socket.setNoDelay?.(true);
    const conn = new Conn<B>(socket);
    conn.reader = new FrameReader(HELLO_MAX_BYTES, (kind, id, p, o, e) => this.frame(conn, kind, id, p, o, e));
    this.conns.add(conn);
    conn.helloTimer = setTimeout(() => { if (conn.session === null) this.drop(conn, 'no HELLO in time'); }, this.helloTimeoutMs);
    conn.helloTimer.unref();
    socket.on('data', (chunk: Buffer) => {
      if (conn.closed) return;
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
  private drop(conn: Conn<B>, why: string): void {
    if (conn.closed) return;
    this.log?.warn({ remote: conn.socket.remoteAddress, why }, 'connection closed: protocol violation');
    conn.socket.destroy();
    this.detach(conn);
  }

  private detach(conn: Conn<B>): void {
    if (conn.closed) return;
    conn.closed = true;
    clearTimeout(conn.helloTimer);
    this.conns.delete(conn);
    const s = conn.session;
    if (s !== null && s.conn === conn) {
      s.conn = null;
      endEpoch(s);
    }
  }

  /** One frame: its payload is `p[o .. e)`. */
  private frame(conn: Conn<B>, op: number, id: number, p: Buffer, o: number, e: number): void {
    if (conn.closed || conn.refusing) return;
    const s = conn.session;
    if (s === null) {
      if (conn.busy) throw new ProtocolError('frame before the HELLO reply');
      if (op !== Op.HELLO) throw new ProtocolError(`op 0x${op.toString(16)} before HELLO`);
      this.hello(conn, id, p.subarray(o, e));
      return;
    }
    if (op === Op.HELLO) throw new ProtocolError('second HELLO on one connection');
    const problem = payloadProblem(op, e - o);
    if (problem !== null) throw new ProtocolError(problem);
    s.heard = true;
    if (s.fenced !== null || s.backend === null) { this.error(conn, id, s.fenced ?? new LeaseExpiredError('session closed')); return; }
    try {
      this.request(conn, s, s.backend, op, id, p, o, e);
    } catch (err) {
      this.failed(conn, s, id, err);
    }
  }

  /** A request failed: an error reply, and the session fenced if its lease was revoked. */
  private failed(conn: Conn<B>, s: Session<B>, id: number, err: unknown): void {
    if (err instanceof LeaseExpiredError) this.fence(s, 'the pool revoked its lease');
    if (!conn.closed) this.error(conn, id, err);
  }

  private hello(conn: Conn<B>, id: number, p: Buffer): void {
    const h = decodeHello(p);
    conn.busy = true;
    if (h.version !== PROTOCOL_VERSION) {
      this.refuse(conn, id, new DmemError('VERSION_MISMATCH', `protocol version ${h.version} is not spoken here; this server speaks version ${PROTOCOL_VERSION}`), 0);
      return;
    }
    if (this.tokenDigest !== null && !timingSafeEqual(this.tokenDigest, digest(h.token))) {
      this.log?.warn({ remote: conn.socket.remoteAddress }, 'HELLO refused: bad token');
      this.refuse(conn, id, new AuthFailedError('the server refused the token: check the token file'), AUTH_FAIL_DELAY_MS);
      return;
    }
    if (h.resume !== null) {
      const key = h.resume.id.toString('hex');
      const found = this.sessions.get(key);
      if (found !== undefined && !timingSafeEqual(found.secret, h.resume.secret)) {
        this.refuse(conn, id, new AuthFailedError('resume refused: wrong session secret'), AUTH_FAIL_DELAY_MS);
        return;
      }
      if (found === undefined) {
        const why = this.tombstones.has(key) ? 'this session was fenced: its lease expired and its memory was reclaimed' : 'unknown session (the server restarted or forgot it)';
        this.refuse(conn, id, new LeaseExpiredError(`${why}; open the pool again to continue`), 0);
        return;
      }
      if (found.fenced !== null) { this.refuse(conn, id, found.fenced, 0); return; }
      if (found.conn !== null && found.conn !== conn) found.conn.socket.destroy();
      this.welcome(conn, id, found, true);
      return;
    }
    let opened: Maybe<B>;
    try {
      opened = this.factory.open();
    } catch (err) {
      this.refuse(conn, id, err, 0);
      return;
    }
    const start = (b: B): void => {
      if (conn.closed) { void this.factory.close(b); return; }
      const s = new Session<B>(randomBytes(16).toString('hex'), randomBytes(32), b);
      this.sessions.set(s.key, s);
      this.welcome(conn, id, s, false);
    };
    if (opened instanceof Promise) opened.then(start).catch((err: unknown) => this.refuse(conn, id, err, 0));
    else start(opened);
  }

  private welcome(conn: Conn<B>, id: number, s: Session<B>, resumed: boolean): void {
    clearTimeout(conn.helloTimer);
    s.conn = conn;
    s.heard = true;
    conn.session = s;
    conn.busy = false;
    conn.reader.maxFrameBytes = this.maxFrameBytes;
    const w: Welcome = {
      ...this.factory.welcome(s.backend!), version: PROTOCOL_VERSION, leaseMs: this.factory.leaseMs(), maxFrameBytes: this.maxFrameBytes, resumed,
    };
    conn.writer.writeFrame(ST_OK, id, encodeWelcome(Buffer.from(s.key, 'hex'), s.secret, w));
  }

  /** Answers a HELLO with an error (after `delayMs`) and closes the connection. */
  private refuse(conn: Conn<B>, id: number, err: unknown, delayMs: number): void {
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

  /** Fences a session: closes its backend (freeing what it held); later requests get LEASE_EXPIRED. */
  private fence(s: Session<B>, why: string): void {
    if (s.fenced !== null) return;
    s.fenced = new LeaseExpiredError(`this session was fenced (${why}); its memory is reclaimed: open the pool again to continue`);
    this.tombstones.set(s.key, Date.now());
    void Promise.resolve(this.endSession(s)).then((freed) => this.log?.warn({ why, freed }, 'session fenced'));
  }

  /** Closes a session's backend, ending its epoch and dropping its regions. Returns the blocks freed. */
  private endSession(s: Session<B>): Maybe<number> {
    endEpoch(s);
    s.regions.clear();
    const b = s.backend;
    s.backend = null;
    return b === null ? 0 : this.factory.close(b);
  }

  // ---------------------------------------------------------------- replies

  private error(conn: Conn<B>, id: number, err: unknown): void {
    const code = err instanceof DmemError ? err.code : 'INTERNAL';
    const message = err instanceof Error ? err.message : String(err);
    if (!(err instanceof DmemError)) this.log?.error({ err }, 'request failed with an unexpected error');
    conn.writer.writeFrame(ST_ERROR, id, encodeError(code, message));
  }

  /** Queues the reply to `id` carrying `v` as `kind`. */
  private ok(conn: Conn<B>, s: Session<B>, id: number, kind: Reply, v: unknown): void {
    const w = conn.writer;
    switch (kind) {
      case Reply.Void: w.begin(ST_OK, id, 0); return;
      case Reply.Number: { const at = w.begin(ST_OK, id, 8); const buf = w.buf; buf.writeDoubleLE(v as number, at); return; }
      case Reply.Bool: { const at = w.begin(ST_OK, id, 8); const buf = w.buf; buf.writeDoubleLE(v ? 1 : 0, at); return; }
      case Reply.Word: { const at = w.begin(ST_OK, id, 8); const buf = w.buf; buf.writeBigInt64LE(v as bigint, at); return; }
      case Reply.Bytes: w.writeFrame(ST_OK, id, null, v as Uint8Array); return;
      case Reply.Json: w.writeFrame(ST_OK, id, Buffer.from(JSON.stringify(v))); return;
      case Reply.Region: {
        const r = v as BackendRegion;
        if (s.regions.size >= MAX_REGION_HANDLES) throw new InvalidArgumentError(`a session may hold at most ${MAX_REGION_HANDLES} regions open`);
        const handle = s.nextHandle++;
        s.regions.set(handle, r);
        const at = w.begin(ST_OK, id, 20);
    const buf = w.buf;
        buf.writeUInt32LE(handle, at);
        buf.writeDoubleLE(r.gaddr, at + 4);
        buf.writeDoubleLE(r.bytes, at + 12);
      }
    }
  }

  /** Replies with `v` now, or when the Promise settles. */
  private answer(conn: Conn<B>, s: Session<B>, id: number, kind: Reply, v: unknown): void {
    if (v instanceof Promise) {
      v.then((x: unknown) => { if (!conn.closed) this.ok(conn, s, id, kind, x); }).catch((err: unknown) => this.failed(conn, s, id, err));
    } else {
      this.ok(conn, s, id, kind, v);
    }
  }

  private readLimit(len: number): void {
    if (len + HEADER_BYTES > this.maxFrameBytes) {
      throw new InvalidArgumentError(`one read may return at most ${this.maxFrameBytes - HEADER_BYTES} bytes, asked for ${len}`);
    }
  }

  private region(s: Session<B>, handle: number): BackendRegion {
    const r = s.regions.get(handle);
    if (r === undefined) throw new InvalidArgumentError(`no open region with handle ${handle} in this session`);
    return r;
  }

  /** Runs one request on the session's backend and queues its reply. Throws what a synchronous backend throws. */
  private request(conn: Conn<B>, s: Session<B>, b: B, op: number, id: number, p: Buffer, o: number, e: number): void {
    switch (op) {
      case Op.PING: return this.answer(conn, s, id, Reply.Void, undefined);
      case Op.READ: {
        const len = p.readUInt32LE(o + 8);
        this.readLimit(len);
        return this.answer(conn, s, id, Reply.Bytes, b.read(p.readDoubleLE(o), len));
      }
      case Op.WRITE: return this.answer(conn, s, id, Reply.Void, b.write(p.readDoubleLE(o), p.subarray(o + 8, e)));
      case Op.CAS: return this.answer(conn, s, id, Reply.Word, b.cas(p.readDoubleLE(o), p.readBigInt64LE(o + 8), p.readBigInt64LE(o + 16)));
      case Op.FAA: return this.answer(conn, s, id, Reply.Word, b.faa(p.readDoubleLE(o), p.readBigInt64LE(o + 8)));
      case Op.ALLOC: return this.answer(conn, s, id, Reply.Number, b.alloc(p.readDoubleLE(o)));
      case Op.ALLOC_CLASS: return this.answer(conn, s, id, Reply.Number, b.allocClass(p[o]));
      case Op.FREE: return this.answer(conn, s, id, Reply.Void, b.free(p.readDoubleLE(o)));
      case Op.HEAP_ALLOC: return this.answer(conn, s, id, Reply.Number, b.heap.alloc(p.readDoubleLE(o)));
      case Op.HEAP_FREE: return this.answer(conn, s, id, Reply.Void, b.heap.free(p.readDoubleLE(o)));
      case Op.HEAP_FREE_DELAYED: return this.answer(conn, s, id, Reply.Void, b.heap.freeDelayed(p.readDoubleLE(o)));
      case Op.HEAP_FLUSH: return this.answer(conn, s, id, Reply.Number, b.heap.flush());
      case Op.HEAP_TRIM: return this.answer(conn, s, id, Reply.Number, b.heap.trim());
      case Op.HEAP_STATS: return this.answer(conn, s, id, Reply.Json, b.heap.stats());
      case Op.STATS: return this.answer(conn, s, id, Reply.Json, b.stats());
      case Op.CENSUS: return this.answer(conn, s, id, Reply.Json, b.census());
      case Op.RECLAIM: return this.answer(conn, s, id, Reply.Number, b.reclaim());
      case Op.EPOCH_STATE:
        if (!this.factory.epochState) throw new InvalidArgumentError('this server does not report epoch state');
        return this.answer(conn, s, id, Reply.Json, this.factory.epochState(b));
      case Op.EPOCH_ENTER: return this.epochEnter(conn, s, b, id);
      case Op.EPOCH_EXIT:
        if (s.epochEnd === null) throw new InvalidArgumentError('EPOCH_EXIT without EPOCH_ENTER');
        endEpoch(s);
        return this.answer(conn, s, id, Reply.Void, undefined);
      case Op.REGION_CREATE: return this.answer(conn, s, id, Reply.Region, b.createRegion(p.toString('utf8', o + 8, e), p.readDoubleLE(o)));
      case Op.REGION_OPEN: return this.answer(conn, s, id, Reply.Region, b.openRegion(p.toString('utf8', o, e)));
      case Op.REGION_DESTROY: return this.answer(conn, s, id, Reply.Void, b.destroyRegion(p.toString('utf8', o, e)));
      case Op.REGION_EXISTS: return this.answer(conn, s, id, Reply.Bool, b.regionExists(p.toString('utf8', o, e)));
      case Op.REGION_LIST: return this.answer(conn, s, id, Reply.Json, b.listRegions());
      case Op.REGION_READ: {
        const len = p.readUInt32LE(o + 12);
        this.readLimit(len);
        return this.answer(conn, s, id, Reply.Bytes, this.region(s, p.readUInt32LE(o)).read(p.readDoubleLE(o + 4), len));
      }
      case Op.REGION_WRITE: return this.answer(conn, s, id, Reply.Void, this.region(s, p.readUInt32LE(o)).write(p.readDoubleLE(o + 4), p.subarray(o + 12, e)));
      case Op.REGION_CLOSE:
        this.region(s, p.readUInt32LE(o));
        s.regions.delete(p.readUInt32LE(o));
        return this.answer(conn, s, id, Reply.Void, undefined);
      case Op.BYE: {
        this.sessions.delete(s.key);
        const freed = this.endSession(s);
        const bye = (n: number): void => {
          this.ok(conn, s, id, Reply.Number, n);
          conn.writer.flush();
          conn.socket.end();
        };
        if (freed instanceof Promise) freed.then(bye, () => bye(0));
        else bye(freed);
        return;
      }
      default: throw new ProtocolError(`unknown op 0x${op.toString(16)}`);
    }
  }

  /**
   * EPOCH_ENTER: runs `epoch` around a promise that EPOCH_EXIT (or the end
   * of the connection) resolves, and answers once the epoch was entered
   * (its fn runs), or with the error if entering failed.
   */
  private epochEnter(conn: Conn<B>, s: Session<B>, b: B, id: number): void {
    if (s.epochEnd !== null) throw new InvalidArgumentError('EPOCH_ENTER while already in an epoch (the client nests locally)');
    let end!: () => void;
    const gate = new Promise<void>((resolve) => { end = resolve; });
    let entered = false;
    const run = b.epoch(() => {
      entered = true;
      s.epochEnd = end;
      if (!conn.closed) this.ok(conn, s, id, Reply.Void, undefined);
      return gate;
    });
    run.catch((err: unknown) => { if (!entered) this.failed(conn, s, id, err); });
  }
}

function endEpoch(s: Session<unknown>): void {
  const end = s.epochEnd;
  s.epochEnd = null;
  end?.();
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
