/**
 * The one-sided ofi transport (../shared/DESIGN.md, "Two ways to run the
 * core", 1): the Wasm core runs in this client and reaches the memory
 * node's registered pool with RDMA operations through libfabric:
 *
 *   load64, read   -> fi_read
 *   store64, write -> fi_write (FI_DELIVERY_COMPLETE when the provider offers it)
 *   cas64          -> fi_compare_atomic (FI_CSWAP, FI_UINT64)
 *   faa64          -> fi_fetch_atomic   (FI_SUM,   FI_UINT64)
 *
 * Every call posts one operation and polls the completion queue until it
 * completes, so the transport is synchronous like shared memory and the
 * core drives it through the same imports. The memory node's CPU does no
 * per-allocation work (its provider may, below the API: ofi_rxm over tcp
 * emulates RMA and atomics in the target's progress thread).
 *
 * Ordering argument: one operation is in flight at a time, and the next is
 * posted only after the previous one's completion was read. With
 * FI_DELIVERY_COMPLETE a write's completion means its data is in the pool,
 * so "write data, then CAS to publish" keeps its order for every other
 * client; without it (providers that refuse the flag) the writes and the
 * CAS still travel in order on the one connection to the target, whose
 * progress applies them in order (tcp and sockets both do).
 *
 * Buffers: operands, results, bulk staging and the operation context live
 * in one malloc'd block (ofi.ts, NativeBuffer), since the fabric reads and
 * writes them after the posting call returned; bulk transfers are copied
 * through a 1 MiB staging area (or the provider's max message size, if
 * smaller), one operation per piece.
 *
 * Failure: an error completion, a failed post, or no completion within
 * `opTimeoutMs` leaves an operation of unknown fate in the provider, so the
 * transport marks itself broken and every later call throws the same
 * TransportFailedError. That is also what a client sees after the memory
 * node cut its key (fencing): atomics and reads fail, and writes never land.
 */
import { connect, type Socket } from 'node:net';
import { InvalidArgumentError, TransportUnavailableError, VersionMismatchError } from '../../src/errors.js';
import { LAYOUT_VERSION } from '../../src/core.js';
import { Pool, ownTransport, type PoolOptions } from '../../src/pool.js';
import type { Transport } from '../../src/transport.js';
import { AuthFailedError, TransportFailedError } from './errors.js';
import { BOOTSTRAP_VERSION, readLines, sendLine, type BootstrapInfo } from './bootstrap.js';
import { OfiEndpoint } from './endpoint.js';
import {
  FI_CSWAP, FI_EAGAIN, FI_EAVAIL, FI_SUM, FI_UINT64, PROVIDERS as PROVIDER_NAMES, fiError, nativeBuffer, providerString,
  type KFunc, type NativeBuffer,
} from './ofi.js';

/** Byte offsets in the operation block. */
const OPERAND = 0;
const COMPARE = 8;
const RESULT = 16;
const CONTEXT = 64;
const CQ_ENTRY = 128;
const ERR_ENTRY = 192;
const STAGE = 512;
/** Bulk staging bytes per operation (1 MiB). */
export const STAGE_BYTES = 1 << 20;
/** Default time an operation may take before the transport gives up on it (ms). */
export const DEFAULT_OP_TIMEOUT_MS = 10_000;

/** Where a one-sided client finds the pool: filled in from the bootstrap. */
export interface OfiTarget {
  prov: string;
  /** Host the client reaches the server on (for fi_getinfo). */
  host: string;
  addr: Uint8Array;
  key: bigint;
  base: number;
  size: number;
  maxMsgSize: number;
}

/** See the file comment. */
export class OfiTransport implements Transport {
  readonly kind = 'ofi';
  readonly size: number;
  readonly ep: OfiEndpoint;
  /** Where the pool is (the bootstrap's answer): a C peer can use the same key (bench/peers/ofi_client.c). */
  readonly target: OfiTarget;
  private readonly peer: bigint;
  private readonly key: bigint;
  private readonly base: number;
  private readonly piece: number;
  private readonly opTimeoutMs: number;
  private readonly blk: NativeBuffer;
  private readonly p: { operand: bigint; compare: bigint; result: bigint; ctx: bigint; entry: bigint; err: bigint; stage: bigint };
  private readonly fread: KFunc;
  private readonly fwrite: KFunc;
  private readonly fcas: KFunc;
  private readonly ffaa: KFunc;
  private readonly cqRead: KFunc;
  private readonly epPtr: bigint;
  private readonly cqPtr: bigint;
  private broken: TransportFailedError | null = null;
  private closed = false;
  private onClose: (() => void) | null;

