/**
 * `dmem bench paging`: far-memory spaces (src/space.ts) under each eviction
 * policy, against Belady's MIN on the same trace (the ceiling) and the same
 * workload on plain local memory (the floor of what paging costs).
 *
 *   patterns (mmapbench: Crotty, Leis, Pavlo, "Are You Sure You Want to Use
 *   MMAP in Your Database Management System?", CIDR '22): one access reads
 *   one f64 at a random 8-aligned offset of a page chosen
 *     sequential   pages 0, 1, 2, ... cyclically
 *     uniform      uniformly at random
 *     hotset       90% of accesses on a random 10% of the pages, 10% on all
 *   over a space 4x its cache (by default), populated first (one write of
 *   every page, counted in the hit ratio for the policy and for MIN alike).
 *
 *   pagerank: GAP's PageRank (pull, damping 0.85; Beamer et al., src/pr.cc)
 *   on a Kronecker graph (src/bench/kronecker.ts) whose CSR arrays and
 *   score arrays live in a space with a cache of a quarter of its per-vertex
 *   arrays (or `prCacheBytes`), for a
 *   fixed number of iterations; the result must equal the local run's bit
 *   for bit (same operations in the same order), else the run fails.
 *
 * Hit ratios and page counts are deterministic (same seed, same trace);
 * throughput is the median over `reps` repetitions, the policies and the
 * local floor interleaved within each repetition.
 */
import { Prng } from './prng.js';
import { median } from './percentile.js';
import { kroneckerGraph, type CsrGraph } from './kronecker.js';
import { beladyMin, type PageTrace } from '../paging/belady.js';
import { PAGE_BYTES, POLICIES, createSpace, type PagingPolicy, type Prefetch, type Space, type SpaceStats } from '../space.js';
import type { Pool } from '../pool.js';
import { BenchError, BenchMismatchError } from '../errors.js';

export const PATTERNS = ['sequential', 'uniform', 'hotset'] as const;
export type Pattern = typeof PATTERNS[number];
export type Backing = 'shm' | 'tcp' | 'shm+tcp';
/** What a cell's space is, beside its policy and prefetch. */
export interface CellKind { backing: Backing; overlap: boolean | null }
const SHM: CellKind = { backing: 'shm', overlap: null };

/** One result line: a (workload, policy, prefetch) cell, or the local floor (policy 'local'). */
export interface PagingResult {
  test: 'paging';
  workload: Pattern | 'pagerank';
  policy: PagingPolicy | 'local';
  prefetch: Prefetch | null;
  /** Where the space's pages live: the shm pool, a loopback tcp pool, or near shm with far tcp (tiered). */
  backing: Backing;
  /** AsyncSpace only: a miss's page I/O overlapped (true) or one operation after another (false); null for a Space. */
  overlap: boolean | null;
  spaceBytes: number;
  cacheBytes: number;
  /** Page accesses (populate + run); null for the local floor. */
  accesses: number | null;
  hitRatio: number | null;
  /** MIN's hit ratio on the same trace with the same cache (demand paging). */
  minHitRatio: number | null;
  fetched: number | null;
  writtenBack: number | null;
  evictions: number | null;
  prefetched: number | null;
  /** Tiered only: pages moved far -> near and near -> far (null otherwise). */
  promoted: number | null;
  demoted: number | null;
  /** Median over reps: accesses per second for patterns, edges traversed per second for pagerank. */
  opsPerSec: number;
  unit: 'accesses/s' | 'edges/s';
  reps: number;
}

export interface PagingBenchOptions {
  pool: Pool;
  /** Space bytes for the patterns (default 64 MiB). */
  spaceBytes: number;
  /** Cache bytes for the patterns (default spaceBytes / 4). */
  cacheBytes: number;
  /** Accesses per pattern run. */
  accesses: number;
  patterns: readonly Pattern[];
  policies: readonly PagingPolicy[];
  prefetches: readonly Prefetch[];
  /** Kronecker scale for pagerank; 0 skips it. */
  scale: number;
  /** PageRank's cache bytes (default a quarter of its space). */
  prCacheBytes?: number;
  iterations: number;
  reps: number;
  seed: number;
  /** Called before each run (progress). */
  onRun?: (what: string) => void;
}

