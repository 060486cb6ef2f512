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
 * Those rules, and telling the fencing authority, are node-clients.ts's
 * (shared with the verbs node); the bootstrap listener is bootstrap.ts's.
 *
 * Progress: ofi_rxm emulates RMA and atomics in software on the target and
 * its data progress is manual, so the server must call into the CQ. It
 * blocks in fi_cq_sread (timeout `sreadMs`) on one of koffi's worker
 * threads (an async koffi call), so the event loop stays free for the
 * bootstrap and the lease monitor, and an idle server sleeps in poll(2)
 * instead of spinning. The domain is opened FI_THREAD_SAFE for that. A
 * provider without fi_cq_sread falls back to fi_cq_read from a 1 ms timer.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { InvalidArgumentError } from '../../src/errors.js';
import { BOOTSTRAP_VERSION, parseListen } from './bootstrap.js';
import { OfiEndpoint } from './endpoint.js';
import { MemoryNode, type ClientConn, type NodeClientEvent, type NodeClientsOptions } from './node-clients.js';
import { FI_MR_VIRT_ADDR, FI_PROGRESS_AUTO, FI_READ, FI_REMOTE_READ, FI_REMOTE_WRITE, FI_WRITE, nativeBuffer, providerString, type NativeBuffer } from './ofi.js';

export { parseListen } from './bootstrap.js';

/** The memory to serve: a mapping of the whole pool. */
export interface ServedMemory {
  /** Address of the mapping (koffi BigInt pointer). */
  ptr: bigint;
  /** Bytes (the pool size). */
  bytes: number;
  /** Pool layout version, sent to clients. */
  layoutVersion: number;
}

/** Options of `serveOfi` (`pool`, `watchMs`, `reportMs`, `onEvent`: see NodeClientsOptions). */
export interface ServeOfiOptions extends NodeClientsOptions {
  /** URI provider name or libfabric provider string (default `tcp`, i.e. `tcp;ofi_rxm`). */
  provider?: string;
  /** Bootstrap listen address `HOST:PORT` (port 0: ephemeral, see `address`). The fabric endpoint binds to HOST too. */
  listen: string;
  /** The shared secret clients must present. */
  token: string | Buffer;
  /** fi_cq_sread timeout of the progress loop (ms, default 100; also bounds `close`). */
  sreadMs?: number;
  /** Force the fi_cq_sread loop even where the provider progresses data by itself (measurements). */
  progress?: 'sread';
}

/** What the server reports through `onEvent`. */
export type OfiServerEvent = NodeClientEvent;

/** A client's connection: its own registration of the pool. */
interface Conn extends ClientConn {
  mr: bigint;
}

/** A running ofi memory node; see the file comment (the client rules: MemoryNode). */
export class OfiServer extends MemoryNode<Conn> {
  readonly provider: string;
  readonly ep: OfiEndpoint;
  private readonly mem: ServedMemory;
  private readonly opts: ServeOfiOptions;
  private readonly token: Buffer;
  private readonly keyBytes: number;
  private readonly usedKeys = new Set<bigint>();
  private readonly entry: NativeBuffer;
  private progressing = false;
  private progressDone: Promise<void> = Promise.resolve();
  private pollTimer: NodeJS.Timeout | null = null;
  /** Progress-loop wake-ups so far (sread returns or timer ticks). */
  progressCalls = 0;
  /** How the CQ is progressed: `'auto'` (the provider's own thread), `'sread'` (blocking, worker thread) or `'poll'` (1 ms timer). */
  readonly progressMode: 'auto' | 'sread' | 'poll';

  private constructor(mem: ServedMemory, opts: ServeOfiOptions, ep: OfiEndpoint) {
    super('ofi', opts);
    this.mem = mem;
    this.opts = opts;
    this.ep = ep;
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
    const { host } = parseListen(opts.listen);
    if ((typeof opts.token === 'string' ? opts.token.length : opts.token.length) === 0) throw new InvalidArgumentError('the ofi server needs a non-empty token');
    const ep = OfiEndpoint.open({ prov: providerString(opts.provider ?? 'tcp'), node: host, server: true });
    const s = new OfiServer(mem, opts, ep);
    try {
      await s.openBootstrap(opts.listen, s.token, (sock, remote) => s.welcome(sock, remote));
    } catch (e) {
      ep.close();
      ep.o.free(s.entry.ptr);
      throw e;
    }
    s.startProgress();
    s.startWatch();
    return s;
  }

  /** Stops listening, cuts every client and closes the endpoint (waits for the progress thread). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.stopClients();
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

  /** An authenticated bootstrap connection: registers the pool for it under a fresh key; returns the reply line. */
  private welcome(sock: Socket, remote: string): object | null {
    if (this.closed) return null;
    let reg: { mr: bigint; key: bigint };
    try {
      reg = this.ep.register(this.mem.ptr, this.mem.bytes, FI_REMOTE_READ | FI_REMOTE_WRITE | FI_READ | FI_WRITE, this.freshKey());
    } catch (e) {
      return { error: { code: 'TRANSPORT_UNAVAILABLE', message: `the memory node could not register the pool for this client: ${(e as Error).message}` } };
    }
    this.usedKeys.add(reg.key);
    this.addClient(sock, remote, { mr: reg.mr });
    const base = (this.ep.facts.mrMode & FI_MR_VIRT_ADDR) !== 0 ? Number(this.mem.ptr) : 0;
    return {
      v: BOOTSTRAP_VERSION, provider: this.provider, addr: this.ep.name().toString('base64'), key: reg.key.toString(),
      base, size: this.mem.bytes, layoutVersion: this.mem.layoutVersion, maxMsgSize: this.ep.facts.maxMsgSize,
    };
  }

  /** Cutting is fi_close of its MR: the provider refuses its key from then on (MemoryNode.sever). */
  protected sever(c: Conn): string {
    const rc = this.ep.closeFid(c.mr);
    c.sock.destroy();
    return rc === 0 ? '' : ` (fi_close of its MR returned ${rc})`;
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
