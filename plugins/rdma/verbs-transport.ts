/**
 * The client side of the verbs transport: `openVerbsPool('verbs://HOST:PORT',
 * { token })` runs the allocator here, one-sided (FineMem), over one RC
 * queue pair to the memory node (verbs-server.ts):
 *
 *   load64, read   -> IBV_WR_RDMA_READ
 *   store64, write -> IBV_WR_RDMA_WRITE
 *   cas64          -> IBV_WR_ATOMIC_CMP_AND_SWP
 *   faa64          -> IBV_WR_ATOMIC_FETCH_AND_ADD
 *
 * every work request signaled, one in flight, its completion polled on the
 * send CQ (ibv_post_send and ibv_poll_cq through the context's ops table,
 * verbs.ts). Ordering: an RC QP executes its requests in order and a
 * completion of an RDMA WRITE means the responder acknowledged it, i.e.
 * the data was placed in the memory node's memory, so each step of the core
 * sees the previous one landed (the property the ofi transport gets from
 * FI_DELIVERY_COMPLETE).
 *
 * Local buffers must be registered with verbs: one calloc'd block holds
 * the operand and result words, the work request, SGE and completion, and a
 * 1 MiB staging area for bulk reads and writes; it is registered once
 * (IBV_ACCESS_LOCAL_WRITE) and its lkey goes in every SGE. Nothing is
 * allocated per operation and no BigInt is made except the 64-bit values
 * the Transport interface itself carries (remote addresses are written as
 * two 32-bit halves: the memory node's address plus an offset stays below
 * 2^53).
 *
 * Atomic results. The verbs API gives the 64-bit operands in host order,
 * but some HCAs write the original value of an atomic back big-endian
 * (Mellanox's experimental verbs called that IBV_EXP_ATOMIC_HCA_REPLY_BE).
 * Right after connecting, the client reads word 0 of the pool (the
 * superblock magic, which nothing writes after formatting) with an RDMA
 * READ and fetches it again with FETCH_AND_ADD of 0: equal means host
 * order, byte-swapped means the device replies big-endian, and the client
 * reads every atomic result that way; anything else refuses the device.
 *
 * Setup: the TCP bootstrap (token) of bootstrap.ts's protocol with a verbs
 * reply (ticket, rdma_cm port), then rdma_cm on the same host:
 * rdma_resolve_addr -> rdma_resolve_route -> ibv_alloc_pd, ibv_reg_mr of the
 * local block, rdma_create_qp (RC; rdma_cm creates its CQs) -> rdma_connect
 * with the ticket as private data. The server answers with this client's
 * own registration of the pool (address and rkey) on the bootstrap
 * connection and accepts. The bootstrap connection stays open as the
 * client's liveness signal, as for ofi.
 *
 * Failure: a completion with an error status, a failed post, or no
 * completion within `opTimeoutMs` breaks the transport for good (the QP is
 * in the error state): every later call throws VerbsOpError
 * (TRANSPORT_FAILED). That is what a fenced client sees: the memory node
 * moved its QP to the error state and deregistered its MR (docs/rdma.md).
 *
 * None of the data path has run on RDMA hardware in this repository's tests
 * (the development machine has no RDMA device): see docs/rdma.md, "verbs".
 */
import { lookup } from 'node:dns/promises';
import { connect, isIP, type Socket } from 'node:net';
import { InvalidArgumentError, TransportUnavailableError, VersionMismatchError } from '../../src/errors.js';
import { LAYOUT_VERSION } from '../../src/core.js';
import { Pool, ownTransport, type PoolOptions } from '../../src/pool.js';
import type { Transport } from '../../src/transport.js';
import { BOOTSTRAP_VERSION, readLines, sendLine } from './bootstrap.js';
import { AuthFailedError } from './errors.js';
import { CmChannel, idPtr, type CmEvent } from './verbs-cm.js';
import { StagedTransport } from './staged-transport.js';
import { offsetOfPath } from './verbs-layout.js';
import { VerbsOpError, VerbsUnavailableError, type VerbsMissing } from './verbs-errors.js';
import {
  IBV_ACCESS_LOCAL_WRITE, IBV_ATOMIC_NONE, IBV_QPT_RC, IBV_SEND_SIGNALED, IBV_WR_ATOMIC_CMP_AND_SWP, IBV_WR_ATOMIC_FETCH_AND_ADD,
  IBV_WR_RDMA_READ, IBV_WR_RDMA_WRITE, RDMA_CM_EVENT, RDMA_PS_TCP, contextOp, errnoText, loadVerbs, nativeBlock, rdmaDevices,
  writeSockaddr, type KFunc, type NativeBlock, type Verbs, type VerbsLibNames,
} from './verbs.js';

