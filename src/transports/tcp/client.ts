/**
 * The client of server-side mode: `openTcpPool('tcp://HOST:PORT')` returns a
 * RemotePool with the methods of a shm Pool, returning Promises (code
 * written with `await` runs on both). Every call is one request frame
 * (src/transports/tcp/protocol.ts); calls made in one tick leave in one
 * write, and any number may be in flight, their replies matched by id.
 *
 * Lease: the server renews this client's lease while the connection sends
 * something; when idle for a quarter lease the client sends a PING. If the
 * connection is cut, requests in flight fail with TransportUnavailableError
 * (they may or may not have run), and the next call (or ping) reconnects and
 * resumes the session with its id and secret, keeping every block it holds,
 * provided it comes back within the lease. After that the server has freed
 * its memory and refuses it: every call then throws LeaseExpiredError.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import {
  DmemError, InvalidArgumentError, LeaseExpiredError, PoolClosedError, TransportUnavailableError,
} from '../../errors.js';
import type { ClientStats, PoolCensus } from '../../pool.js';
import type { HeapStats } from '../../heap.js';
import type { RegionInfo } from '../../region.js';
import {
  FrameReader, FrameWriter, HEADER_BYTES, HELLO_MAX_BYTES, Op, PROTOCOL_VERSION, ProtocolError, ST_OK,
  decodeError, decodeWelcome, encodeHello, type Welcome,
} from './protocol.js';
import { remoteError } from './errors.js';
import { parseBytes } from '../../units.js';
import { createAsyncSpace, type AsyncSpace, type AsyncSpaceOptions } from '../../paging/async-space.js';

/** Options of `openTcpPool`. */
export interface TcpPoolOptions {
  /** The server's token (string or bytes). */
  token?: string | Buffer;
  /** Connect with TLS (true, or node:tls options such as { ca }); `tls://` URLs imply it. */
  tls?: boolean | ConnectionOptions;
  /** Give up connecting after this long (ms, default 5000). */
  connectTimeoutMs?: number;
  /** Idle ping period (ms; default a quarter of the pool's lease). */
  pingMs?: number;
}

/** The pool-wide geometry a server reports. */
export type RemoteGeometry = Welcome['geometry'];

/** A named region of a remote pool; reads and writes are bounded by the region on the server. */
export interface RemoteRegion extends RegionInfo {
  read(offset: number, length: number): Promise<Uint8Array>;
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /** Releases the server's handle on this region (the region itself stays). */
  close(): Promise<void>;
}

/** The heap of a remote pool (src/heap.ts, as Promises). */
export interface RemoteHeap {
  readonly classSizes: readonly number[];
  alloc(bytes: number): Promise<number>;
  free(gaddr: number): Promise<void>;
  freeDelayed(gaddr: number): Promise<void>;
  flush(): Promise<number>;
  trim(): Promise<number>;
  stats(): Promise<HeapStats>;
}

/**
 * The methods every Promise-returning pool has (a RemotePool; several
 * nodes: src/transports/tcp/nodes.ts). Same meaning, arguments and errors
 * as the Pool methods of the same name.
 */
export interface AsyncPool {
  readonly heap: RemoteHeap;
  alloc(bytes: number): Promise<number>;
  allocClass(cls: number): Promise<number>;
  free(gaddr: number): Promise<void>;
  read(gaddr: number, length: number): Promise<Uint8Array>;
  write(gaddr: number, bytes: Uint8Array): Promise<void>;
  cas(gaddr: number, expected: bigint, desired: bigint): Promise<bigint>;
  faa(gaddr: number, delta: bigint): Promise<bigint>;
  stats(): Promise<ClientStats>;
  census(): Promise<PoolCensus>;
  createRegion(name: string, bytes: number | string): Promise<RemoteRegion>;
  openRegion(name: string): Promise<RemoteRegion>;
  destroyRegion(name: string): Promise<void>;
  listRegions(): Promise<RegionInfo[]>;
  regionExists(name: string): Promise<boolean>;
  epoch<T>(fn: () => Promise<T> | T): Promise<T>;
  reclaim(): Promise<number>;
  close(): Promise<number>;
}

