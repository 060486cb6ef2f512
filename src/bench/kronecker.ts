/**
 * Kronecker graphs as the GAP Benchmark Suite generates them (Beamer,
 * Asanović, Patterson, "The GAP Benchmark Suite", arXiv:1508.03619;
 * src/generator.h): Graph500's R-MAT parameters A = 0.57, B = C = 0.19,
 * 2^scale vertices, 16 * 2^scale edges, vertex ids permuted at random, then
 * built undirected with self-loops and duplicate edges removed (GAP's
 * builder, "squish"). Deterministic for a seed (src/bench/prng.ts).
 */
import { Prng } from './prng.js';

/** An undirected graph in CSR form: the neighbors of v are neighbors[offsets[v] .. offsets[v+1]), sorted. */
export interface CsrGraph {
  vertices: number;
  /** Directed edge entries (each undirected edge twice). */
  edges: number;
  offsets: Uint32Array;
  neighbors: Uint32Array;
}

const A = 0.57;
const B = 0.19;
const C = 0.19;
/** GAP's default edges per vertex. */
export const KRON_DEGREE = 16;

/** Generates the Kronecker graph of `scale` (2^scale vertices), 1 <= scale <= 24. */
export function kroneckerGraph(scale: number, seed: number): CsrGraph {
  const n = 2 ** scale;
  const m = n * KRON_DEGREE;
  const rng = new Prng(seed);
  const src = new Uint32Array(m);
  const dst = new Uint32Array(m);
  for (let e = 0; e < m; e++) {
    let s = 0;
    let d = 0;
    for (let depth = 0; depth < scale; depth++) {
      const r = rng.next() / 4294967296;
      s *= 2;
      d *= 2;
      if (r < A + B) {
        if (r > A) d++;
      } else {
        s++;
        if (r > A + B + C) d++;
      }
    }
    src[e] = s;
    dst[e] = d;
  }
  // GAP permutes ids so that degree does not follow id (Fisher-Yates).
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  const degree = new Uint32Array(n + 1);
  for (let e = 0; e < m; e++) {
    src[e] = perm[src[e]];
    dst[e] = perm[dst[e]];
    if (src[e] === dst[e]) continue;
    degree[src[e]]++;
    degree[dst[e]]++;
  }
  const start = new Uint32Array(n + 1);
  for (let v = 0; v < n; v++) start[v + 1] = start[v] + degree[v];
  const fill = start.slice(0, n);
  const raw = new Uint32Array(start[n]);
  for (let e = 0; e < m; e++) {
    const s = src[e];
    const d = dst[e];
    if (s === d) continue;
    raw[fill[s]++] = d;
    raw[fill[d]++] = s;
  }
  // Sort each list and drop duplicates, compacting in place.
  const offsets = new Uint32Array(n + 1);
  let out = 0;
  for (let v = 0; v < n; v++) {
    const list = raw.subarray(start[v], start[v + 1]).sort();
    offsets[v] = out;
    for (let i = 0; i < list.length; i++) if (i === 0 || list[i] !== list[i - 1]) raw[out++] = list[i];
  }
  offsets[n] = out;
  return { vertices: n, edges: out, offsets, neighbors: raw.slice(0, out) };
}