/**
 * Byte offsets in the registered block (one calloc'd block, registered
 * once with IBV_ACCESS_LOCAL_WRITE; the constructor checks that ibv_send_wr
 * and ibv_wc fit their room):
 *
 *   0 OPERAND (u64) | 8 RESULT (u64) | 64 SGE (ibv_sge) | 128 WR (ibv_send_wr) | 384 BAD_WR (pointer)
 *   448 WC (ibv_wc) | 512 PARAM (rdma_conn_param) | 576 PDATA (the ticket) | 640 QP_INIT (ibv_qp_init_attr)
 *   1024 SOCKADDR | 1536 DEV_ATTR (ibv_device_attr) | 4096 STAGE (VERBS_STAGE_BYTES of bulk staging)
 */
const OPERAND = 0, RESULT = 8, SGE = 64, WR = 128, BAD_WR = 384;
const WC = 448, PARAM = 512, PDATA = 576, QP_INIT = 640;
const SOCKADDR = 1024, DEV_ATTR = 1536, STAGE = 4096;
/** Bulk staging bytes per work request (1 MiB). */
export const VERBS_STAGE_BYTES = 1 << 20;
/** Default time one work request may take before the transport gives up (ms). */
export const DEFAULT_VERBS_OP_TIMEOUT_MS = 10_000;
/** Bytes of the connection ticket (rdma_connect private data). */
export const TICKET_BYTES = 16;
/** Outstanding RDMA READs / atomics this client asks the memory node to accept (one is in flight at a time). */
const RD_ATOMIC = 1;

/** The pieces of a connected client, handed to VerbsTransport. */
interface Connected {
  v: Verbs;
  ch: CmChannel;
  id: bigint;
  pd: bigint;
  mr: bigint;
  blk: NativeBlock;
  rkey: number;
  /** Remote address of pool offset 0. */
  base: number;
  size: number;
  device: string;
}

/** See the file comment (bulk read/write, the bounds check and close: StagedTransport). */
export class VerbsTransport extends StagedTransport<VerbsOpError> implements Transport {
  readonly kind = 'verbs';
  /** The RDMA device the QP runs on. */
  readonly device: string;
  /** True when the device writes atomic results big-endian (see the file comment). */
  readonly atomicReplyBigEndian: boolean;
  private readonly c: Connected;
  private readonly d: DataView;
  protected readonly piece = VERBS_STAGE_BYTES;
  protected readonly stage: Uint8Array;
  private readonly postSend: KFunc;
  private readonly pollCq: KFunc;
  private readonly qp: bigint;
  private readonly cq: bigint;
  private readonly wr: bigint;
  private readonly badWr: bigint;
  private readonly wc: bigint;
  private readonly blkAddr: number;
  private readonly base: number;
  private readonly opTimeoutMs: number;
  private readonly o: { opcode: number; flags: number; remote: number; sgeAddr: number; sgeLen: number; compare: number; swap: number; status: number; rdmaRkey: number };
  private readonly rkey: number;
  private replyLE = true;