/** How a reply payload is decoded. */
const enum Kind { Void, Number, Word, Bytes, Json, Region }

interface Pending {
  kind: Kind;
  resolve: (v: never) => void;
  reject: (e: unknown) => void;
  /** Region replies: the name asked for. */
  name?: string;
}

const encoder = new TextEncoder();

/** Parses tcp://HOST:PORT, tls://HOST:PORT, unix:PATH. @throws InvalidArgumentError */
export function parsePoolUrl(url: string): { host: string; port: number; tls: boolean } | { path: string } {
  if (url.startsWith('unix:')) {
    const path = url.slice(url.startsWith('unix://') ? 7 : 5);
    if (path === '') throw new InvalidArgumentError(`"${url}" names no socket: write unix:/path/to/socket`);
    return { path };
  }
  const m = /^(tcp|tls):\/\/(?:\[([^\]]+)\]|([^:/]+)):(\d+)\/?$/.exec(url);
  if (!m || Number(m[4]) > 65535) throw new InvalidArgumentError(`"${url}" is not a pool address: write tcp://HOST:PORT, tls://HOST:PORT or unix:PATH`);
  return { host: m[2] ?? m[3], port: Number(m[4]), tls: m[1] === 'tls' };
}

/** One client session on one memory server (see the file comment). */
export class RemotePool implements AsyncPool {
  readonly url: string;
  /** Memory-node id in this pool's gaddrs. */
  node = 0;
  /** This client's id in the server's pool. */
  clientId = 0;
  leaseMs = 0;
  geometry!: RemoteGeometry;
  readonly heap: RemoteHeap;
  private readonly opts: TcpPoolOptions;
  private socket: Socket | null = null;
  private writer: FrameWriter | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private session: { id: Buffer; secret: Buffer } | null = null;
  private connecting: Promise<void> | null = null;
  private maxPayload = 0;
  private sentSincePing = false;
  private pingTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private fenced: DmemError | null = null;
  private epochDepth = 0;
  /** The outermost epoch's ENTER: true once entered, else its error. */
  private entered: Promise<unknown> | null = null;
  private heapClassSizes: number[] = [];

  private constructor(url: string, opts: TcpPoolOptions) {
    this.url = url;
    this.opts = opts;
    this.heap = this.makeHeap();
  }

  /** @internal use openTcpPool */
  static async open(url: string, opts: TcpPoolOptions): Promise<RemotePool> {
    parsePoolUrl(url);
    const p = new RemotePool(url, opts);
    await p.connect();
    const every = opts.pingMs ?? Math.max(5, Math.floor(p.leaseMs / 4));
    p.pingTimer = setInterval(() => p.ping(), every);
    p.pingTimer.unref();
    return p;
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.pending.size;
  }

  // -------------------------------------------------------------- the API

  alloc(bytes: number): Promise<number> { return this.callNumber(Op.ALLOC, Kind.Number, bytes); }

  allocClass(cls: number): Promise<number> {
    if (!Number.isInteger(cls) || cls < 0 || cls > 255) return Promise.reject(new InvalidArgumentError(`allocClass(${cls}): size class must be 0..9`));
    const w = this.out();
    if (w === null) return this.slow(() => this.allocClass(cls));
    const id = this.id();
    const at = w.begin(Op.ALLOC_CLASS, id, 1);
    const buf = w.buf;
    buf[at] = cls;
    return this.wait(id, Kind.Number);
  }

  free(gaddr: number): Promise<void> { return this.callNumber(Op.FREE, Kind.Void, gaddr); }

