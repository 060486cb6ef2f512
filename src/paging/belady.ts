/**
 * Belady's MIN (L. A. Belady, "A study of replacement algorithms for a
 * virtual-storage computer", IBM Systems Journal 5(2), 1966): on a miss with
 * a full cache, evict the resident page whose next use is farthest in the
 * future. No demand-paging policy with the same cache size has more hits on
 * the same trace (Mattson et al., 1970), so its hit ratio is the ceiling
 * the bench reports beside each policy. Offline: it needs the whole trace.
 *
 * A trace is run-length encoded as a space records it (Space.trace()):
 * `pages[i]` accessed `runs[i]` times in a row. The first access of a run
 * behaves like one access; the other runs[i] - 1 are hits for every policy
 * that keeps the page it just fetched, MIN included.
 *
 * O(n log c): next uses from one backward pass, then a max-heap of resident
 * pages keyed by next use, with stale entries skipped on pop (a page's
 * entry is stale once it was used again, which pushed a fresh one).
 */

/** A page-access trace: page i was accessed runs[i] times in a row. */
export interface PageTrace {
  pages: Uint32Array;
  runs: Uint32Array;
}

/** What MIN does on a trace with a cache of `slots` pages. */
export interface MinResult {
  accesses: number;
  hits: number;
  misses: number;
  hitRatio: number;
}

/** Replays MIN on `trace` with `slots` cache pages (>= 1). */
export function beladyMin(trace: PageTrace, slots: number): MinResult {
  const { pages, runs } = trace;
  const n = pages.length;
  const NEVER = n;
  // next[i]: the index of the next run of pages[i], or NEVER.
  const next = new Uint32Array(n);
  const last = new Map<number, number>();
  for (let i = n - 1; i >= 0; i--) {
    next[i] = last.get(pages[i]) ?? NEVER;
    last.set(pages[i], i);
  }
  // Max-heap of (next use, page), as parallel arrays; `nextOf` holds the
  // live next use of each resident page (absent: not resident).
  const heapNext = new Uint32Array(n + 1);
  const heapPage = new Uint32Array(n + 1);
  let size = 0;
  const nextOf = new Map<number, number>();
  const push = (nu: number, page: number): void => {
    let i = size++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (heapNext[p] >= nu) break;
      heapNext[i] = heapNext[p];
      heapPage[i] = heapPage[p];
      i = p;
    }
    heapNext[i] = nu;
    heapPage[i] = page;
  };
  const pop = (): void => {
    const nu = heapNext[--size];
    const page = heapPage[size];
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= size) break;
      if (c + 1 < size && heapNext[c + 1] > heapNext[c]) c++;
      if (heapNext[c] <= nu) break;
      heapNext[i] = heapNext[c];
      heapPage[i] = heapPage[c];
      i = c;
    }
    heapNext[i] = nu;
    heapPage[i] = page;
  };
  let accesses = 0;
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const page = pages[i];
    const r = runs[i];
    accesses += r;
    hits += r - 1;
    if (nextOf.has(page)) {
      hits++;
    } else if (nextOf.size >= slots) {
      for (;;) {
        const nu = heapNext[0];
        const victim = heapPage[0];
        pop();
        if (nextOf.get(victim) === nu) {
          nextOf.delete(victim);
          break;
        }
      }
    }
    nextOf.set(page, next[i]);
    push(next[i], page);
  }
  return { accesses, hits, misses: accesses - hits, hitRatio: accesses ? hits / accesses : 0 };
}