  /** @throws VerbsUnavailableError when the provider lacks post_send/poll_cq, or its atomics return garbage */
  constructor(c: Connected, opts: { opTimeoutMs?: number; onClose?: () => void } = {}) {
    super('verbs', c.size, opts.onClose);
    const { v } = c;
    const k = v.koffi;
    const t = v.t;
    this.c = c;
    this.device = c.device;
    this.base = c.base;
    this.d = c.blk.data;
    this.stage = c.blk.view.subarray(STAGE, STAGE + VERBS_STAGE_BYTES);
    this.blkAddr = c.blk.addr;
    this.opTimeoutMs = opts.opTimeoutMs ?? DEFAULT_VERBS_OP_TIMEOUT_MS;
    this.qp = idPtr(v, c.id, 'qp');
    this.cq = idPtr(v, c.id, 'send_cq');
    this.postSend = contextOp(v, this.qp, 'post_send');
    this.pollCq = contextOp(v, this.cq, 'poll_cq');
    this.wr = c.blk.ptr + BigInt(WR);
    this.badWr = c.blk.ptr + BigInt(BAD_WR);
    this.wc = c.blk.ptr + BigInt(WC);
    const wrT = t.ibv_send_wr;
    const at = (path: string): number => WR + offsetOfPath(k, wrT, path);
    this.o = {
      opcode: WR + k.offsetof(wrT, 'opcode'),
      flags: WR + k.offsetof(wrT, 'send_flags'),
      remote: at('wr.atomic.remote_addr'),
      sgeAddr: SGE + k.offsetof(t.ibv_sge, 'addr'),
      sgeLen: SGE + k.offsetof(t.ibv_sge, 'length'),
      compare: at('wr.atomic.compare_add'),
      swap: at('wr.atomic.swap'),
      status: WC + k.offsetof(t.ibv_wc, 'status'),
      rdmaRkey: at('wr.rdma.rkey'),
    };
    if (k.sizeof(wrT) > BAD_WR - WR || k.sizeof(t.ibv_wc) > PARAM - WC) throw new VerbsUnavailableError('library', 'ibv_send_wr or ibv_wc is larger than the verbs transport reserves');
    // The constant parts of the one work request: one SGE, signaled, no chain.
    const lkey = k.decode(c.mr, k.offsetof(t.ibv_mr, 'lkey'), 'uint32_t') as number;
    this.d.setUint32(SGE + k.offsetof(t.ibv_sge, 'lkey'), lkey, true);
    k.encode(this.wr, k.offsetof(wrT, 'sg_list'), 'void *', c.blk.ptr + BigInt(SGE));
    this.d.setInt32(WR + k.offsetof(wrT, 'num_sge'), 1, true);
    this.d.setUint32(this.o.flags, IBV_SEND_SIGNALED, true);
    // rdma.remote_addr and atomic.remote_addr are the same bytes (offset 0 of both). The rkeys are not:
    // rdma.rkey shares its bytes with atomic.compare_add, so `post` rewrites it for every READ and WRITE;
    // atomic.rkey (after swap) is written once.
    if (at('wr.rdma.remote_addr') !== this.o.remote) throw new VerbsUnavailableError('library', 'unexpected ibv_send_wr union layout');
    this.rkey = c.rkey;
    this.d.setUint32(at('wr.atomic.rkey'), c.rkey, true);
    this.atomicReplyBigEndian = this.probeAtomicOrder();
  }

  load64(offset: number): bigint {
    this.check(offset, 8);
    this.post(IBV_WR_RDMA_READ, offset, 8, RESULT);
    return this.d.getBigInt64(RESULT, true);
  }

  store64(offset: number, value: bigint): void {
    this.check(offset, 8);
    this.d.setBigInt64(OPERAND, value, true);
    this.post(IBV_WR_RDMA_WRITE, offset, 8, OPERAND);
  }

  cas64(offset: number, expected: bigint, desired: bigint): bigint {
    this.check(offset, 8);
    this.d.setBigInt64(this.o.compare, expected, true);
    this.d.setBigInt64(this.o.swap, desired, true);
    this.post(IBV_WR_ATOMIC_CMP_AND_SWP, offset, 8, RESULT);
    return this.d.getBigInt64(RESULT, this.replyLE);
  }

  faa64(offset: number, delta: bigint): bigint {
    this.check(offset, 8);
    this.d.setBigInt64(this.o.compare, delta, true);
    this.post(IBV_WR_ATOMIC_FETCH_AND_ADD, offset, 8, RESULT);
    return this.d.getBigInt64(RESULT, this.replyLE);
  }

  /** RDMA READ of `n` bytes into the staging area (StagedTransport.read). */
  protected readStage(offset: number, n: number): void {
    this.post(IBV_WR_RDMA_READ, offset, n, STAGE);
  }

