/**
 * The memory node's side of the verbs transport: one RC queue pair and one
 * memory registration of the whole pool per client, set up through
 * rdma_cm, and the token-authenticated TCP bootstrap (bootstrap.ts's lines)
 * that hands each client a ticket for its rdma_cm connection. It does no
 * per-allocation work: the HCA executes the clients' READs, WRITEs and
 * atomics on the registered pool (verbs-transport.ts).
 *
 *   client                          memory node
 *   TCP hello {v, token}      ->    token checked (constant time)
 *                             <-    {v, transport:'verbs', cmPort, ticket, size, layoutVersion}
 *   rdma_connect(private data = ticket)
 *                             ->    CONNECT_REQUEST: ticket -> bootstrap connection;
 *                                   ibv_reg_mr(pool, REMOTE_READ|WRITE|ATOMIC|LOCAL_WRITE)
 *                                   (a fresh rkey), rdma_create_qp (RC)
 *                             <-    {mr: {addr, rkey}} on the bootstrap connection; rdma_accept
 *   {client, gen}             ->    (after Pool.attach registered it)
 *
 * A ticket is 16 random bytes, good for one rdma_cm connection of the
 * bootstrap connection it was given on; a CONNECT_REQUEST with an unknown
 * or used ticket is rejected. Nothing about the pool, and no rkey, is sent
 * before the token was checked, and an rkey only to the connection whose
 * ticket came in.
 *
 * Fencing (DESIGN.md, "its transport was cut by the memory node"): cutting
 * a client moves its QP to IBV_QPS_ERR (ibv_modify_qp: from then on the
 * responder executes none of its requests; the HCA flushes them) and
 * deregisters its MR (ibv_dereg_mr: its rkey is invalid on the HCA once the
 * call returns), then disconnects and destroys the QP and the id. Only when
 * both calls returned 0 does the server tell the fencing authority
 * (`markTransportCut`), so the lease monitor of this process may recover
 * the client at once. A client is cut when the monitor revokes it
 * (`fenceOnRevoke`), when its slot stops being LIVE in the generation it
 * reported (checked every `watchMs`), when its bootstrap connection closes,
 * when its rdma_cm connection ends (DISCONNECTED, an error event), or when it
 * never reports its client id (`reportMs`); unreported connections are cut
 * along with any revocation the server cannot attribute, as the ofi server
 * does (server.ts). Those rules are node-clients.ts's, shared with the ofi
 * node; this file supplies the cut itself. The bootstrap listener is
 * bootstrap.ts's, also shared.
 *
 * Atomics. The node's own CPU also does atomics on the pool (the lease
 * monitor's revocations, recovery's frees by CAS), and they must be atomic
 * against the clients' RDMA atomics. A device that reports atomic_cap
 * IBV_ATOMIC_GLOB guarantees that; IBV_ATOMIC_HCA only guarantees atomicity
 * among the HCA's own atomics, so such connections are rejected (with the
 * reason, on the bootstrap connection) unless `hcaAtomics` accepts the risk;
 * IBV_ATOMIC_NONE is always rejected.
 *
 * The rdma_cm channel is driven by verbs-cm.ts (poll(2) on a koffi worker
 * thread, events handled on the main thread). The server has no completion
 * queue to progress: one-sided verbs operations complete in the HCA.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { InvalidArgumentError } from '../../src/errors.js';
import { BOOTSTRAP_VERSION, parseListen, sendLine } from './bootstrap.js';
import { MemoryNode, type ClientConn, type NodeClientEvent, type NodeClientsOptions } from './node-clients.js';
import type { ServedMemory } from './server.js';
import { CmChannel, idPtr, type CmEvent } from './verbs-cm.js';
import { VerbsUnavailableError } from './verbs-errors.js';
import { TICKET_BYTES } from './verbs-transport.js';
import {
  IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_ATOMIC, IBV_ATOMIC_HCA, IBV_ATOMIC_NONE, IBV_ACCESS_REMOTE_READ, IBV_ACCESS_REMOTE_WRITE, IBV_QPS_ERR, IBV_QPT_RC,
  IBV_QP_STATE, RDMA_CM_EVENT, RDMA_PS_TCP, errnoText, loadVerbs, nativeBlock, rdmaDevices, writeSockaddr,
  type NativeBlock, type Verbs, type VerbsLibNames,
} from './verbs.js';

export { BootstrapListener, type BootstrapHandler } from './bootstrap.js';

/**
 * Options of `serveVerbs` (`pool`, `watchMs`, `onEvent`: see
 * NodeClientsOptions; `reportMs` is the time a client has to connect and
 * report its client id after the bootstrap).
 */