  /**
   * Opens an endpoint on `t.prov` and resolves the memory node's address.
   * @throws TransportUnavailableError (libfabric or the provider missing, address refused)
   */
  constructor(t: OfiTarget, opts: { opTimeoutMs?: number; onClose?: () => void } = {}) {
    this.ep = OfiEndpoint.open({ prov: t.prov, node: t.host, server: false });
    try {
      this.peer = this.ep.insert(t.addr);
      this.blk = nativeBuffer(this.ep.o, STAGE + STAGE_BYTES);
    } catch (e) {
      this.ep.close();
      throw e;
    }
    const b = this.blk.ptr;
    this.p = {
      operand: b + BigInt(OPERAND), compare: b + BigInt(COMPARE), result: b + BigInt(RESULT), ctx: b + BigInt(CONTEXT),
      entry: b + BigInt(CQ_ENTRY), err: b + BigInt(ERR_ENTRY), stage: b + BigInt(STAGE),
    };
    this.target = t;
    this.size = t.size;
    this.key = t.key;
    this.base = t.base;
    this.piece = Math.max(8, Math.min(STAGE_BYTES, t.maxMsgSize, this.ep.facts.maxMsgSize));
    this.opTimeoutMs = opts.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
    this.onClose = opts.onClose ?? null;
    this.fread = this.ep.read;
    this.fwrite = this.ep.write;
    this.fcas = this.ep.compareAtomic;
    this.ffaa = this.ep.fetchAtomic;
    this.cqRead = this.ep.cqRead;
    this.epPtr = this.ep.ep;
    this.cqPtr = this.ep.cq;
  }

  load64(offset: number): bigint {
    this.check(offset, 8);
    this.post(0, offset, 8, this.p.result);
    return this.blk.data.getBigInt64(RESULT, true);
  }

  store64(offset: number, value: bigint): void {
    this.check(offset, 8);
    this.blk.data.setBigInt64(OPERAND, value, true);
    this.post(1, offset, 8, this.p.operand);
  }

  cas64(offset: number, expected: bigint, desired: bigint): bigint {
    this.check(offset, 8);
    this.blk.data.setBigInt64(OPERAND, desired, true);
    this.blk.data.setBigInt64(COMPARE, expected, true);
    this.post(2, offset, 1, 0n);
    return this.blk.data.getBigInt64(RESULT, true);
  }

  faa64(offset: number, delta: bigint): bigint {
    this.check(offset, 8);
    this.blk.data.setBigInt64(OPERAND, delta, true);
    this.post(3, offset, 1, 0n);
    return this.blk.data.getBigInt64(RESULT, true);
  }

  read(offset: number, dst: Uint8Array): void {
    this.check(offset, dst.length);
    for (let done = 0; done < dst.length; done += this.piece) {
      const n = Math.min(this.piece, dst.length - done);
      this.post(0, offset + done, n, this.p.stage);
      dst.set(this.blk.view.subarray(STAGE, STAGE + n), done);
    }
  }

  write(offset: number, src: Uint8Array): void {
    this.check(offset, src.length);
    for (let done = 0; done < src.length; done += this.piece) {
      const n = Math.min(this.piece, src.length - done);
      this.blk.view.set(src.subarray(done, done + n), STAGE);
      this.post(1, offset + done, n, this.p.stage);
    }
  }