  /** RDMA WRITE of the staging area's first `n` bytes (StagedTransport.write). */
  protected writeStage(offset: number, n: number): void {
    this.post(IBV_WR_RDMA_WRITE, offset, n, STAGE);
  }

  /** Tears the connection down (QP, id, MR, PD, channel); StagedTransport.close then closes the bootstrap connection. */
  protected shutdown(): void {
    this.broken ??= new VerbsOpError('verbs transport is closed', -1);
    teardown(this.c);
  }

  /** Posts one signaled work request on local bytes [local, local+len) of the block and waits for its completion. */
  private post(opcode: number, offset: number, len: number, local: number): void {
    const d = this.d;
    const remote = this.base + offset;
    const addr = this.blkAddr + local;
    d.setUint32(this.o.opcode, opcode, true);
    if (opcode === IBV_WR_RDMA_READ || opcode === IBV_WR_RDMA_WRITE) d.setUint32(this.o.rdmaRkey, this.rkey, true);
    d.setUint32(this.o.remote, remote % 0x1_0000_0000, true);
    d.setUint32(this.o.remote + 4, Math.floor(remote / 0x1_0000_0000), true);
    d.setUint32(this.o.sgeAddr, addr % 0x1_0000_0000, true);
    d.setUint32(this.o.sgeAddr + 4, Math.floor(addr / 0x1_0000_0000), true);
    d.setUint32(this.o.sgeLen, len, true);
    const rc = this.postSend(this.qp, this.wr, this.badWr) as number;
    if (rc !== 0) this.fail(`ibv_post_send of ${OP_NAMES[opcode]} (${len} B at offset ${offset}) failed: ${errnoText(this.c.v, rc)}`, -1);
    const deadline = Date.now() + this.opTimeoutMs;
    let spins = 0;
    for (;;) {
      const n = this.pollCq(this.cq, 1, this.wc) as number;
      if (n === 1) {
        const status = d.getInt32(this.o.status, true);
        if (status === 0) return;
        this.fail(`${OP_NAMES[opcode]} of ${len} B at offset ${offset} failed: ${this.c.v.wcStatusStr(status)} (status ${status}; the memory node may have cut this client off)`, status);
      }
      if (n < 0) this.fail(`ibv_poll_cq failed (${n})`, -1);
      if ((++spins & 1023) === 0 && Date.now() > deadline) {
        this.fail(`${OP_NAMES[opcode]} of ${len} B at offset ${offset} did not complete within ${this.opTimeoutMs} ms: the memory node is unreachable, stopped, or cut this client off`, -1);
      }
    }
  }

  /** Reads word 0 by RDMA READ and by FETCH_AND_ADD 0; returns true when atomic results come back big-endian. */
  private probeAtomicOrder(): boolean {
    const plain = this.load64(0);
    this.d.setBigInt64(this.o.compare, 0n, true);
    this.post(IBV_WR_ATOMIC_FETCH_AND_ADD, 0, 8, RESULT);
    if (this.d.getBigInt64(RESULT, true) === plain) return false;
    if (this.d.getBigInt64(RESULT, false) === plain) { this.replyLE = false; return true; }
    throw new VerbsUnavailableError('atomics', `RDMA device ${this.device}: FETCH_AND_ADD of 0 on the superblock returned neither its value nor its byte swap: this device's atomics cannot be used`);
  }

  private fail(message: string, status: number): never {
    this.broken = new VerbsOpError(`verbs: ${message}`, status);
    throw this.broken;
  }
}

const OP_NAMES: Record<number, string> = {
  [IBV_WR_RDMA_WRITE]: 'RDMA WRITE', [IBV_WR_RDMA_READ]: 'RDMA READ',
  [IBV_WR_ATOMIC_CMP_AND_SWP]: 'ATOMIC CMP_AND_SWP', [IBV_WR_ATOMIC_FETCH_AND_ADD]: 'ATOMIC FETCH_AND_ADD',
};

