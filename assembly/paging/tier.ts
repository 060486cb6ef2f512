/**
 * Two-tier placement (Rcmp, TACO '23: hot pages are swapped into the CXL
 * tier, cold ones stay in the RDMA tier): which pages of a space live in
 * the near pool. A page's heat (slots.ts) is known while it is cached; when
 * it leaves the cache its key is kept here if the page is near, so a near
 * page's heat goes on decaying while it is not cached.
 *
 *   on eviction of page p with heat h:
 *     p near, h <  cold          -> DEMOTE p (its bytes go back to the far pool)
 *     p near, h >= cold          -> stays near, keyed by h
 *     p far,  h >= hot, room     -> PROMOTE p
 *     p far,  h >= hot, full     -> PROMOTE p if the coldest uncached near
 *                                   page q is colder than p; q is DISPLACED
 *     otherwise                  -> stays far
 *   sweep: every uncached near page colder than `cold` is demoted.
 *
 * Entries: `cap` ids with page and key arrays, a PageTable for lookup, and
 * a min-heap of the uncached ones (cached near pages leave the heap: their
 * key lives in their slot until eviction). Free ids are a stack.
 */
import { arenaAlloc } from './arena';
import { MinHeap } from './minheap';
import { heatOf } from './slots';
import { NO_PAGE, PageTable } from './table';

export const TIER_STAY: i32 = 0;
export const TIER_PROMOTE: i32 = 1;
export const TIER_DEMOTE: i32 = 2;

let cap: u32 = 0;
let count: u32 = 0;
let hot: f64 = 0;
let cold: f64 = 0;
let pageArr: usize = 0;
let keyArr: usize = 0;
let freeArr: usize = 0;
const table = new PageTable();
const uncached = new MinHeap();

/** The near page displaced by the last TIER_PROMOTE, or NO_PAGE. */
export let displaced: u32 = NO_PAGE;

/** Room for `nearPages` near pages; heats `hotHeat` > `coldHeat` >= 0. False when memory is short. */
export function tierSetup(nearPages: u32, hotHeat: f64, coldHeat: f64): bool {
  cap = nearPages;
  count = 0;
  hot = hotHeat;
  cold = coldHeat;
  if (cap == 0) return true;
  const p = arenaAlloc(<usize>cap * 16);
  if (p == 0) return false;
  keyArr = p;
  pageArr = p + (<usize>cap << 3);
  freeArr = pageArr + (<usize>cap << 2);
  for (let i: u32 = 0; i < cap; i++) store<u32>(freeArr + (<usize>i << 2), cap - 1 - i);
  return table.setup(cap, pageArr) && uncached.setup(cap, keyArr);
}

@inline function keyOf(e: u32): f64 { return load<f64>(keyArr + (<usize>e << 3)); }
@inline function setKey(e: u32, k: f64): void { store<f64>(keyArr + (<usize>e << 3), k); }
@inline function pageOf(e: u32): u32 { return load<u32>(pageArr + (<usize>e << 2)); }

function add(page: u32, k: f64): void {
  const e = load<u32>(freeArr + (<usize>(cap - 1 - count) << 2));
  count++;
  store<u32>(pageArr + (<usize>e << 2), page);
  setKey(e, k);
  table.insert(e);
  uncached.push(e);
}

function drop(e: u32): void {
  if (uncached.has(e)) uncached.remove(e);
  table.remove(e);
  store<u32>(pageArr + (<usize>e << 2), NO_PAGE);
  count--;
  store<u32>(freeArr + (<usize>(cap - 1 - count) << 2), e);
}

/** Drops `page` from the near tier (the host could not move it there). */
export function tierForget(page: u32): void {
  if (cap == 0) return;
  const e = table.find(page);
  if (e >= 0) drop(<u32>e);
}

/** Near pages now. */
export function nearCount(): u32 { return count; }

/** True when `page` is near. */
export function isNear(page: u32): bool { return cap > 0 && table.find(page) >= 0; }

/**
 * `page` enters the cache: returns its kept key if it is near (and takes it
 * off the uncached heap), NaN otherwise.
 */
export function tierCached(page: u32): f64 {
  if (cap == 0) return NaN;
  const e = table.find(page);
  if (e < 0) return NaN;
  if (uncached.has(<u32>e)) uncached.remove(<u32>e);
  return keyOf(<u32>e);
}

/** `page` with key `k` leaves the cache: returns TIER_STAY/PROMOTE/DEMOTE and sets `displaced`. */
export function tierEvicted(page: u32, k: f64): i32 {
  displaced = NO_PAGE;
  if (cap == 0) return TIER_STAY;
  const h = heatOf(k);
  const e = table.find(page);
  if (e >= 0) {
    if (h < cold) {
      drop(<u32>e);
      return TIER_DEMOTE;
    }
    setKey(<u32>e, k);
    uncached.push(<u32>e);
    return TIER_STAY;
  }
  if (h < hot) return TIER_STAY;
  if (count == cap) {
    if (uncached.size == 0) return TIER_STAY;
    const q = uncached.min();
    if (heatOf(keyOf(q)) >= h) return TIER_STAY;
    displaced = pageOf(q);
    drop(q);
  }
  add(page, k);
  return TIER_PROMOTE;
}

const swept = memory.data(4 * 256);

/** Demotes up to `max` (<= 256) uncached near pages colder than `cold`; returns how many (pages via sweptPage). */
export function tierSweep(max: u32): u32 {
  if (max > 256) max = 256;
  let n: u32 = 0;
  while (n < max && uncached.size > 0) {
    const q = uncached.min();
    if (heatOf(keyOf(q)) >= cold) break;
    store<u32>(swept + (<usize>n << 2), pageOf(q));
    n++;
    drop(q);
  }
  return n;
}

/** Page `i` of the last sweep. */
export function sweptPage(i: u32): u32 { return load<u32>(swept + (<usize>i << 2)); }