export interface ServeVerbsOptions extends NodeClientsOptions {
  /** Bootstrap listen address `HOST:PORT` (port 0: ephemeral). rdma_cm listens on HOST too (an IP address), on a port it picks. */
  listen: string;
  /** The shared secret clients must present. */
  token: string | Buffer;
  /** Library names (see verbs.ts). */
  libs?: VerbsLibNames;
  /** An implementation of the bindings to use instead of loading rdma-core (tests: test/verbs-soft.ts). */
  verbs?: Verbs;
  /**
   * Accept devices whose atomics are atomic only among RDMA operations of
   * the HCA (atomic_cap IBV_ATOMIC_HCA), not against the node's CPU atomics
   * (default false: such connections are rejected; see the file comment).
   */
  hcaAtomics?: boolean;
  /** Told about each connection, cut and refusal (for logs), and each established rdma_cm connection. */
  onEvent?: (e: VerbsServerEvent) => void;
}

/** What the server reports through `onEvent`. */
export type VerbsServerEvent = NodeClientEvent | { event: 'client-established'; conn: number; rkey: number };

/** A client's connection: its ticket, then its rdma_cm id, QP and registration of the pool. */
interface Conn extends ClientConn {
  ticket: string;
  /** rdma_cm id of its connection, 0n before CONNECT_REQUEST. */
  cmId: bigint;
  qp: bigint;
  mr: bigint;
  rkey: number;
}

const POOL_ACCESS = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC;
/** Most outstanding READs/atomics accepted from one client. */
const MAX_RESPONDER = 16;

/** A running verbs memory node; see the file comment (the client rules: MemoryNode). */
export class VerbsServer extends MemoryNode<Conn> {
  /** The RDMA devices found at start. */
  readonly devices: string[];
  /** The rdma_cm port clients connect to (on the listen host). */
  readonly cmPort: number;
  private readonly v: Verbs;
  private readonly mem: ServedMemory;
  private readonly opts: ServeVerbsOptions;
  private readonly ch: CmChannel;
  private readonly listenId: bigint;
  private readonly scratch: NativeBlock;
  private readonly byTicket = new Map<string, Conn>();
  private readonly byCmId = new Map<bigint, Conn>();
  /** One protection domain per device context that clients came in on. */
  private readonly pds = new Map<bigint, bigint>();

  private constructor(v: Verbs, mem: ServedMemory, opts: ServeVerbsOptions, ch: CmChannel, listenId: bigint, cmPort: number, devices: string[], scratch: NativeBlock) {
    super('verbs', opts);
    this.v = v;
    this.mem = mem;
    this.opts = opts;
    this.ch = ch;
    this.listenId = listenId;
    this.cmPort = cmPort;
    this.devices = devices;
    this.scratch = scratch;
  }

  /**
   * Checks for an RDMA device, listens with rdma_cm on HOST, then opens the
   * bootstrap listener on HOST:PORT.
   * @throws InvalidArgumentError (bad listen address, empty token),
   *   VerbsUnavailableError (library, no device, kernel module, HOST not on an RDMA device),
   *   TransportUnavailableError (bootstrap port in use)
   */
  static async start(mem: ServedMemory, opts: ServeVerbsOptions): Promise<VerbsServer> {
    const { host } = parseListen(opts.listen);
    const token = Buffer.isBuffer(opts.token) ? opts.token : Buffer.from(opts.token, 'utf8');
    if (token.length === 0) throw new InvalidArgumentError('the verbs server needs a non-empty token');
    const v = opts.verbs ?? loadVerbs(opts.libs);
    const devices = rdmaDevices(v);
    const ch = CmChannel.open(v);
    const scratch = nativeBlock(v, 1024);
    let listenId = 0n;
    try {
      const out: [bigint | null] = [null];
      if (v.createId(ch.ch, out, null, RDMA_PS_TCP) !== 0 || out[0] === null) throw new VerbsUnavailableError('kernel', `rdma_create_id failed: ${errnoText(v)}`);
      listenId = out[0];
      writeSockaddr(scratch, 0, host, 0);
      if (v.bindAddr(listenId, scratch.ptr) !== 0) {
        throw new VerbsUnavailableError('address', `rdma_bind_addr(${host}) failed: ${errnoText(v)}: no RDMA device (${devices.join(', ')}) owns ${host}; listen on the IP address of an RDMA interface (\`rdma link show\`, \`ip addr\`)`);
      }
      if (v.listen(listenId, 64) !== 0) throw new VerbsUnavailableError('kernel', `rdma_listen on ${host} failed: ${errnoText(v)}`);
      const port = v.getSrcPort(listenId);
      const cmPort = ((port & 0xff) << 8) | (port >> 8);
      const s = new VerbsServer(v, mem, opts, ch, listenId, cmPort, devices, scratch);
      ch.onEvent = (e) => s.onCm(e);
      await s.openBootstrap(opts.listen, token, (sock, remote) => s.welcome(sock, remote));
      ch.start(100);
      s.startWatch();
      return s;
    } catch (e) {
      if (listenId !== 0n) v.destroyId(listenId);
      ch.close();
      v.free(scratch.ptr);
      throw e;
    }
  }