  read(gaddr: number, length: number): Promise<Uint8Array> {
    if (!Number.isSafeInteger(length) || length < 0) return Promise.reject(new InvalidArgumentError(`read: length must be a non-negative integer, got ${length}`));
    if (length > this.maxPayload) return this.split(gaddr, length, (g, n) => this.read(g, n));
    const w = this.out();
    if (w === null) return this.slow(() => this.read(gaddr, length));
    const id = this.id();
    const at = w.begin(Op.READ, id, 12);
    const buf = w.buf;
    buf.writeDoubleLE(gaddr, at);
    buf.writeUInt32LE(length, at + 8);
    return this.wait(id, Kind.Bytes);
  }

  write(gaddr: number, bytes: Uint8Array): Promise<void> {
    if (!(bytes instanceof Uint8Array)) return Promise.reject(new InvalidArgumentError('write: bytes must be a Uint8Array'));
    if (bytes.length > this.maxPayload) return this.splitWrite(bytes, (off, part) => this.write(gaddr + off, part));
    const w = this.out();
    if (w === null) return this.slow(() => this.write(gaddr, bytes));
    const id = this.id();
    const head = Buffer.allocUnsafe(8);
    head.writeDoubleLE(gaddr, 0);
    w.writeFrame(Op.WRITE, id, head, bytes);
    return this.wait(id, Kind.Void);
  }

  cas(gaddr: number, expected: bigint, desired: bigint): Promise<bigint> {
    const w = this.out();
    if (w === null) return this.slow(() => this.cas(gaddr, expected, desired));
    const id = this.id();
    const at = w.begin(Op.CAS, id, 24);
    const buf = w.buf;
    buf.writeDoubleLE(gaddr, at);
    buf.writeBigInt64LE(BigInt.asIntN(64, expected), at + 8);
    buf.writeBigInt64LE(BigInt.asIntN(64, desired), at + 16);
    return this.wait(id, Kind.Word);
  }

  faa(gaddr: number, delta: bigint): Promise<bigint> {
    const w = this.out();
    if (w === null) return this.slow(() => this.faa(gaddr, delta));
    const id = this.id();
    const at = w.begin(Op.FAA, id, 16);
    const buf = w.buf;
    buf.writeDoubleLE(gaddr, at);
    buf.writeBigInt64LE(BigInt.asIntN(64, delta), at + 8);
    return this.wait(id, Kind.Word);
  }

  stats(): Promise<ClientStats> { return this.call(Op.STATS, Kind.Json, null); }
  census(): Promise<PoolCensus> { return this.call(Op.CENSUS, Kind.Json, null); }
  reclaim(): Promise<number> { return this.call(Op.RECLAIM, Kind.Number, null); }
  /** The global epoch, delayed frees waiting, and whether this session is in an epoch. */
  epochState(): Promise<{ epoch: number; pending: number; inEpoch: boolean }> { return this.call(Op.EPOCH_STATE, Kind.Json, null); }

  /**
   * A far-memory space of `bytes` over this pool, owned by this session's
   * client: `pool.space` of an shm pool, with every operation returning a
   * Promise and a miss's page I/O overlapped (src/paging/async-space.ts,
   * docs/paging.md).
   * @throws InvalidArgumentError bad size, cache, policy, prefetch or tier options
   */
  space(bytes: number | string, opts: AsyncSpaceOptions): AsyncSpace { return createAsyncSpace(this, bytes, opts); }

  async createRegion(name: string, bytes: number | string): Promise<RemoteRegion> {
    const size = parseBytes(bytes);
    const head = Buffer.allocUnsafe(8);
    head.writeDoubleLE(size, 0);
    return this.call(Op.REGION_CREATE, Kind.Region, Buffer.concat([head, this.name(name)]), name);
  }

  async openRegion(name: string): Promise<RemoteRegion> { return this.call(Op.REGION_OPEN, Kind.Region, this.name(name), name); }
  async destroyRegion(name: string): Promise<void> { return this.call(Op.REGION_DESTROY, Kind.Void, this.name(name)); }
  listRegions(): Promise<RegionInfo[]> { return this.call(Op.REGION_LIST, Kind.Json, null); }
  async regionExists(name: string): Promise<boolean> { return (await this.call<number>(Op.REGION_EXISTS, Kind.Number, this.name(name))) === 1; }

