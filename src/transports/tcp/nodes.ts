/**
 * One pool over several memory nodes (../shared/DESIGN.md, "Addresses"):
 * each node is a `dmem server --listen --node ID`, whose gaddrs carry its
 * 12-bit node id. Allocations (blocks, heap objects, regions) are spread
 * over the nodes by a policy; every other call is routed by the node id in
 * its gaddr. A node that is down fails only the calls that need it, with
 * NodeUnavailableError, and allocations go to the other nodes.
 *
 * Epochs span every node that is up: `epoch(fn)` runs fn inside an epoch of
 * each node's session, so a delayed free on any node waits for it.
 */
import { readFileSync } from 'node:fs';
import { InvalidAddressError, InvalidArgumentError, PoolExhaustedError, RegionNotFoundError, TransportUnavailableError } from '../../errors.js';
import { nodeOf } from '../../gaddr.js';
import type { ClientStats, PoolCensus } from '../../pool.js';
import type { HeapStats } from '../../heap.js';
import type { RegionInfo } from '../../region.js';
import { RemotePool, type AsyncPool, type RemoteHeap, type RemoteRegion, type TcpPoolOptions } from './client.js';

/** A memory node is unreachable (down, or the network to it): only its gaddrs fail. */
export class NodeUnavailableError extends TransportUnavailableError {
  readonly node: number;
  readonly url: string;

  constructor(node: number, url: string, cause: unknown) {
    super(`memory node ${node} (${url}) is unavailable: ${cause instanceof Error ? cause.message : String(cause)}; gaddrs of other nodes still work`, { cause });
    this.node = node;
    this.url = url;
  }
}

/** How allocations choose a node. */
export type PlacementPolicy = 'round-robin' | 'most-free';

/** A nodes config file: `{ "nodes": [{ "id": 1, "url": "tcp://a:7070" }], "policy": "round-robin", "tokenFile": "..." }`. */
export interface NodesConfig {
  nodes: Array<{ id?: number; url: string }>;
  policy?: PlacementPolicy;
  /** Token of every node (or `tokenFile`, read relative to the working directory). */
  token?: string;
  tokenFile?: string;
}

/** Options of openNodesPool. */
export interface NodesPoolOptions extends TcpPoolOptions {
  policy?: PlacementPolicy;
  /** most-free: how often the nodes' free bytes are re-read (ms, default 1000). */
  refreshMs?: number;
}

/**
 * Reads and checks a nodes config file (JSON, see NodesConfig).
 * @throws InvalidArgumentError (unreadable, not JSON, no nodes, bad ids or policy)
 */
export function loadNodesConfig(path: string): NodesConfig {
  let c: NodesConfig;
  try {
    c = JSON.parse(readFileSync(path, 'utf8')) as NodesConfig;
  } catch (err) {
    throw new InvalidArgumentError(`nodes config ${path}: ${(err as Error).message}`);
  }
  if (!Array.isArray(c.nodes) || c.nodes.length === 0) throw new InvalidArgumentError(`nodes config ${path}: "nodes" must list at least one { "id", "url" }`);
  for (const n of c.nodes) {
    if (typeof n.url !== 'string') throw new InvalidArgumentError(`nodes config ${path}: every node needs a "url"`);
    if (n.id !== undefined && (!Number.isInteger(n.id) || n.id < 0 || n.id > 4095)) throw new InvalidArgumentError(`nodes config ${path}: node id ${n.id} is not 0..4095`);
  }
  if (c.policy !== undefined && c.policy !== 'round-robin' && c.policy !== 'most-free') throw new InvalidArgumentError(`nodes config ${path}: policy must be round-robin or most-free`);
  if (c.tokenFile !== undefined && c.token === undefined) c.token = readFileSync(c.tokenFile, 'utf8').replace(/\r?\n$/, '');
  return c;
}

interface Node {
  id: number;
  url: string;
  pool: RemotePool;
  /** Free bytes last read (most-free). */
  freeBytes: number;
  /** The last call failed to reach it; allocations skip it until `retryAt`. */
  downUntil: number;
}

const RETRY_DOWN_MS = 1000;

/** A pool spread over several memory nodes (see the file comment). */
export class NodesPool implements AsyncPool {
  readonly heap: RemoteHeap;
  readonly policy: PlacementPolicy;
  private readonly nodes: Node[];
  private readonly byId = new Map<number, Node>();
  private next = 0;
  private timer: NodeJS.Timeout | undefined;