/** Runs the patterns then pagerank; returns one result per cell. */
export async function runPagingBench(o: PagingBenchOptions): Promise<PagingResult[]> {
  const results: PagingResult[] = [];
  for (const pattern of o.patterns) results.push(...await patternCells(o, pattern));
  if (o.scale > 0) results.push(...pagerankCells(o));
  return results;
}

// ------------------------------------------------------------ patterns

/** The page of access `i`; `hot` is the hot set (hotset only). */
function pageOf(pattern: Pattern, i: number, pages: number, rng: Prng, hot: Uint32Array): number {
  if (pattern === 'sequential') return i % pages;
  if (pattern === 'uniform') return rng.below(pages);
  return rng.below(10) < 9 ? hot[rng.below(hot.length)] : rng.below(pages);
}

export function hotSet(pages: number, seed: number): Uint32Array {
  const rng = new Prng(seed ^ 0x5bd1e995);
  const all = new Uint32Array(pages);
  for (let i = 0; i < pages; i++) all[i] = i;
  const n = Math.max(1, Math.floor(pages / 10));
  for (let i = 0; i < n; i++) {
    const j = i + rng.below(pages - i);
    const t = all[i];
    all[i] = all[j];
    all[j] = t;
  }
  return all.slice(0, n);
}

/**
 * Runs `pattern` for `o.accesses` accesses through `get` (an f64 read at a
 * byte offset: a space's getF64, or a DataView's); returns accesses per
 * second. A value, not a Promise, is used at once (a Space runs with no
 * await in its loop); a Promise is awaited (an AsyncSpace).
 */
export async function timedPattern(get: (offset: number) => number | Promise<number>, pages: number, pattern: Pattern, o: Pick<PagingBenchOptions, 'seed' | 'accesses'>, hot: Uint32Array): Promise<number> {
  const rng = new Prng(o.seed);
  let sink = 0;
  const t0 = performance.now();
  for (let i = 0; i < o.accesses; i++) {
    const page = pageOf(pattern, i, pages, rng, hot);
    const v = get(page * PAGE_BYTES + rng.below(PAGE_BYTES / 8) * 8);
    sink += typeof v === 'number' ? v : await v;
  }
  const s = (performance.now() - t0) / 1000;
  if (Number.isNaN(sink)) throw new BenchError('unreachable: the populated space holds no NaN');
  return o.accesses / s;
}

/** One write of every page, 64 KiB at a time, with a pattern of small integers as f64. */
export async function populate(write: (offset: number, bytes: Uint8Array) => void | Promise<void>, bytes: number): Promise<void> {
  const chunk = new Float64Array(8192);
  for (let off = 0; off < bytes; off += chunk.byteLength) {
    for (let i = 0; i < chunk.length; i++) chunk[i] = (off / 8 + i) % 1000;
    const b = new Uint8Array(chunk.buffer, 0, Math.min(chunk.byteLength, bytes - off));
    await write(off, b);
  }
}

async function patternCells(o: PagingBenchOptions, pattern: Pattern): Promise<PagingResult[]> {
  const pages = Math.ceil(o.spaceBytes / PAGE_BYTES);
  const hot = hotSet(pages, o.seed);
  const cells = new Map<string, { stats: SpaceStats | null; trace: PageTrace | null; slots: number; rates: number[]; policy: PagingPolicy | 'local'; prefetch: Prefetch | null }>();
  const local = new DataView(new ArrayBuffer(o.spaceBytes));
  await populate((off, b) => new Uint8Array(local.buffer).set(b, off), o.spaceBytes);
  for (let rep = 0; rep < o.reps; rep++) {
    o.onRun?.(`${pattern} rep ${rep + 1}/${o.reps}: local`);
    const lc = cells.get('local') ?? { stats: null, trace: null, slots: 0, rates: [], policy: 'local', prefetch: null };
    lc.rates.push(await timedPattern((off) => local.getFloat64(off, true), pages, pattern, o, hot));
    cells.set('local', lc);
    for (const prefetch of o.prefetches) {
      for (const policy of o.policies) {
        o.onRun?.(`${pattern} rep ${rep + 1}/${o.reps}: ${policy}, prefetch ${prefetch}`);
        const key = `${policy}/${prefetch}`;
        const first = !cells.has(key);
        const needTrace = first && ![...cells.values()].some((c) => c.trace !== null);
        const space = createSpace(o.pool, o.spaceBytes, {
          cacheBytes: o.cacheBytes, policy, prefetch, trace: needTrace,
          prefetchPages: Math.min(32, Math.floor(o.cacheBytes / PAGE_BYTES / 2)),
        });
        try {
          await populate((off, b) => space.write(off, b), o.spaceBytes);
          const rate = await timedPattern((off) => space.getF64(off), pages, pattern, o, hot);
          const c = cells.get(key) ?? { stats: space.stats(), trace: needTrace ? space.trace() : null, slots: space.slots, rates: [], policy, prefetch };
          c.rates.push(rate);
          cells.set(key, c);
        } finally {
          space.close();
        }
      }
    }
  }
  const trace = [...cells.values()].find((c) => c.trace !== null)?.trace ?? null;
  const slots = [...cells.values()].find((c) => c.slots > 0)?.slots ?? 0;
  const min = trace ? beladyMin(trace, slots) : null;
  return [...cells.values()].map((c) => row(pattern, c.policy, c.prefetch, o.spaceBytes, o.cacheBytes, c.stats, min?.hitRatio ?? null, c.rates, 'accesses/s'));
}