  /**
   * Runs `fn` as one epoch operation (Pool.epoch): the server holds this
   * session in an epoch from the first nested call's start to the last one's end.
   */
  async epoch<T>(fn: () => Promise<T> | T): Promise<T> {
    // Overlapping calls share one ENTER (sent by the first) and one EXIT (sent by the last).
    if (this.epochDepth++ === 0) this.entered = this.call<void>(Op.EPOCH_ENTER, Kind.Void, null).then(() => true, (err: unknown) => err);
    const entered = this.entered!;
    try {
      const ok = await entered;
      if (ok !== true) throw ok;
      return await fn();
    } finally {
      if (--this.epochDepth === 0) {
        this.entered = null;
        if ((await entered) === true && !this.closed && this.fenced === null) await this.call(Op.EPOCH_EXIT, Kind.Void, null);
      }
    }
  }

  /**
   * Ends the session: the server closes this client's Pool, freeing every
   * block it still holds. Idempotent. @returns the blocks freed
   */
  async close(): Promise<number> {
    if (this.closed) return 0;
    let freed = 0;
    try {
      if (this.fenced === null) freed = await this.call<number>(Op.BYE, Kind.Number, null);
    } catch {
      // A connection already gone: the server frees the memory after the lease.
    }
    this.closed = true;
    clearInterval(this.pingTimer);
    this.socket?.destroy();
    this.fail(new PoolClosedError('pool is closed'));
    return freed;
  }

  // ---------------------------------------------------------- requests

  /** The writer when a request can go out now, null when a connect must come first. */
  private out(): FrameWriter | null {
    if (this.writer === null || this.closed || this.fenced !== null) return null;
    this.sentSincePing = true;
    return this.writer;
  }

  /** Connects (or resumes), then makes the call again; or rejects when closed or fenced. */
  private async slow<T>(again: () => Promise<T>): Promise<T> {
    if (this.closed) throw new PoolClosedError('pool is closed');
    if (this.fenced !== null) throw this.fenced;
    await this.connect();
    return again();
  }

  private id(): number {
    const id = this.nextId;
    this.nextId = id >= 0xFFFFFFFF ? 1 : id + 1;
    return id;
  }