  private constructor(nodes: Node[], policy: PlacementPolicy, refreshMs: number) {
    this.nodes = nodes;
    this.policy = policy;
    for (const n of nodes) this.byId.set(n.id, n);
    this.heap = this.makeHeap();
    if (policy === 'most-free') {
      this.timer = setInterval(() => { this.refresh().catch(() => undefined); }, refreshMs);
      this.timer.unref();
    }
  }

  /** @internal use openNodesPool */
  static async open(entries: Array<{ id?: number; url: string }>, opts: NodesPoolOptions): Promise<NodesPool> {
    const settled = await Promise.allSettled(entries.map((e) => RemotePool.open(e.url, opts)));
    const failed = settled.findIndex((r) => r.status === 'rejected');
    if (failed >= 0) {
      await Promise.all(settled.map((r) => (r.status === 'fulfilled' ? r.value.close() : 0)));
      const e = entries[failed];
      const why = (settled[failed] as PromiseRejectedResult).reason as unknown;
      throw why instanceof TransportUnavailableError ? new NodeUnavailableError(e.id ?? -1, e.url, why) : why;
    }
    const pools = settled.map((r) => (r as PromiseFulfilledResult<RemotePool>).value);
    const nodes: Node[] = [];
    const seen = new Set<number>();
    for (let i = 0; i < entries.length; i++) {
      const p = pools[i];
      const want = entries[i].id;
      if (want !== undefined && want !== p.node) {
        await Promise.all(pools.map((q) => q.close()));
        throw new InvalidArgumentError(`${entries[i].url} serves node ${p.node}, the config says ${want}: start it with --node ${want}`);
      }
      if (seen.has(p.node)) {
        await Promise.all(pools.map((q) => q.close()));
        throw new InvalidArgumentError(`two servers use node id ${p.node} (${entries[i].url}): give each its own --node`);
      }
      seen.add(p.node);
      nodes.push({ id: p.node, url: entries[i].url, pool: p, freeBytes: p.geometry.dataBytes, downUntil: 0 });
    }
    const pool = new NodesPool(nodes, opts.policy ?? 'round-robin', opts.refreshMs ?? 1000);
    if (pool.policy === 'most-free') await pool.refresh();
    return pool;
  }

  /** Node ids, in config order. */
  get nodeIds(): number[] {
    return this.nodes.map((n) => n.id);
  }

  // ------------------------------------------------------- allocations

  alloc(bytes: number): Promise<number> { return this.place(bytes, (p) => p.alloc(bytes)); }
  allocClass(cls: number): Promise<number> { return this.place(4096 * 2 ** cls, (p) => p.allocClass(cls)); }

  createRegion(name: string, bytes: number | string): Promise<RemoteRegion> {
    return this.place(typeof bytes === 'number' ? bytes : 0, (p) => p.createRegion(name, bytes));
  }

  // ----------------------------------------------------- routed by gaddr

  free(gaddr: number): Promise<void> { return this.route(gaddr, (p) => p.free(gaddr)); }
  read(gaddr: number, length: number): Promise<Uint8Array> { return this.route(gaddr, (p) => p.read(gaddr, length)); }
  write(gaddr: number, bytes: Uint8Array): Promise<void> { return this.route(gaddr, (p) => p.write(gaddr, bytes)); }
  cas(gaddr: number, expected: bigint, desired: bigint): Promise<bigint> { return this.route(gaddr, (p) => p.cas(gaddr, expected, desired)); }
  faa(gaddr: number, delta: bigint): Promise<bigint> { return this.route(gaddr, (p) => p.faa(gaddr, delta)); }

  // ------------------------------------------------------- every node

  /** This client's counters summed over the nodes that are up (clientId 0). */
  async stats(): Promise<ClientStats> {
    const all = await this.upNodes((p) => p.stats());
    const sum = (f: (s: ClientStats) => number): number => all.reduce((a, s) => a + f(s), 0);
    const allocs = sum((s) => s.allocs);
    const frees = sum((s) => s.frees);
    const total = sum((s) => s.transportOps.total);
    return {
      clientId: 0, allocs, frees,
      cas: { attempts: sum((s) => s.cas.attempts), retries: sum((s) => s.cas.retries), retriesPerAlloc: allocs ? sum((s) => s.cas.retries) / allocs : 0, maxRetries: Math.max(0, ...all.map((s) => s.cas.maxRetries)) },
      transportOps: { total, perAlloc: allocs ? sum((s) => s.transportOps.perAlloc * s.allocs) / allocs : 0, perFree: frees ? sum((s) => s.transportOps.perFree * s.frees) / frees : 0 },
      perClass: {
        allocated: all[0]?.perClass.allocated.map((_, i) => sum((s) => s.perClass.allocated[i])) ?? [],
        freed: all[0]?.perClass.freed.map((_, i) => sum((s) => s.perClass.freed[i])) ?? [],
      },
    };
  }