/** One result line; `kind` says the backing (default the shm pool, a Space). */
export function row(
  workload: Pattern | 'pagerank', policy: PagingPolicy | 'local', prefetch: Prefetch | null, spaceBytes: number, cacheBytes: number,
  s: SpaceStats | null, minHitRatio: number | null, rates: number[], unit: 'accesses/s' | 'edges/s', kind: CellKind = SHM,
): PagingResult {
  const tiered = kind.backing === 'shm+tcp';
  return {
    test: 'paging', workload, policy, prefetch, backing: kind.backing, overlap: kind.overlap, spaceBytes, cacheBytes,
    accesses: s?.accesses ?? null, hitRatio: s?.hitRatio ?? null, minHitRatio: s ? minHitRatio : null,
    fetched: s?.fetched ?? null, writtenBack: s?.writtenBack ?? null, evictions: s?.evictions ?? null, prefetched: s?.prefetched ?? null,
    promoted: tiered ? s?.promoted ?? null : null, demoted: tiered ? s?.demoted ?? null : null,
    opsPerSec: median(rates), unit, reps: rates.length,
  };
}

// ------------------------------------------------------------ pagerank

const DAMPING = 0.85;

/** Byte layout of a graph and its scores in a space: offsets u32, neighbors u32, scores f64, contributions f64. */
function layout(g: CsrGraph): { neighbors: number; scores: number; contrib: number; bytes: number } {
  const neighbors = (g.vertices + 1) * 4;
  const scores = Math.ceil((neighbors + g.edges * 4) / 8) * 8;
  const contrib = scores + g.vertices * 8;
  return { neighbors, scores, contrib, bytes: contrib + g.vertices * 8 };
}

/** GAP's pull PageRank on local typed arrays, `iters` iterations; returns the scores. */
function pagerankLocal(g: CsrGraph, iters: number): { scores: Float64Array; seconds: number } {
  const n = g.vertices;
  const base = (1 - DAMPING) / n;
  const scores = new Float64Array(n).fill(1 / n);
  const contrib = new Float64Array(n);
  const t0 = performance.now();
  for (let it = 0; it < iters; it++) {
    for (let u = 0; u < n; u++) {
      const deg = g.offsets[u + 1] - g.offsets[u];
      contrib[u] = deg > 0 ? scores[u] / deg : 0;
    }
    for (let u = 0; u < n; u++) {
      let sum = 0;
      for (let e = g.offsets[u]; e < g.offsets[u + 1]; e++) sum += contrib[g.neighbors[e]];
      scores[u] = base + DAMPING * sum;
    }
  }
  return { scores, seconds: (performance.now() - t0) / 1000 };
}