  private wait<T>(id: number, kind: Kind, name?: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { kind, resolve: resolve as (v: never) => void, reject, name });
    });
  }

  private callNumber<T>(op: number, kind: Kind, v: number): Promise<T> {
    const w = this.out();
    if (w === null) return this.slow(() => this.callNumber<T>(op, kind, v));
    const id = this.id();
    const at = w.begin(op, id, 8);
    const buf = w.buf;
    buf.writeDoubleLE(v, at);
    return this.wait(id, kind);
  }

  private call<T>(op: number, kind: Kind, payload: Buffer | null, name?: string): Promise<T> {
    const w = this.out();
    if (w === null) return this.slow(() => this.call<T>(op, kind, payload, name));
    const id = this.id();
    w.writeFrame(op, id, payload);
    return this.wait(id, kind, name);
  }

  private name(name: string): Buffer {
    if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('a region name must be a non-empty string');
    return Buffer.from(encoder.encode(name));
  }

  /** A read longer than one frame, as several requests in flight at once. */
  private async split(gaddr: number, length: number, part: (g: number, n: number) => Promise<Uint8Array>): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    const parts: Promise<void>[] = [];
    for (let off = 0; off < length; off += this.maxPayload) {
      const n = Math.min(this.maxPayload, length - off);
      parts.push(part(gaddr + off, n).then((b) => out.set(b, off)));
    }
    await Promise.all(parts);
    return out;
  }

  private async splitWrite(bytes: Uint8Array, part: (off: number, b: Uint8Array) => Promise<void>): Promise<void> {
    const parts: Promise<void>[] = [];
    for (let off = 0; off < bytes.length; off += this.maxPayload) parts.push(part(off, bytes.subarray(off, off + this.maxPayload)));
    await Promise.all(parts);
  }

  private makeHeap(): RemoteHeap {
    const self = this;
    return {
      get classSizes() { return self.heapClassSizes; },
      alloc: (bytes) => this.callNumber(Op.HEAP_ALLOC, Kind.Number, bytes),
      free: (gaddr) => this.callNumber(Op.HEAP_FREE, Kind.Void, gaddr),
      freeDelayed: (gaddr) => this.callNumber(Op.HEAP_FREE_DELAYED, Kind.Void, gaddr),
      flush: () => this.call(Op.HEAP_FLUSH, Kind.Number, null),
      trim: () => this.call(Op.HEAP_TRIM, Kind.Number, null),
      stats: () => this.call(Op.HEAP_STATS, Kind.Json, null),
    };
  }

  private region(handle: number, info: RegionInfo): RemoteRegion {
    const self = this;
    const head = (offset: number): Buffer => {
      const b = Buffer.allocUnsafe(12);
      b.writeUInt32LE(handle, 0);
      b.writeDoubleLE(offset, 4);
      return b;
    };
    return {
      ...info,
      read(offset: number, length: number): Promise<Uint8Array> {
        if (!Number.isSafeInteger(length) || length < 0) return Promise.reject(new InvalidArgumentError(`region read: length must be a non-negative integer, got ${length}`));
        if (length > self.maxPayload) return self.split(offset, length, (o, n) => this.read(o, n));
        const b = Buffer.allocUnsafe(16);
        head(offset).copy(b);
        b.writeUInt32LE(length, 12);
        return self.call(Op.REGION_READ, Kind.Bytes, b);
      },
      write(offset: number, bytes: Uint8Array): Promise<void> {
        if (bytes.length > self.maxPayload) return self.splitWrite(bytes, (o, part) => this.write(offset + o, part));
        const w = self.out();
        if (w === null) return self.slow(() => this.write(offset, bytes));
        const id = self.id();
        w.writeFrame(Op.REGION_WRITE, id, head(offset), bytes);
        return self.wait(id, Kind.Void);
      },
      close(): Promise<void> {
        const b = Buffer.allocUnsafe(4);
        b.writeUInt32LE(handle, 0);
        return self.call(Op.REGION_CLOSE, Kind.Void, b);
      },
    };
  }

  // --------------------------------------------------------- connection

  /** Sends a PING when nothing was sent for a ping period; reconnects a cut session. */
  private ping(): void {
    if (this.closed || this.fenced !== null) return;
    if (this.writer === null) {
      this.connect().catch(() => undefined);
      return;
    }
    if (this.sentSincePing) { this.sentSincePing = false; return; }
    this.call(Op.PING, Kind.Void, null).catch(() => undefined);
    this.sentSincePing = false;
  }

  /** Opens the connection and sends HELLO (a resume when a session exists). */
  private connect(): Promise<void> {
    this.connecting ??= this.handshake().finally(() => { this.connecting = null; });
    return this.connecting;
  }

  private async handshake(): Promise<void> {
    const addr = parsePoolUrl(this.url);
    const timeout = this.opts.connectTimeoutMs ?? 5000;
    const socket = await new Promise<Socket>((resolve, reject) => {
      let s: Socket;
      const useTls = 'path' in addr ? false : addr.tls || Boolean(this.opts.tls);
      const tlsOpts = typeof this.opts.tls === 'object' ? this.opts.tls : {};
      if ('path' in addr) s = netConnect(addr.path);
      else if (useTls) s = tlsConnect({ ...tlsOpts, host: addr.host, port: addr.port, servername: isIp(addr.host) ? undefined : addr.host });
      else s = netConnect(addr.port, addr.host);
      const timer = setTimeout(() => { s.destroy(); reject(new TransportUnavailableError(`${this.url}: no connection within ${timeout} ms`)); }, timeout);
      s.once(useTls ? 'secureConnect' : 'connect', () => { clearTimeout(timer); s.removeAllListeners('error'); resolve(s); });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new TransportUnavailableError(`${this.url}: cannot connect (${err.message}); is the memory server running there?`, { cause: err }));
      });
    });
    socket.setNoDelay(true);
    const writer = new FrameWriter(socket);
    const welcome = await new Promise<Welcome>((resolve, reject) => {
      let done = false;
      const reader = new FrameReader(HELLO_MAX_BYTES * 64, (st, id, b, o, end) => {
        if (!done) {
          done = true;
          if (st !== ST_OK) { const e = decodeError(b.subarray(o, end)); reject(remoteError(e.code, e.message)); return; }
          const w = decodeWelcome(b.subarray(o, end));
          this.session = { id: w.id, secret: w.secret };
          reader.maxFrameBytes = w.welcome.maxFrameBytes;
          resolve(w.welcome);
          return;
        }
        this.reply(st, id, b, o, end);
      });
      socket.on('data', (chunk: Buffer) => {
        try {
          reader.push(chunk);
        } catch (err) {
          socket.destroy(err instanceof Error ? err : undefined);
        }
      });
      socket.on('error', () => undefined);
      socket.on('close', () => {
        if (!done) { done = true; reject(new TransportUnavailableError(`${this.url}: the server closed the connection during the handshake`)); }
        if (this.socket === socket) this.lost();
      });
      writer.writeFrame(Op.HELLO, 0, encodeHello({ version: PROTOCOL_VERSION, token: Buffer.from(this.opts.token ?? ''), resume: this.session }));
    }).catch((err: unknown) => {
      socket.destroy();
      if (err instanceof LeaseExpiredError) {
        this.fenced = err;
        this.fail(err);
      }
      throw err;
    });
    this.socket = socket;
    this.writer = writer;
    this.node = welcome.node;
    this.clientId = welcome.clientId;
    this.leaseMs = welcome.leaseMs;
    this.geometry = welcome.geometry;
    this.heapClassSizes = welcome.heapClassSizes;
    this.maxPayload = welcome.maxFrameBytes - HEADER_BYTES - 64;
  }

  /** The connection is gone: fail what was in flight; the next call resumes. */
  private lost(): void {
    this.socket = null;
    this.writer = null;
    this.fail(new TransportUnavailableError(`${this.url}: connection lost; a request in flight may or may not have run`));
  }

  private fail(err: unknown): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) p.reject(err);
  }

  /** One reply; its payload is `p[o .. e)`. */
  private reply(st: number, id: number, p: Buffer, o: number, e: number): void {
    const w = this.pending.get(id);
    if (w === undefined) throw new ProtocolError(`reply to unknown request ${id}`);
    this.pending.delete(id);
    if (st !== ST_OK) {
      const d = decodeError(p.subarray(o, e));
      const err = remoteError(d.code, d.message);
      if (err instanceof LeaseExpiredError) { this.fenced = err; clearInterval(this.pingTimer); }
      w.reject(err);
      return;
    }
    switch (w.kind) {
      case Kind.Void: w.resolve(undefined as never); return;
      case Kind.Number: w.resolve(p.readDoubleLE(o) as never); return;
      case Kind.Word: w.resolve(p.readBigInt64LE(o) as never); return;
      case Kind.Bytes: w.resolve(p.subarray(o, e) as never); return;
      case Kind.Json: w.resolve(JSON.parse(p.toString('utf8', o, e)) as never); return;
      case Kind.Region:
        w.resolve(this.region(p.readUInt32LE(o), { name: w.name!, gaddr: p.readDoubleLE(o + 4), bytes: p.readDoubleLE(o + 12) }) as never);
    }
  }

}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