  /** Every node's census (null for a node that is down), by node id. */
  async nodeCensus(): Promise<Array<{ node: number; url: string; census: PoolCensus | null; error?: string }>> {
    return Promise.all(this.nodes.map((n) => n.pool.census().then(
      (census) => ({ node: n.id, url: n.url, census }),
      (err: unknown) => ({ node: n.id, url: n.url, census: null, error: err instanceof Error ? err.message : String(err) }),
    )));
  }

  /** The nodes' censuses added up (nodes that are up); largestFreeBytes is the largest of any node. */
  async census(): Promise<PoolCensus> {
    const all = await this.upNodes((p) => p.census());
    const sum = (f: (c: PoolCensus) => number): number => all.reduce((a, c) => a + f(c), 0);
    const freeBytes = sum((c) => c.freeBytes);
    const largest = Math.max(0, ...all.map((c) => c.largestFreeBytes));
    return {
      sections: { total: sum((c) => c.sections.total), free: sum((c) => c.sections.free), chunk: sum((c) => c.sections.chunk), large: sum((c) => c.sections.large) },
      chunks: { total: sum((c) => c.chunks.total), free: sum((c) => c.chunks.free), held: sum((c) => c.chunks.held), orphan: sum((c) => c.chunks.orphan) },
      freeBytes, largestFreeBytes: largest, fragmentation: freeBytes > 0 ? 1 - largest / freeBytes : 0,
      sealedSpans: sum((c) => c.sealedSpans), liveClients: sum((c) => c.liveClients),
      perClass: (all[0]?.perClass ?? []).map((_, i) => ({ blocks: sum((c) => c.perClass[i].blocks), chunks: sum((c) => c.perClass[i].chunks) })),
    };
  }

  async openRegion(name: string): Promise<RemoteRegion> {
    for (const n of this.nodes) {
      if (await this.on(n, (p) => p.regionExists(name))) return this.on(n, (p) => p.openRegion(name));
    }
    throw new RegionNotFoundError(`openRegion("${name}"): no region of that name on any node`);
  }

  async destroyRegion(name: string): Promise<void> {
    for (const n of this.nodes) {
      if (await this.on(n, (p) => p.regionExists(name))) return this.on(n, (p) => p.destroyRegion(name));
    }
    throw new RegionNotFoundError(`destroyRegion("${name}"): no region of that name on any node`);
  }

  async regionExists(name: string): Promise<boolean> {
    for (const n of this.nodes) if (await this.on(n, (p) => p.regionExists(name))) return true;
    return false;
  }

  async listRegions(): Promise<RegionInfo[]> {
    return (await this.upNodes((p) => p.listRegions())).flat();
  }

  /** Runs `fn` inside an epoch of every node that is up (nested, one node inside the next). */
  epoch<T>(fn: () => Promise<T> | T): Promise<T> {
    const wrapped = this.nodes.reduce<() => Promise<T>>((inner, n) => () => this.on(n, (p) => p.epoch(inner)), async () => fn());
    return wrapped();
  }

  async reclaim(): Promise<number> {
    return (await this.upNodes((p) => p.reclaim())).reduce((a, b) => a + b, 0);
  }

  /** Closes every node's session. @returns blocks freed, summed */
  async close(): Promise<number> {
    clearInterval(this.timer);
    const freed = await Promise.all(this.nodes.map((n) => n.pool.close().catch(() => 0)));
    return freed.reduce((a, b) => a + b, 0);
  }

  // --------------------------------------------------------- internals

  /** Runs `fn` on node `n`; an unreachable node becomes NodeUnavailableError and is skipped by allocations for a while. */
  private async on<T>(n: Node, fn: (p: RemotePool) => Promise<T>): Promise<T> {
    try {
      return await fn(n.pool);
    } catch (err) {
      if (err instanceof TransportUnavailableError && !(err instanceof NodeUnavailableError)) {
        n.downUntil = Date.now() + RETRY_DOWN_MS;
        throw new NodeUnavailableError(n.id, n.url, err);
      }
      throw err;
    }
  }

  private route<T>(gaddr: number, fn: (p: RemotePool) => Promise<T>): Promise<T> {
    const n = typeof gaddr === 'number' ? this.byId.get(nodeOf(gaddr)) : undefined;
    if (n === undefined) return Promise.reject(new InvalidAddressError(`gaddr ${String(gaddr)} is on node ${typeof gaddr === 'number' ? nodeOf(gaddr) : '?'}, which is not one of this pool's nodes (${this.nodeIds.join(', ')})`));
    return this.on(n, fn);
  }