/** Destroys what `connectCm` made, in reverse order; each step tolerates an absent piece. */
function teardown(c: Partial<Connected> & { v: Verbs; ch: CmChannel }): void {
  const { v } = c;
  if (c.id !== undefined && c.id !== 0n) {
    if (idPtr(v, c.id, 'qp') !== 0n) {
      v.disconnect(c.id);
      v.destroyQp(c.id);
    }
    v.destroyId(c.id);
  }
  if (c.mr !== undefined && c.mr !== 0n) v.deregMr(c.mr);
  if (c.pd !== undefined && c.pd !== 0n) v.deallocPd(c.pd);
  if (c.blk !== undefined) v.free(c.blk.ptr);
  c.ch.close();
}

/** A parsed `verbs://HOST:PORT`. */
export interface VerbsUri {
  host: string;
  port: number;
}

/** Parses `verbs://HOST:PORT` (IPv6 in brackets); PORT is the memory node's bootstrap port. @throws InvalidArgumentError */
export function parseVerbsUri(uri: string): VerbsUri {
  const m = /^verbs:\/\/(\[[0-9a-fA-F:.]+\]|[^:/\s[\]]+):(\d{1,5})\/?$/.exec(uri);
  if (m === null) throw new InvalidArgumentError(`"${uri}" is not a verbs URI: write verbs://HOST:PORT (the memory node's --listen address)`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new InvalidArgumentError(`"${uri}": port must be 1..65535`);
  return { host: m[1].replace(/^\[|\]$/g, ''), port };
}

/** Options of `openVerbsPool`: the Pool's, plus the bootstrap token. */
export interface VerbsPoolOptions extends PoolOptions {
  /** The memory node's token (the contents of its --token-file). */
  token: string;
  /** Bootstrap and rdma_cm connection timeout (ms, default 5000). */
  connectTimeoutMs?: number;
  /** How long one work request may take before the transport gives up (ms, default 10000). */
  opTimeoutMs?: number;
  /** Library names (default: $DMEM_LIBIBVERBS or libibverbs.so.1, $DMEM_LIBRDMACM or librdmacm.so.1). */
  libs?: VerbsLibNames;
  /** An implementation of the bindings to use instead of loading rdma-core (tests: test/verbs-soft.ts). */
  verbs?: Verbs;
}

/** What the verbs memory node answers an authenticated hello with. */
export interface VerbsBootstrapInfo {
  v: number;
  transport: 'verbs';
  /** The rdma_cm port to connect to, on the bootstrap host. */
  cmPort: number;
  /** base64 of TICKET_BYTES random bytes: the rdma_connect private data that names this bootstrap connection. */
  ticket: string;
  size: number;
  layoutVersion: number;
}

/**
 * Connects to a memory node served by `dmem server --transport verbs`,
 * authenticates, sets up an RC queue pair to its pool and attaches a Pool
 * that runs the allocator here, one-sided. The libraries are loaded before
 * anything touches the network; the device is looked for after the
 * bootstrap (so a wrong token is reported as such on any host).
 * @param uri `verbs://HOST:PORT`
 * @throws InvalidArgumentError (bad URI, no token), VerbsUnavailableError
 *   (library, device, kernel, address, atomics, the node refused the
 *   connection), TransportUnavailableError (bootstrap connection refused or
 *   timed out, not a verbs node), AuthFailedError (wrong token),
 *   VersionMismatchError, ClientTableFullError
 */
export async function openVerbsPool(uri: string, opts: VerbsPoolOptions): Promise<Pool> {
  const u = parseVerbsUri(uri);
  if (typeof opts.token !== 'string' || opts.token === '') throw new InvalidArgumentError('openVerbsPool needs { token } (the memory node\'s --token-file contents)');
  const v = opts.verbs ?? loadVerbs(opts.libs);
  const timeoutMs = opts.connectTimeoutMs ?? 5000;
  const boot = await bootstrap(u, opts.token, timeoutMs);
  let transport: VerbsTransport | null = null;
  try {
    const { info } = boot;
    if (info.layoutVersion !== LAYOUT_VERSION) {
      throw new VersionMismatchError(`${uri}: the memory node's pool has layout version ${info.layoutVersion}, this build reads ${LAYOUT_VERSION}`);
    }
    const devices = rdmaDevices(v);
    const ip = isIP(u.host) !== 0 ? u.host : (await lookup(u.host)).address;
    const c = await connectCm(v, ip, info, boot, timeoutMs, devices);
    try {
      transport = new VerbsTransport(c, { opTimeoutMs: opts.opTimeoutMs, onClose: () => boot.sock.destroy() });
    } catch (e) {
      teardown(c);
      throw e;
    }
    const pool = Pool.attach(transport, { ...opts, create: false });
    sendLine(boot.sock, { client: pool.clientId, gen: pool.clientSlot(pool.clientId).gen });
    boot.sock.unref();
    return ownTransport(pool);
  } catch (e) {
    if (transport !== null) transport.close();
    boot.sock.destroy();
    throw e;
  }
}

/** The bootstrap connection: the socket and a queue of the lines after the reply. */
interface Boot {
  sock: Socket;
  info: VerbsBootstrapInfo;
  /** Waits for the next line (the server's {mr} line), or rejects on close/timeout. */
  next(timeoutMs: number, what: string): Promise<Record<string, unknown>>;
}

/** Connects, sends the token, and waits for the server's reply. */
function bootstrap(u: VerbsUri, token: string, timeoutMs: number): Promise<Boot> {
  const where = `${u.host}:${u.port}`;
  const sock = connect({ host: u.host, port: u.port });
  sock.setNoDelay(true);
  const lines: Array<Record<string, unknown>> = [];
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const push = (): void => { const w = wake; wake = null; w?.(); };
  sock.once('error', (e: NodeJS.ErrnoException) => {
    failure ??= new TransportUnavailableError(
      e.code === 'ECONNREFUSED' ? `connection refused by ${where}: start \`dmem server --transport verbs --listen ${where}\` there, or check the port` : `verbs bootstrap with ${where} failed: ${e.message}`,
      { cause: e },
    );
    push();
  });
  sock.once('close', () => { failure ??= new TransportUnavailableError(`${where} closed the verbs bootstrap connection`); push(); });
  sock.once('connect', () => sendLine(sock, { v: BOOTSTRAP_VERSION, token }));
  readLines(sock, (msg) => { lines.push(msg); push(); }, (why) => {
    failure ??= new TransportUnavailableError(`${where} sent a bad bootstrap line (${why}): is it a dmem verbs server?`);
    sock.destroy();
    push();
  });
  const next = (ms: number, what: string): Promise<Record<string, unknown>> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => { wake = null; reject(new TransportUnavailableError(`${where}: no ${what} within ${ms} ms: is \`dmem server --transport verbs --listen ${where}\` running?`)); }, ms);
    const look = (): void => {
      const msg = lines.shift();
      if (msg !== undefined) { clearTimeout(timer); resolve(msg); return; }
      if (failure !== null) { clearTimeout(timer); reject(failure); return; }
      wake = look;
    };
    look();
  });
  return next(timeoutMs, 'bootstrap reply').then((msg) => {
    const err = msg.error as { code?: unknown; message?: unknown } | undefined;
    if (err !== undefined) {
      const text = `${where}: ${typeof err.message === 'string' ? err.message : 'refused'}`;
      throw err.code === 'AUTH_FAILED' ? new AuthFailedError(text) : new TransportUnavailableError(text);
    }
    if (typeof msg.provider === 'string') {
      throw new TransportUnavailableError(`${where} is an ofi memory node (provider ${msg.provider}), not a verbs one: use ofi+PROVIDER://${where}`);
    }
    const ok = msg.transport === 'verbs' && Number.isInteger(msg.cmPort) && (msg.cmPort as number) > 0 && (msg.cmPort as number) < 65536
      && typeof msg.ticket === 'string' && Buffer.from(msg.ticket, 'base64').length === TICKET_BYTES
      && Number.isSafeInteger(msg.size) && (msg.size as number) > 0 && Number.isSafeInteger(msg.layoutVersion);
    if (!ok) throw new TransportUnavailableError(`${where} sent a malformed bootstrap reply: is it a dmem verbs server?`);
    return { sock, info: msg as unknown as VerbsBootstrapInfo, next };
  }).catch((e: unknown) => { sock.destroy(); throw e; });
}

