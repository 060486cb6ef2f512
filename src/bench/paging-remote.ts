/**
 * The tcp part of `dmem bench paging`: mmapbench's patterns (src/bench/
 * paging.ts) on an AsyncSpace whose pages live in a tcp pool, and on a
 * tiered one with the near tier in the bench's shm pool and the far tier
 * in that tcp pool (Rcmp's shape: a near CXL-like tier in front of a
 * network one). The bench starts its own memory server on 127.0.0.1,
 * port 0 (a memory: pool in this process, reached over loopback TCP),
 * and stops it at the end.
 *
 * Per pattern and policy: prefetch none, and sequential prefetch with the
 * miss's page I/O overlapped (the N = 32 fetches in flight together) and
 * not (one after another), interleaved within each repetition; the
 * throughput is the median of the repetitions. Hit ratios and page counts
 * equal those of the same cell on shm (the decisions are deterministic and
 * see the same accesses); what the backing changes is the cost of a miss.
 */
import { randomBytes } from 'node:crypto';
import { beladyMin, type PageTrace } from '../paging/belady.js';
import { createAsyncSpace, type AsyncSpace, type PagingPolicy, type Prefetch, type SpaceStats } from '../space.js';
import type { Pool } from '../pool.js';
import { serveTcp } from '../transports/tcp/server.js';
import { openTcpPool, type RemotePool } from '../transports/tcp/index.js';
import { PAGE_BYTES } from '../paging/store.js';
import { hotSet, populate, row, timedPattern, type CellKind, type Pattern, type PagingResult } from './paging.js';

export interface PagingRemoteOptions {
  /** The shm pool: the near tier of the tiered cells. */
  pool: Pool;
  spaceBytes: number;
  cacheBytes: number;
  /** Near-tier bytes of the tiered cells (default cacheBytes). */
  nearBytes?: number;
  accesses: number;
  patterns: readonly Pattern[];
  policies: readonly PagingPolicy[];
  /** Also the tiered cells (near shm, far tcp; default true). */
  tiered?: boolean;
  reps: number;
  seed: number;
  onRun?: (what: string) => void;
}

/** The variants of one (pattern, policy): backing, prefetch and overlap. */
const VARIANTS: ReadonlyArray<{ prefetch: Prefetch; overlap: boolean }> = [
  { prefetch: 'none', overlap: true },
  { prefetch: 'sequential', overlap: true },
  { prefetch: 'sequential', overlap: false },
];

/** Runs the tcp cells (see the file comment); returns one result per cell. */
export async function runPagingRemoteBench(o: PagingRemoteOptions): Promise<PagingResult[]> {
  const token = randomBytes(24).toString('hex');
  // Every page of every space of one rep, with room for the allocator's metadata.
  const size = Math.max(64 * 2 ** 20, Math.ceil((o.spaceBytes * 2) / 2 ** 21) * 2 ** 21);
  const srv = await serveTcp('memory:', { size, token, listen: '127.0.0.1:0' });
  try {
    const remote = await openTcpPool(srv.url, { token });
    try {
      const results: PagingResult[] = [];
      for (const pattern of o.patterns) results.push(...await cells(o, pattern, remote));
      return results;
    } finally {
      await remote.close();
    }
  } finally {
    await srv.close();
  }
}

type Remote = RemotePool;

async function cells(o: PagingRemoteOptions, pattern: Pattern, remote: Remote): Promise<PagingResult[]> {
  const pages = Math.ceil(o.spaceBytes / PAGE_BYTES);
  const hot = hotSet(pages, o.seed);
  const backings: CellKind['backing'][] = o.tiered === false ? ['tcp'] : ['tcp', 'shm+tcp'];
  const found = new Map<string, { kind: CellKind; policy: PagingPolicy; prefetch: Prefetch; stats: SpaceStats; rates: number[] }>();
  let trace: PageTrace | null = null;
  let slots = 0;
  for (let rep = 0; rep < o.reps; rep++) {
    for (const backing of backings) {
      for (const policy of o.policies) {
        for (const { prefetch, overlap } of VARIANTS) {
          const label = `${pattern} rep ${rep + 1}/${o.reps}: ${backing}, ${policy}, prefetch ${prefetch}${prefetch === 'none' ? '' : overlap ? ', overlapped' : ', one at a time'}`;
          o.onRun?.(label);
          const needTrace = trace === null;
          const space: AsyncSpace = createAsyncSpace(backing === 'tcp' ? remote : o.pool, o.spaceBytes, {
            cacheBytes: o.cacheBytes, policy, prefetch, overlap, trace: needTrace,
            prefetchPages: Math.min(32, Math.floor(o.cacheBytes / PAGE_BYTES / 2)),
            ...(backing === 'shm+tcp' ? { far: remote, nearBytes: o.nearBytes ?? o.cacheBytes } : {}),
          });
          try {
            await populate((off, b) => space.write(off, b), o.spaceBytes);
            const rate = await timedPattern((off) => space.getF64(off), pages, pattern, o, hot);
            if (needTrace) {
              trace = space.trace();
              slots = space.slots;
            }
            const key = `${backing}/${policy}/${prefetch}/${overlap}`;
            const c = found.get(key) ?? { kind: { backing, overlap }, policy, prefetch, stats: space.stats(), rates: [] };
            c.rates.push(rate);
            found.set(key, c);
          } finally {
            await space.close();
          }
        }
      }
    }
  }
  const min = trace ? beladyMin(trace, slots) : null;
  return [...found.values()].map((c) => row(pattern, c.policy, c.prefetch, o.spaceBytes, o.cacheBytes, c.stats, min?.hitRatio ?? null, c.rates, 'accesses/s', c.kind));
}
