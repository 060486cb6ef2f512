/**
 * The compute-node service (FineMem's compute-node daemon; `dmem client
 * --config FILE`): one process per compute host holds the connections to
 * the memory nodes (one session per node, a NodesPool) and serves the local
 * applications over a Unix socket with the same protocol, so an application
 * opens `openTcpPool('unix:/run/dmem.sock')` and many local processes share
 * one set of connections.
 *
 * Leases. Every local application is a session of this service
 * (sessions.ts), with the lease rules of a memory server: alive while it
 * sends requests or pings; silent for longer than the lease (dead, or
 * stopped), or gone without coming back within the lease, it is fenced. The
 * memory nodes only know the service's own sessions, so the service keeps
 * the owner of every block and heap object an application allocated
 * through it (a gaddr -> session map, updated on every alloc and free), and
 * fencing or closing a session frees what it still owns. Regions belong to
 * the pool, as everywhere. If the service itself dies, its node sessions
 * stop renewing and each memory node reclaims everything after its lease.
 *
 * Concurrency. The owner map is changed only on this event loop. A free is
 * recorded after the node confirmed it, an allocation once its gaddr is
 * known; a session fenced while one of its allocations is in flight frees
 * that block when the reply arrives (`closed` below).
 */
import type { Logger } from 'pino';
import { InvalidArgumentError } from '../../errors.js';
import { RemotePool, type AsyncPool } from './client.js';
import { NodesPool, openNodesPool, type NodesConfig, type PlacementPolicy } from './nodes.js';
import { SessionServer, type Backend, type BackendFactory, type BackendRegion, type ListenAddress } from './sessions.js';
import type { Welcome } from './protocol.js';

/** Options of `serveComputeNode`. */
export interface ComputeServiceOptions {
  /** The memory nodes: URLs, or a nodes config (nodes.ts). */
  nodes: string[] | NodesConfig;
  /** Token of the memory nodes (unless the config has one). */
  token?: string;
  policy?: PlacementPolicy;
  /** Where local applications connect (default a Unix socket path is required). */
  listen: ListenAddress;
  /** Token local applications must present (default none: the socket's file permissions guard it). */
  localToken?: string | null;
  /** Lease of local applications (ms, default 1000). */
  leaseMs?: number;
  logger?: Logger;
}

type Kind = 'block' | 'object';

/** One local application's view of the shared node pool: what it allocates is recorded as its own. */
class AppSession implements Backend {
  readonly id: number;
  closed = false;
  private readonly svc: ComputeService;
  private readonly p: AsyncPool;
  readonly heap: Backend['heap'];

  constructor(svc: ComputeService, pool: AsyncPool, id: number) {
    this.svc = svc;
    this.p = pool;
    this.id = id;
    this.heap = {
      alloc: (bytes) => this.p.heap.alloc(bytes).then((g) => this.own(g, 'object')),
      free: (g) => this.p.heap.free(g).then(() => this.svc.disown(g)),
      freeDelayed: (g) => this.p.heap.freeDelayed(g).then(() => this.svc.disown(g)),
      flush: () => this.p.heap.flush(),
      trim: () => this.p.heap.trim(),
      stats: () => this.p.heap.stats(),
    };
  }

  alloc(bytes: number): Promise<number> { return this.p.alloc(bytes).then((g) => this.own(g, 'block')); }
  allocClass(cls: number): Promise<number> { return this.p.allocClass(cls).then((g) => this.own(g, 'block')); }
  free(g: number): Promise<void> { return this.p.free(g).then(() => this.svc.disown(g)); }
  read(g: number, n: number): Promise<Uint8Array> { return this.p.read(g, n); }
  write(g: number, b: Uint8Array): Promise<void> { return this.p.write(g, b); }
  cas(g: number, e: bigint, d: bigint): Promise<bigint> { return this.p.cas(g, e, d); }
  faa(g: number, d: bigint): Promise<bigint> { return this.p.faa(g, d); }
  stats(): ReturnType<AsyncPool['stats']> { return this.p.stats(); }
  census(): ReturnType<AsyncPool['census']> { return this.p.census(); }
  reclaim(): Promise<number> { return this.p.reclaim(); }
  epoch<T>(fn: () => Promise<T> | T): Promise<T> { return this.p.epoch(fn); }
  createRegion(name: string, bytes: number): Promise<BackendRegion> { return this.p.createRegion(name, bytes); }
  openRegion(name: string): Promise<BackendRegion> { return this.p.openRegion(name); }
  destroyRegion(name: string): Promise<void> { return this.p.destroyRegion(name); }
  listRegions(): ReturnType<AsyncPool['listRegions']> { return this.p.listRegions(); }
  regionExists(name: string): Promise<boolean> { return this.p.regionExists(name); }