  /** Closes the endpoint and the bootstrap connection; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.broken ??= new TransportFailedError('ofi transport is closed', 0);
    try {
      this.ep.close();
      this.ep.o.free(this.blk.ptr);
    } finally {
      this.onClose?.();
      this.onClose = null;
    }
  }

  private check(offset: number, length: number): void {
    if (this.broken !== null) throw this.broken;
    if (!(offset >= 0 && offset + length <= this.size)) {
      throw new InvalidArgumentError(`ofi: ${length} B at offset ${offset} is outside the ${this.size} B pool`);
    }
  }

  /**
   * Posts one operation (0 read, 1 write, 2 CAS, 3 FAA) and waits for its
   * completion. `buf` is the local buffer for read/write.
   */
  private post(op: number, offset: number, len: number, buf: bigint): void {
    const addr = this.base + offset;
    const deadline = Date.now() + this.opTimeoutMs;
    let spins = 0;
    for (;;) {
      let rc: number;
      switch (op) {
        case 0: rc = this.fread(this.epPtr, buf, len, null, this.peer, addr, this.key, this.p.ctx) as number; break;
        case 1: rc = this.fwrite(this.epPtr, buf, len, null, this.peer, addr, this.key, this.p.ctx) as number; break;
        case 2: rc = this.fcas(this.epPtr, this.p.operand, 1, null, this.p.compare, null, this.p.result, null, this.peer, addr, this.key, FI_UINT64, FI_CSWAP, this.p.ctx) as number; break;
        default: rc = this.ffaa(this.epPtr, this.p.operand, 1, null, this.p.result, null, this.peer, addr, this.key, FI_UINT64, FI_SUM, this.p.ctx) as number; break;
      }
      if (rc === 0) break;
      if (rc !== -FI_EAGAIN) this.fail(`posting ${OP_NAMES[op]} of ${len} B at offset ${offset} failed: ${fiError(this.ep.o, -rc)}`, -rc);
      // The provider's queue is full or it is connecting: progress it and retry.
      const n = this.cqRead(this.cqPtr, this.p.entry, 1) as number;
      if (n !== -FI_EAGAIN) this.completionError(n, op, offset, len);
      if ((++spins & 1023) === 0 && Date.now() > deadline) this.fail(`${OP_NAMES[op]} at offset ${offset} could not be posted within ${this.opTimeoutMs} ms`, 0);
    }
    spins = 0;
    for (;;) {
      const n = this.cqRead(this.cqPtr, this.p.entry, 1) as number;
      if (n === 1) return;
      if (n !== -FI_EAGAIN) this.completionError(n, op, offset, len);
      if ((++spins & 1023) === 0 && Date.now() > deadline) {
        this.fail(`${OP_NAMES[op]} of ${len} B at offset ${offset} did not complete within ${this.opTimeoutMs} ms: the memory node is unreachable, stopped, or cut this client off (its key was revoked)`, 0);
      }
    }
  }

  private completionError(n: number, op: number, offset: number, len: number): never {
    if (n === -FI_EAVAIL) {
      const o = this.ep.o;
      this.ep.cqReadErr(this.cqPtr, this.p.err, 0n);
      const err = o.koffi.decode(this.p.err, o.koffi.offsetof(o.t.fi_cq_err_entry, 'err'), 'int') as number;
      this.fail(`${OP_NAMES[op]} of ${len} B at offset ${offset} failed at the memory node: ${fiError(o, err)} (the node may have revoked this client's key)`, err);
    }
    this.fail(`reading the completion queue failed: ${fiError(this.ep.o, -n)}`, -n);
  }

  private fail(message: string, errno: number): never {
    this.broken = new TransportFailedError(`ofi: ${message}`, errno);
    throw this.broken;
  }
}

const OP_NAMES = ['fi_read', 'fi_write', 'fi_compare_atomic', 'fi_fetch_atomic'];

/** A parsed `ofi+PROVIDER://HOST:PORT` URI. */
export interface OfiUri {
  /** URI provider name (`tcp`). */
  name: string;
  /** libfabric provider string (`tcp;ofi_rxm`). */
  prov: string;
  host: string;
  port: number;
}

/**
 * Parses `ofi+tcp://HOST:PORT`, `ofi+sockets://HOST:PORT` (IPv6 hosts in
 * brackets). The port is the memory node's bootstrap listen port.
 * @throws InvalidArgumentError naming the expected form
 */
export function parseOfiUri(uri: string): OfiUri {
  const m = /^ofi\+([a-z0-9_;]+):\/\/(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})\/?$/.exec(uri);
  if (m === null) throw new InvalidArgumentError(`"${uri}" is not an ofi URI: write ofi+tcp://HOST:PORT or ofi+sockets://HOST:PORT`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new InvalidArgumentError(`"${uri}": port must be 1..65535`);
  return { name: m[1], prov: providerString(m[1]), host: m[2].replace(/^\[|\]$/g, ''), port };
}

/** Options of `openOfiPool`: the Pool's, plus the bootstrap token. */
export interface OfiPoolOptions extends PoolOptions {
  /** The memory node's token (the contents of its --token-file). */
  token: string;
  /** Bootstrap connect and reply timeout (ms, default 5000). */
  connectTimeoutMs?: number;
  /** How long one RDMA operation may take before the transport gives up (ms, default 10000). */
  opTimeoutMs?: number;
}

/**
 * Connects to a memory node served by `dmem server --transport ofi`,
 * authenticates, opens a libfabric endpoint to its registered pool and
 * attaches a Pool that runs the allocator here, one-sided (FineMem). The
 * bootstrap connection stays open: the server cuts this client's key when
 * it closes. `pool.close()` also closes the transport and the connection.
 * @param uri `ofi+tcp://HOST:PORT` or `ofi+sockets://HOST:PORT`
 * @throws InvalidArgumentError (bad URI), AuthFailedError (wrong token),
 *   TransportUnavailableError (connection refused, libfabric or provider
 *   missing, provider mismatch), VersionMismatchError, ClientTableFullError
 */
