/**
 * Summaries of latency samples (ns) gathered from several processes: one
 * sort of the concatenated samples, nearest-rank percentiles.
 */

/** Mean, percentiles and maximum of a set of latency samples, all in ns. */
export interface LatencySummary {
  /** Number of samples. */
  samples: number;
  meanNs: number;
  p50Ns: number;
  p99Ns: number;
  maxNs: number;
}

/**
 * The q-quantile (0 < q <= 1) of an ascending array by nearest rank: the
 * smallest sample with at least q * n samples at or below it. 0 for an empty array.
 */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1];
}

/**
 * Summarises every sample of every array (ns); the inputs are not modified.
 * All zeros when there is no sample.
 */
export function summarize(parts: readonly Float64Array[]): LatencySummary {
  let n = 0;
  for (const p of parts) n += p.length;
  const all = new Float64Array(n);
  let at = 0;
  let sum = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
    for (let i = 0; i < p.length; i++) sum += p[i];
  }
  all.sort();
  return {
    samples: n,
    meanNs: n > 0 ? sum / n : 0,
    p50Ns: percentile(all, 0.5),
    p99Ns: percentile(all, 0.99),
    maxNs: n > 0 ? all[n - 1] : 0,
  };
}

/** The median of `values` (mean of the two middle ones for an even count); NaN when empty. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