  /** Records `g` as this session's; a session already closed frees it at once. */
  private async own(g: number, kind: Kind): Promise<number> {
    if (this.closed) {
      await (kind === 'block' ? this.p.free(g) : this.p.heap.free(g)).catch(() => undefined);
      throw new InvalidArgumentError('the session was closed while this allocation was in flight; it was freed');
    }
    this.svc.record(g, this, kind);
    return g;
  }
}

/** A running compute-node service. */
export class ComputeService extends SessionServer<AppSession> {
  /** The pool over the memory nodes that every local session shares. */
  readonly pool: AsyncPool;
  private readonly owners = new Map<number, { s: AppSession; kind: Kind }>();

  /** @internal use serveComputeNode */
  constructor(pool: AsyncPool, opts: ComputeServiceOptions) {
    const leaseMs = opts.leaseMs ?? 1000;
    let nextId = 1;
    let self: ComputeService | null = null;
    const first = pool instanceof NodesPool ? null : (pool as RemotePool);
    const factory: BackendFactory<AppSession> = {
      open: () => new AppSession(self!, pool, nextId++),
      close: (s) => self!.release(s),
      welcome: (s): Omit<Welcome, 'version' | 'maxFrameBytes' | 'resumed' | 'leaseMs'> => ({
        node: first?.node ?? 0, clientId: s.id,
        geometry: first?.geometry ?? { poolBytes: 0, sections: 0, sectionBytes: 2 * 1024 * 1024, chunkBytes: 4096, dataOffset: 0, dataBytes: 0, maxClients: 0, layoutVersion: 0 },
        heapClassSizes: [...pool.heap.classSizes],
      }),
      leaseMs: () => leaseMs,
    };
    super(factory, { token: opts.localToken ?? null, logger: opts.logger });
    this.pool = pool;
    self = this;
  }

  /** Blocks and heap objects local sessions own now. */
  get owned(): number {
    return this.owners.size;
  }

  /** @internal */
  record(g: number, s: AppSession, kind: Kind): void {
    this.owners.set(g, { s, kind });
  }

  /** @internal */
  disown(g: number): void {
    this.owners.delete(g);
  }

  /** Frees everything session `s` still owns; returns how many. */
  /** @internal */
  async release(s: AppSession): Promise<number> {
    s.closed = true;
    const mine: Array<[number, Kind]> = [];
    for (const [g, o] of this.owners) if (o.s === s) mine.push([g, o.kind]);
    let freed = 0;
    await Promise.all(mine.map(async ([g, kind]) => {
      this.owners.delete(g);
      try {
        await (kind === 'block' ? this.pool.free(g) : this.pool.heap.free(g));
        freed++;
      } catch {
        // Freed meanwhile by another session, or its node is down (that node reclaims nothing of ours until we close).
      }
    }));
    return freed;
  }

  /** Closes every local session (freeing what they own), then the node sessions. */
  override async close(): Promise<void> {
    await super.close();
    await this.pool.close();
  }
}

/**
 * Starts the compute-node service: connects to the memory nodes, then
 * listens for local applications.
 * @throws what openTcpPool throws for the nodes; the listen error
 */
export async function serveComputeNode(opts: ComputeServiceOptions): Promise<ComputeService> {
  const cfg = opts.nodes;
  const pool: AsyncPool = Array.isArray(cfg) && cfg.length === 1
    ? await RemotePool.open(cfg[0], { token: opts.token })
    : await openNodesPool(cfg, { token: opts.token, policy: opts.policy });
  try {
    const svc = new ComputeService(pool, opts);
    await svc.listen(opts.listen);
    return svc;
  } catch (err) {
    await pool.close();
    throw err;
  }
}