  /** Stops listening, cuts every client, and releases the rdma_cm and verbs resources. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopClients();
    await this.ch.stop();
    this.v.destroyId(this.listenId);
    for (const pd of this.pds.values()) this.v.deallocPd(pd);
    this.pds.clear();
    this.ch.close();
    this.v.free(this.scratch.ptr);
  }

  private welcome(sock: Socket, remote: string): object | null {
    if (this.closed) return null;
    const ticket = randomBytes(TICKET_BYTES).toString('base64');
    const conn = this.addClient(sock, remote, { ticket, cmId: 0n, qp: 0n, mr: 0n, rkey: 0 });
    this.byTicket.set(ticket, conn);
    return { v: BOOTSTRAP_VERSION, transport: 'verbs', cmPort: this.cmPort, ticket, size: this.mem.bytes, layoutVersion: this.mem.layoutVersion };
  }

  /** A client's report before its QP exists is premature (MemoryNode.mayReport): it cuts the connection. */
  protected override mayReport(c: Conn): boolean {
    return c.qp !== 0n;
  }

  /** One rdma_cm event (already acked). */
  private onCm(e: CmEvent): void {
    if (e.type === RDMA_CM_EVENT.CONNECT_REQUEST) { this.request(e); return; }
    const conn = this.byCmId.get(e.id);
    if (conn === undefined) return;
    switch (e.type) {
      case RDMA_CM_EVENT.ESTABLISHED:
        this.opts.onEvent?.({ event: 'client-established', conn: conn.id, rkey: conn.rkey });
        break;
      case RDMA_CM_EVENT.DISCONNECTED:
      case RDMA_CM_EVENT.CONNECT_ERROR:
      case RDMA_CM_EVENT.UNREACHABLE:
      case RDMA_CM_EVENT.REJECTED:
      case RDMA_CM_EVENT.DEVICE_REMOVAL:
        this.cut(conn, `rdma_cm ${e.name}`);
        break;
      default:
        break;
    }
  }

  /** A CONNECT_REQUEST: find the bootstrap connection by ticket, register the pool for it, make its QP, send the rkey, accept. */
  private request(e: CmEvent): void {
    const { v } = this;
    const ticket = e.privateData.length >= TICKET_BYTES ? Buffer.from(e.privateData.subarray(0, TICKET_BYTES)).toString('base64') : '';
    const conn = this.byTicket.get(ticket);
    if (conn === undefined || conn.cmId !== 0n || this.closed) {
      v.reject(e.id, null, 0);
      v.destroyId(e.id);
      this.opts.onEvent?.({ event: 'refused', remote: 'rdma_cm', reason: conn === undefined ? 'unknown ticket' : 'ticket already used' });
      return;
    }
    this.byTicket.delete(ticket);
    conn.cmId = e.id;
    this.byCmId.set(e.id, conn);
    try {
      const ctx = idPtr(v, e.id, 'verbs');
      let pd = this.pds.get(ctx);
      if (pd === undefined) {
        const p = v.allocPd(ctx);
        if (p === null || p === 0n) throw new VerbsUnavailableError('device', `ibv_alloc_pd failed: ${errnoText(v)}`);
        pd = p;
        this.pds.set(ctx, pd);
      }
      this.checkAtomics(ctx);
      const mr = v.regMr(pd, this.mem.ptr, this.mem.bytes, POOL_ACCESS);
      if (mr === null || mr === 0n) throw new VerbsUnavailableError('device', `ibv_reg_mr of the ${this.mem.bytes} B pool failed: ${errnoText(v)} (check \`ulimit -l\`)`);
      conn.mr = mr;
      conn.rkey = v.koffi.decode(mr, v.koffi.offsetof(v.t.ibv_mr, 'rkey'), 'uint32_t') as number;
      const s = this.scratch;
      const t = v.t;
      const k = v.koffi;
      s.view.fill(0);
      const cap = k.offsetof(t.ibv_qp_init_attr, 'cap');
      s.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_send_wr'), 1, true);
      s.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_recv_wr'), 1, true);
      s.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_send_sge'), 1, true);
      s.data.setUint32(cap + k.offsetof(t.ibv_qp_cap, 'max_recv_sge'), 1, true);
      s.data.setInt32(k.offsetof(t.ibv_qp_init_attr, 'qp_type'), IBV_QPT_RC, true);
      if (v.createQp(e.id, pd, s.ptr) !== 0) throw new VerbsUnavailableError('device', `rdma_create_qp failed: ${errnoText(v)}`);
      conn.qp = idPtr(v, e.id, 'qp');
      // The rkey goes on the bootstrap connection before the accept, so the client has it once rdma_connect completes.
      sendLine(conn.sock, { mr: { addr: Number(this.mem.ptr), rkey: conn.rkey } });
      s.view.fill(0);
      const p = t.rdma_conn_param;
      s.data.setUint8(k.offsetof(p, 'responder_resources'), Math.max(1, Math.min(MAX_RESPONDER, e.initiatorDepth)));
      s.data.setUint8(k.offsetof(p, 'initiator_depth'), 0);
      s.data.setUint8(k.offsetof(p, 'rnr_retry_count'), 7);
      if (v.accept(e.id, s.ptr) !== 0) throw new VerbsUnavailableError('peer', `rdma_accept failed: ${errnoText(v)}`);
    } catch (err) {
      const missing = err instanceof VerbsUnavailableError ? err.missing : 'peer';
      sendLine(conn.sock, { error: { code: 'TRANSPORT_UNAVAILABLE', missing, message: `the memory node could not set up this connection: ${(err as Error).message}` } });
      if (conn.qp === 0n) v.reject(e.id, null, 0);
      this.cut(conn, `setting up its connection failed: ${(err as Error).message}`);
    }
  }