export async function openOfiPool(uri: string, opts: OfiPoolOptions): Promise<Pool> {
  const u = parseOfiUri(uri);
  if (typeof opts.token !== 'string' || opts.token === '') throw new InvalidArgumentError('openOfiPool needs { token } (the memory node\'s --token-file contents)');
  const { sock, info } = await bootstrap(u, opts.token, opts.connectTimeoutMs ?? 5000);
  let transport: OfiTransport | null = null;
  try {
    if (info.provider !== u.prov) {
      throw new TransportUnavailableError(`${uri}: the memory node serves provider "${info.provider}", the URI asks for "${u.prov}": use ofi+${Object.keys(PROVIDER_NAMES).find((k) => PROVIDER_NAMES[k] === info.provider) ?? info.provider}://`);
    }
    if (info.layoutVersion !== LAYOUT_VERSION) {
      throw new VersionMismatchError(`${uri}: the memory node's pool has layout version ${info.layoutVersion}, this build reads ${LAYOUT_VERSION}`);
    }
    transport = new OfiTransport({
      prov: info.provider, host: u.host, addr: Buffer.from(info.addr, 'base64'), key: BigInt(info.key), base: info.base,
      size: info.size, maxMsgSize: info.maxMsgSize,
    }, { opTimeoutMs: opts.opTimeoutMs, onClose: () => sock.destroy() });
    const pool = Pool.attach(transport, { ...opts, create: false });
    sendLine(sock, { client: pool.clientId, gen: pool.clientSlot(pool.clientId).gen });
    // The pool owns the transport (closing it closes the bootstrap
    // connection too); a transport failure under the idle heartbeat stops
    // the timer only (src/lease.ts), and the next call throws it.
    return ownTransport(pool);
  } catch (e) {
    if (transport !== null) transport.close();
    sock.destroy();
    throw e;
  }
}


/** Connects, sends the token, and waits for the server's reply. */
function bootstrap(u: OfiUri, token: string, timeoutMs: number): Promise<{ sock: Socket; info: BootstrapInfo }> {
  return new Promise((resolve, reject) => {
    const where = `${u.host}:${u.port}`;
    const sock = connect({ host: u.host, port: u.port });
    let settled = false;
    const done = (err: Error | null, info?: BootstrapInfo): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== null) { sock.destroy(); reject(err); return; }
      sock.unref();
      resolve({ sock, info: info! });
    };
    const timer = setTimeout(() => done(new TransportUnavailableError(`ofi bootstrap with ${where} timed out after ${timeoutMs} ms: is \`dmem server --transport ofi --listen ${where}\` running?`)), timeoutMs);
    sock.once('error', (e: NodeJS.ErrnoException) => done(new TransportUnavailableError(
      e.code === 'ECONNREFUSED' ? `connection refused by ${where}: start \`dmem server --transport ofi --listen ${where}\` there, or check the port` : `ofi bootstrap with ${where} failed: ${e.message}`,
      { cause: e },
    )));
    sock.once('close', () => done(new TransportUnavailableError(`${where} closed the bootstrap connection before replying`)));
    sock.once('connect', () => sendLine(sock, { v: BOOTSTRAP_VERSION, token }));
    readLines(sock, (msg) => {
      const err = msg.error as { code?: unknown; message?: unknown } | undefined;
      if (err !== undefined) {
        const text = `${where}: ${typeof err.message === 'string' ? err.message : 'refused'}`;
        done(err.code === 'AUTH_FAILED' ? new AuthFailedError(text) : new TransportUnavailableError(text));
        return;
      }
      const ok = typeof msg.provider === 'string' && typeof msg.addr === 'string' && typeof msg.key === 'string' && /^\d{1,20}$/.test(msg.key)
        && Number.isSafeInteger(msg.base) && Number.isSafeInteger(msg.size) && Number.isSafeInteger(msg.layoutVersion) && Number.isSafeInteger(msg.maxMsgSize);
      if (!ok) { done(new TransportUnavailableError(`${where} sent a malformed bootstrap reply: is it a dmem ofi server?`)); return; }
      done(null, msg as unknown as BootstrapInfo);
    }, (why) => done(new TransportUnavailableError(`${where} sent a bad bootstrap line (${why}): is it a dmem ofi server?`)));
  });
}