/** The same on a space: neighbor lists read in one call per vertex, one access per contribution read. */
function pagerankSpace(g: CsrGraph, space: Space, iters: number, maxDegree: number): { scores: Float64Array; seconds: number } {
  const n = g.vertices;
  const L = layout(g);
  const base = (1 - DAMPING) / n;
  for (let u = 0; u < n; u++) space.setF64(L.scores + u * 8, 1 / n);
  const list = new Uint8Array(maxDegree * 4);
  const listU32 = new Uint32Array(list.buffer);
  const t0 = performance.now();
  for (let it = 0; it < iters; it++) {
    for (let u = 0; u < n; u++) {
      const deg = space.getU32((u + 1) * 4) - space.getU32(u * 4);
      space.setF64(L.contrib + u * 8, deg > 0 ? space.getF64(L.scores + u * 8) / deg : 0);
    }
    for (let u = 0; u < n; u++) {
      const start = space.getU32(u * 4);
      const deg = space.getU32((u + 1) * 4) - start;
      space.readInto(L.neighbors + start * 4, list.subarray(0, deg * 4));
      let sum = 0;
      for (let i = 0; i < deg; i++) sum += space.getF64(L.contrib + listU32[i] * 8);
      space.setF64(L.scores + u * 8, base + DAMPING * sum);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  const scores = new Float64Array(n);
  for (let u = 0; u < n; u++) scores[u] = space.getF64(L.scores + u * 8);
  return { scores, seconds };
}

function pagerankCells(o: PagingBenchOptions): PagingResult[] {
  o.onRun?.(`pagerank: generating the Kronecker graph of scale ${o.scale}`);
  const g = kroneckerGraph(o.scale, o.seed);
  const L = layout(g);
  let maxDegree = 0;
  for (let v = 0; v < g.vertices; v++) maxDegree = Math.max(maxDegree, g.offsets[v + 1] - g.offsets[v]);
  // Default cache: a quarter of the per-vertex arrays (offsets, scores,
  // contributions: 20 B per vertex), so the random contribution reads do not
  // all fit and the policies differ; with a quarter of the whole space they
  // would (0.999 hits for every policy at scale 18).
  const cacheBytes = o.prCacheBytes ?? Math.max(8 * PAGE_BYTES, Math.floor((g.vertices * 20) / 4 / PAGE_BYTES) * PAGE_BYTES);
  const prefetchPages = Math.min(32, Math.floor(Math.min(cacheBytes, L.bytes) / PAGE_BYTES / 2));
  const traversed = g.edges * o.iterations;
  const local: number[] = [];
  const cells = new Map<string, { policy: PagingPolicy; prefetch: Prefetch; stats: SpaceStats; rates: number[] }>();
  let trace: PageTrace | null = null;
  let slots = 0;
  let reference: Float64Array | null = null;
  for (let rep = 0; rep < o.reps; rep++) {
    o.onRun?.(`pagerank rep ${rep + 1}/${o.reps}: local`);
    const l = pagerankLocal(g, o.iterations);
    reference = l.scores;
    local.push(traversed / l.seconds);
    for (const [policy, prefetch] of o.prefetches.flatMap((pf) => o.policies.map((p) => [p, pf] as const))) {
      o.onRun?.(`pagerank rep ${rep + 1}/${o.reps}: ${policy}, prefetch ${prefetch}`);
      const needTrace = trace === null;
      const space = createSpace(o.pool, L.bytes, { cacheBytes, policy, prefetch, prefetchPages, trace: needTrace });
      try {
        space.write(0, new Uint8Array(g.offsets.buffer, g.offsets.byteOffset, g.offsets.byteLength));
        space.write(L.neighbors, new Uint8Array(g.neighbors.buffer, g.neighbors.byteOffset, g.neighbors.byteLength));
        const r = pagerankSpace(g, space, o.iterations, maxDegree);
        for (let u = 0; u < g.vertices; u++) {
          if (r.scores[u] !== reference[u]) throw new BenchMismatchError(`pagerank on the ${policy} space differs from the local run at vertex ${u}: ${r.scores[u]} != ${reference[u]}`);
        }
        if (needTrace) {
          trace = space.trace();
          slots = space.slots;
        }
        const key = `${policy}/${prefetch}`;
        const c = cells.get(key) ?? { policy, prefetch, stats: space.stats(), rates: [] };
        c.rates.push(traversed / r.seconds);
        cells.set(key, c);
      } finally {
        space.close();
      }
    }
  }
  o.onRun?.('pagerank: replaying MIN');
  const min = trace ? beladyMin(trace, slots) : null;
  trace = null;
  return [
    row('pagerank', 'local', null, L.bytes, cacheBytes, null, null, local, 'edges/s'),
    ...[...cells.values()].map((c) => row('pagerank', c.policy, c.prefetch, L.bytes, cacheBytes, c.stats, min?.hitRatio ?? null, c.rates, 'edges/s')),
  ];
}

export { POLICIES };