  /**
   * Refuses a device whose atomics the pool cannot rely on: none at all, or
   * (unless `hcaAtomics`) atomic only among the HCA's own operations.
   * @throws VerbsUnavailableError (`missing` 'atomics')
   */
  private checkAtomics(ctx: bigint): void {
    const { v } = this;
    const s = this.scratch;
    s.view.fill(0);
    if (v.queryDevice(ctx, s.ptr) !== 0) throw new VerbsUnavailableError('device', `ibv_query_device failed: ${errnoText(v)}`);
    const cap = s.data.getInt32(v.koffi.offsetof(v.t.ibv_device_attr, 'atomic_cap'), true);
    const name = v.getDeviceName(v.koffi.decode(ctx, 0, 'void *') as bigint) ?? 'the RDMA device';
    if (cap === IBV_ATOMIC_NONE) throw new VerbsUnavailableError('atomics', `${name} does not support RDMA atomics (atomic_cap IBV_ATOMIC_NONE)`);
    if (cap === IBV_ATOMIC_HCA && this.opts.hcaAtomics !== true) {
      throw new VerbsUnavailableError('atomics', `${name}'s RDMA atomics are atomic only among themselves (atomic_cap IBV_ATOMIC_HCA), not against this node's CPU atomics (lease monitor, recovery): start the server with --hca-atomics to accept that (docs/rdma.md, "verbs")`);
    }
  }

  /**
   * Cuts one connection (MemoryNode calls this once, after it left the
   * table): QP to IBV_QPS_ERR, MR deregistered, then the rdma_cm connection
   * and the bootstrap socket closed (see the file comment).
   * @returns '' when both the QP transition and the deregistration returned 0, else what failed
   */
  protected sever(c: Conn): string {
    const { v } = this;
    this.byTicket.delete(c.ticket);
    let failed = '';
    if (c.qp !== 0n) {
      const a = this.scratch;
      a.view.fill(0);
      a.data.setInt32(v.koffi.offsetof(v.t.ibv_qp_attr, 'qp_state'), IBV_QPS_ERR, true);
      const rc = v.modifyQp(c.qp, a.ptr, IBV_QP_STATE);
      if (rc !== 0) failed += ` ibv_modify_qp(ERR) returned ${errnoText(v, rc)};`;
    }
    if (c.mr !== 0n) {
      const rc = v.deregMr(c.mr);
      if (rc !== 0) failed += ` ibv_dereg_mr returned ${errnoText(v, rc)};`;
    }
    if (c.cmId !== 0n) {
      this.byCmId.delete(c.cmId);
      if (c.qp !== 0n) {
        v.disconnect(c.cmId);
        v.destroyQp(c.cmId);
      }
      v.destroyId(c.cmId);
    }
    // end(), not destroy(): an error line written just before still reaches the client.
    c.sock.end();
    setTimeout(() => c.sock.destroy(), 1000).unref();
    // Only with '' may MemoryNode tell the fencing authority (its QP cannot execute anything and its rkey is dead).
    return failed === '' ? '' : `;${failed}`;
  }
}

/**
 * Starts serving `mem` over verbs (see VerbsServer).
 * @throws see VerbsServer.start
 */
export function serveVerbs(mem: ServedMemory, opts: ServeVerbsOptions): Promise<VerbsServer> {
  return VerbsServer.start(mem, opts);
}