/** Sets up the RC connection (see the file comment). */
async function connectCm(v: Verbs, ip: string, info: VerbsBootstrapInfo, boot: Boot, timeoutMs: number, devices: string[]): Promise<Connected> {
  const k = v.koffi;
  const t = v.t;
  const where = `${ip}:${info.cmPort}`;
  const ch = CmChannel.open(v);
  const c: Partial<Connected> & { v: Verbs; ch: CmChannel } = { v, ch };
  const events: CmEvent[] = [];
  let wake: (() => void) | null = null;
  ch.onEvent = (e) => { events.push(e); const w = wake; wake = null; w?.(); };
  const waitFor = (want: number, step: string): Promise<CmEvent> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => { wake = null; reject(new VerbsUnavailableError('peer', `rdma_cm ${step} with ${where} timed out after ${timeoutMs} ms`)); }, timeoutMs);
    const look = (): void => {
      const e = events.shift();
      if (e === undefined) { wake = look; return; }
      clearTimeout(timer);
      if (e.type === want) { resolve(e); return; }
      reject(cmFailure(v, e, step, where, devices));
    };
    look();
  });
  ch.start(20);
  try {
    const out: [bigint | null] = [null];
    if (v.createId(ch.ch, out, null, RDMA_PS_TCP) !== 0 || out[0] === null) throw new VerbsUnavailableError('kernel', `rdma_create_id failed: ${errnoText(v)}`);
    c.id = out[0];
    c.blk = nativeBlock(v, STAGE + VERBS_STAGE_BYTES);
    const blk = c.blk;
    writeSockaddr(blk, SOCKADDR, ip, info.cmPort);
    if (v.resolveAddr(c.id, null, blk.ptr + BigInt(SOCKADDR), Math.min(timeoutMs, 2000)) !== 0) {
      throw new VerbsUnavailableError('address', `rdma_resolve_addr(${where}) failed: ${errnoText(v)}: no RDMA device here reaches ${ip} (devices: ${devices.join(', ')}; check \`rdma link show\` and that the interface has an IP address)`);
    }
    await waitFor(RDMA_CM_EVENT.ADDR_RESOLVED, 'address resolution');
    const ctx = idPtr(v, c.id, 'verbs');
    const dev = k.decode(ctx, 0, 'void *') as bigint;
    const device = v.getDeviceName(dev) ?? 'unknown';
    if (v.queryDevice(ctx, blk.ptr + BigInt(DEV_ATTR)) === 0) {
      const cap = blk.data.getInt32(DEV_ATTR + k.offsetof(t.ibv_device_attr, 'atomic_cap'), true);
      if (cap === IBV_ATOMIC_NONE) throw new VerbsUnavailableError('atomics', `RDMA device ${device} does not support atomic operations (atomic_cap IBV_ATOMIC_NONE): the verbs transport needs 64-bit RDMA atomics (use ofi+tcp:// or the tcp transport)`);
    }
    const pd = v.allocPd(ctx);
    if (pd === null || pd === 0n) throw new VerbsUnavailableError('device', `ibv_alloc_pd on ${device} failed: ${errnoText(v)}`);
    c.pd = pd;
    const mr = v.regMr(pd, blk.ptr, blk.bytes, IBV_ACCESS_LOCAL_WRITE);
    if (mr === null || mr === 0n) throw new VerbsUnavailableError('device', `ibv_reg_mr of the ${blk.bytes} B local buffer on ${device} failed: ${errnoText(v)} (check \`ulimit -l\`: registered memory is locked)`);
    c.mr = mr;
    if (v.resolveRoute(c.id, Math.min(timeoutMs, 2000)) !== 0) throw new VerbsUnavailableError('address', `rdma_resolve_route(${where}) failed: ${errnoText(v)}`);
    await waitFor(RDMA_CM_EVENT.ROUTE_RESOLVED, 'route resolution');
    const qi = blk.ptr + BigInt(QP_INIT);
    const cap = QP_INIT + k.offsetof(t.ibv_qp_init_attr, 'cap');
    blk.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_send_wr'), 4, true);
    blk.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_recv_wr'), 1, true);
    blk.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_send_sge'), 1, true);
    blk.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_recv_sge'), 1, true);
    blk.data.setInt32(QP_INIT + k.offsetof(t.ibv_qp_init_attr, 'qp_type'), IBV_QPT_RC, true);
    if (v.createQp(c.id, pd, qi) !== 0) throw new VerbsUnavailableError('device', `rdma_create_qp (RC) on ${device} failed: ${errnoText(v)}`);
    const ticket = Buffer.from(info.ticket, 'base64');
    blk.view.set(ticket, PDATA);
    const p = t.rdma_conn_param;
    k.encode(blk.ptr, PARAM + k.offsetof(p, 'private_data'), 'void *', blk.ptr + BigInt(PDATA));
    blk.data.setUint8(PARAM + k.offsetof(p, 'private_data_len'), TICKET_BYTES);
    blk.data.setUint8(PARAM + k.offsetof(p, 'responder_resources'), RD_ATOMIC);
    blk.data.setUint8(PARAM + k.offsetof(p, 'initiator_depth'), RD_ATOMIC);
    blk.data.setUint8(PARAM + k.offsetof(p, 'retry_count'), 7);
    blk.data.setUint8(PARAM + k.offsetof(p, 'rnr_retry_count'), 7);
    if (v.connect(c.id, blk.ptr + BigInt(PARAM)) !== 0) throw new VerbsUnavailableError('peer', `rdma_connect(${where}) failed: ${errnoText(v)}`);
    const mrLine = boot.next(timeoutMs, 'memory registration from the memory node');
    mrLine.catch(() => undefined); // awaited below; a rejection while the connect is pending is not unhandled
    try {
      await waitFor(RDMA_CM_EVENT.ESTABLISHED, 'connection');
    } catch (e) {
      // The memory node says why it refused on the bootstrap connection, when it can.
      const line = await Promise.race([mrLine, new Promise<null>((r) => { setTimeout(() => r(null), 500).unref(); })]).catch(() => null);
      throw nodeError(line, where) ?? e;
    }
    const line = await mrLine;
    const refused = nodeError(line, where);
    if (refused !== null) throw refused;
    const m = line.mr as { addr?: unknown; rkey?: unknown } | undefined;
    if (m === undefined || !Number.isSafeInteger(m.addr) || !Number.isInteger(m.rkey) || (m.rkey as number) < 0 || (m.rkey as number) > 0xffffffff) {
      throw new TransportUnavailableError(`${where}: the memory node sent a malformed memory registration line`);
    }
    await ch.stop();
    return { v, ch, id: c.id, pd, mr, blk, rkey: m.rkey as number, base: m.addr as number, size: info.size, device };
  } catch (e) {
    await ch.stop();
    teardown(c);
    throw e;
  }
}