  /** Results of `fn` on every node that answers (down nodes are left out). */
  private async upNodes<T>(fn: (p: RemotePool) => Promise<T>): Promise<T[]> {
    const all = await Promise.all(this.nodes.map((n) => this.on(n, fn).then((v) => ({ v }), (err: unknown) => ({ err }))));
    const out: T[] = [];
    for (const r of all) {
      if ('v' in r) out.push(r.v);
      else if (!(r.err instanceof NodeUnavailableError)) throw r.err;
    }
    if (out.length === 0) throw new TransportUnavailableError(`no memory node is reachable (${this.nodes.map((n) => n.url).join(', ')})`);
    return out;
  }

  /** Nodes in the order an allocation tries them, by policy; nodes recently found down go last. */
  private order(): Node[] {
    const now = Date.now();
    let ns: Node[];
    if (this.policy === 'most-free') {
      ns = [...this.nodes].sort((a, b) => b.freeBytes - a.freeBytes);
    } else {
      const k = this.next++ % this.nodes.length;
      ns = [...this.nodes.slice(k), ...this.nodes.slice(0, k)];
    }
    return [...ns.filter((n) => n.downUntil <= now), ...ns.filter((n) => n.downUntil > now)];
  }

  /** Allocates on the first node of `order()` that has room and answers. */
  private async place<T>(bytes: number, fn: (p: RemotePool) => Promise<T>): Promise<T> {
    let last: unknown = null;
    for (const n of this.order()) {
      try {
        const r = await this.on(n, fn);
        n.freeBytes -= bytes;
        return r;
      } catch (err) {
        if (!(err instanceof NodeUnavailableError) && !(err instanceof PoolExhaustedError)) throw err;
        last = err;
      }
    }
    throw last instanceof PoolExhaustedError ? last : new TransportUnavailableError(`no memory node could take the allocation: ${last instanceof Error ? last.message : String(last)}`);
  }

  /** Re-reads every node's free bytes (most-free). */
  private async refresh(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.pool.census().then((c) => { n.freeBytes = c.freeBytes; }, () => { n.downUntil = Date.now() + RETRY_DOWN_MS; })));
  }

  private makeHeap(): RemoteHeap {
    const first = this.nodes[0].pool.heap;
    return {
      get classSizes() { return first.classSizes; },
      alloc: (bytes) => this.place(bytes, (p) => p.heap.alloc(bytes)),
      free: (gaddr) => this.route(gaddr, (p) => p.heap.free(gaddr)),
      freeDelayed: (gaddr) => this.route(gaddr, (p) => p.heap.freeDelayed(gaddr)),
      flush: async () => (await this.upNodes((p) => p.heap.flush())).reduce((a, b) => a + b, 0),
      trim: async () => (await this.upNodes((p) => p.heap.trim())).reduce((a, b) => a + b, 0),
      stats: async (): Promise<HeapStats> => sumHeapStats(await this.upNodes((p) => p.heap.stats())),
    };
  }
}

/** Heap censuses of several nodes added up, class by class. */
function sumHeapStats(all: HeapStats[]): HeapStats {
  const sum = (f: (h: HeapStats) => number): number => all.reduce((a, h) => a + f(h), 0);
  const slabBytes = sum((h) => h.slabBytes);
  const requestedBytes = sum((h) => h.requestedBytes);
  return {
    perClass: all[0].perClass.map((c, i) => ({
      ...c, slabs: sum((h) => h.perClass[i].slabs), objects: sum((h) => h.perClass[i].objects),
      cached: sum((h) => h.perClass[i].cached), requestedBytes: sum((h) => h.perClass[i].requestedBytes),
    })),
    slabBytes, reservedBytes: sum((h) => h.reservedBytes), requestedBytes,
    fragmentation: slabBytes === 0 ? 0 : 1 - requestedBytes / slabBytes, cachedHere: sum((h) => h.cachedHere),
  };
}

/**
 * Opens a pool over several memory nodes: a list of URLs, or a NodesConfig
 * (see loadNodesConfig). Every node must answer at open.
 * @throws NodeUnavailableError (a node does not answer), InvalidArgumentError
 *   (a node id differs from the config, or two nodes share one), AuthFailedError
 */
export async function openNodesPool(nodes: string[] | NodesConfig, opts: NodesPoolOptions = {}): Promise<NodesPool> {
  if (Array.isArray(nodes)) return NodesPool.open(nodes.map((url) => ({ url })), opts);
  return NodesPool.open(nodes.nodes, { ...opts, token: opts.token ?? nodes.token, policy: opts.policy ?? nodes.policy });
}
