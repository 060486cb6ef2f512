/**
 * The memory server of server-side mode (../shared/DESIGN.md, "Two ways to
 * run the core"): the Wasm core runs here, next to the pool, and remote
 * clients send one request per operation over TCP, TLS or a Unix socket
 * (docs/protocol.md).
 *
 * The server opens the pool's transport once. Each authenticated connection
 * gets a session that is a client of the pool of its own:
 * `Pool.attach(transport, { create: false })` (one Core instance, one client
 * slot, its own lease and recovery). Every request goes through that Pool,
 * whose checks bound it to one block, heap object or region exactly as on
 * shm. Sessions, leases, fencing and the handshake are sessions.ts's; the
 * session Pool's own heartbeat keeps its slot's lease in the pool while
 * the server holds the session, and closing it (BYE, a fence) frees what
 * the client held. A LeaseMonitor on the server's own client recovers slots
 * the server could not close (a previous server process crashed), and
 * clients of the pool in other processes; a sweep that follows a stall of
 * this process is skipped, so that the sessions' own heartbeats, as late as
 * the sweep, renew first.
 */
import type { Logger } from 'pino';
import { openPool, Pool } from '../../pool.js';
import { LeaseMonitor } from '../../monitor.js';
import type { Transport } from '../../transport.js';
import { InvalidArgumentError } from '../../errors.js';
import { SessionServer, isLoopback, parseListen, type BackendFactory, type ListenAddress } from './sessions.js';

export { AUTH_FAIL_DELAY_MS, isLoopback, parseListen } from './sessions.js';
export type { ListenAddress } from './sessions.js';

/** Options of `serveTcp`. */
export interface ServeTcpOptions {
  /** Default 127.0.0.1 on an ephemeral port. */
  listen?: ListenAddress;
  /** Shared secret every client must present (string or bytes, up to 512 B); absent: loopback or Unix socket only. */
  token?: string | Buffer | null;
  /** PEM certificate and key: serve TLS (node:tls) instead of plain TCP. */
  tls?: { cert: string | Buffer; key: string | Buffer } | null;
  /** Pool size (bytes or "64MiB") when the pool is created; see openPool. */
  size?: number | string;
  /** Create the pool when absent (default: when `size` is given). */
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

/** A running memory server. */
export class TcpServer extends SessionServer<Pool> {
  /** The server's own client of the pool (census, monitor). */
  readonly pool: Pool;
  private readonly monitor: LeaseMonitor | null;
  private readonly ownsPool: boolean;
  private monitorTimer: NodeJS.Timeout | undefined;

  /** @internal use serveTcp */
  constructor(pool: Pool, ownsPool: boolean, opts: ServeTcpOptions) {
    super(poolSessions(pool, opts.logger), opts);
    this.pool = pool;
    this.ownsPool = ownsPool;
    this.monitor = opts.monitor === false ? null : new LeaseMonitor(pool, { logger: opts.logger, intervalMs: Math.max(5, Math.floor(pool.leaseMs / 4)) });
  }

  override async listen(where: ListenAddress): Promise<void> {
    await super.listen(where);
    if (this.monitor === null) return;
    const monitor = this.monitor;
    let last = Date.now();
    this.monitorTimer = setInterval(() => {
      // After a stall of this process (or a jump of the clock), the session
      // Pools' heartbeat timers are as late as this one: skip one sweep so
      // they renew first, instead of revoking every session at once.
      const now = Date.now();
      const gap = now - last;
      last = now;
      if (gap > this.pool.leaseMs / 2) {
        this.log?.warn({ gapMs: gap }, 'the server stalled (or the clock jumped): lease sweep postponed once');
        return;
      }
      try {
        monitor.sweep(now);
      } catch (err) {
        this.log?.error({ err }, 'lease monitor sweep failed');
      }
    }, Math.max(5, Math.floor(this.pool.leaseMs / 4)));
    this.monitorTimer.unref();
  }

  /** Closes every session (freeing what remote clients held), stops listening, then closes the server's own client. */
  override async close(): Promise<void> {
    clearInterval(this.monitorTimer);
    await super.close();
    if (this.ownsPool) this.pool.close();
  }
}

/** Sessions that are Pools of the pool `admin` is attached to. */
function poolSessions(admin: Pool, log: Logger | undefined): BackendFactory<Pool> {
  return {
    open: () => Pool.attach(admin.transport, { create: false, node: admin.node }),
    close: (p) => {
      try {
        return p.close();
      } catch (err) {
        log?.error({ err }, 'closing a session pool failed; the lease monitor will recover its slot');
        return 0;
      }
    },
    welcome: (p) => ({ node: p.node, clientId: p.clientId, geometry: { ...p.geometry }, heapClassSizes: [...p.heap.classSizes] }),
    leaseMs: () => admin.leaseMs,
    epochState: (p) => p.epochState(),
  };
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
    await server.listen(where);
    return server;
  } catch (err) {
    if (owns) pool.close();
    throw err;
  }
}