const MISSING = new Set(['koffi', 'library', 'device', 'kernel', 'address', 'atomics', 'peer']);

/** The memory node's {error} line as a VerbsUnavailableError, or null for any other line. */
function nodeError(line: Record<string, unknown> | null, where: string): VerbsUnavailableError | null {
  const err = line?.error as { message?: unknown; missing?: unknown } | undefined;
  if (err === undefined) return null;
  const missing = typeof err.missing === 'string' && MISSING.has(err.missing) ? (err.missing as VerbsMissing) : 'peer';
  return new VerbsUnavailableError(missing, `${where}: ${typeof err.message === 'string' ? err.message : 'the memory node refused the connection'}`);
}

/** The error for an unexpected rdma_cm event during a client's setup. */
function cmFailure(v: Verbs, e: CmEvent, step: string, where: string, devices: string[]): Error {
  const status = e.status < 0 ? ` (${errnoText(v, -e.status)})` : e.status > 0 ? ` (status ${e.status})` : '';
  switch (e.type) {
    case RDMA_CM_EVENT.ADDR_ERROR:
    case RDMA_CM_EVENT.ROUTE_ERROR:
      return new VerbsUnavailableError('address', `rdma_cm ${step} with ${where} failed: ${e.name}${status}: no RDMA device here (${devices.join(', ')}) reaches it; check \`rdma link show\` and the routes of the RDMA interfaces`);
    case RDMA_CM_EVENT.REJECTED:
      return new VerbsUnavailableError('peer', `the memory node at ${where} rejected the RC connection${status}: its ticket was unknown or already used, or the node is shutting down`);
    default:
      return new VerbsUnavailableError('peer', `rdma_cm ${step} with ${where} failed: ${e.name}${status}`);
  }
}
