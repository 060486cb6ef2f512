/**
 * The page cache's exports (docs/paging.md, docs/abi.md): one instance
 * keeps the bookkeeping of one far-memory space (src/space.ts). The host
 * holds the page bytes and does the I/O; the core decides which slot a page
 * goes to, which page to evict, and which tier a page belongs in.
 *
 *   pgInit(slots, policy, halfLife, nearPages, hot, cold) -> OK | status
 *   pgAccess(page, write) -> slot, or -1 on a miss (nothing changes)
 *   pgInstall(page, mode) -> slot for `page` (not resident); when a page was
 *     evicted to make room, pgEvictedPage/Dirty/Action/Displaced say which,
 *     whether to write it back, and where it goes
 *
 * Pages are u32 page numbers of the space; slots 0..slots-1. Modes: 0 read
 * miss, 1 write miss, 2 prefetch (not an access), 3 first touch (an access;
 * the page is new, so it starts dirty).
 */
import { E_EXHAUSTED, E_INVALID_ARGUMENT, OK } from '../layout';
import { clockInsert, clockRemove, clockSetup, clockTouch, clockVictim } from './clock';
import { heatInsert, heatRemove, heatSetup, heatTouch, heatVictim } from './heat';
import { linuxInsert, linuxRemove, linuxSetup, linuxTouch, linuxVictim } from './linux';
import { lruInsert, lruRemove, lruSetup, lruTouch, lruVictim } from './lru';
import { POLICIES, POLICY_CLOCK, POLICY_HEAT, POLICY_LINUX, POLICY_LRU } from './policy';
import {
  COLD_KEY, F_DIRTY, F_PREFETCHED, NO_PAGE, advance, bind, bumpKey, clearFlag, addFlag, hasFlag, heatOf, initSlots, lookup,
  nSlots, setSlotKey, slotKey, slotPage, tick, unbind,
} from './slots';
import {
  TIER_STAY, displaced, isNear, nearCount, sweptPage, tierCached, tierEvicted, tierForget, tierSetup, tierSweep,
} from './tier';

const MODE_WRITE: u32 = 1;
const MODE_PREFETCH: u32 = 2;
const MODE_FRESH: u32 = 3;

let policy: u32 = POLICY_LRU;
let filled: u32 = 0;
let evicted: u32 = NO_PAGE;
let evictedDirty: bool = false;
let evictedAction: i32 = TIER_STAY;

/**
 * Sets up a cache of `slots` pages (1 .. 2^24) under `policyId` (0 lru,
 * 1 clock, 2 linux, 3 heat), heat half-life `halfLife` accesses (> 0), and a
 * near tier of `nearPages` (0: one tier) with heat watermarks hot > cold.
 * Call once per instance. Returns OK, E_INVALID_ARGUMENT, or E_EXHAUSTED
 * when the core's memory cannot hold the bookkeeping.
 */
export function pgInit(slots: u32, policyId: u32, halfLife: f64, nearPages: u32, hot: f64, cold: f64): i32 {
  if (slots == 0 || slots > (1 << 24) || policyId >= POLICIES || !(halfLife > 0) || nearPages > (1 << 24)) return E_INVALID_ARGUMENT;
  if (nearPages > 0 && !(hot > cold && cold >= 0)) return E_INVALID_ARGUMENT;
  policy = policyId;
  filled = 0;
  evicted = NO_PAGE;
  if (!initSlots(slots, halfLife)) return E_EXHAUSTED;
  let ok = false;
  switch (policy) {
    case POLICY_LRU: ok = lruSetup(slots); break;
    case POLICY_CLOCK: ok = clockSetup(slots); break;
    case POLICY_LINUX: ok = linuxSetup(slots); break;
    default: ok = heatSetup(slots); break;
  }
  if (!ok || !tierSetup(nearPages, hot, cold)) return E_EXHAUSTED;
  return OK;
}

function policyInsert(s: u32, used: bool): void {
  switch (policy) {
    case POLICY_LRU: lruInsert(s, used); break;
    case POLICY_CLOCK: clockInsert(s, used); break;
    case POLICY_LINUX: linuxInsert(s, used); break;
    default: heatInsert(s, used);
  }
}

function policyTouch(s: u32): void {
  switch (policy) {
    case POLICY_LRU: lruTouch(s); break;
    case POLICY_CLOCK: clockTouch(s); break;
    case POLICY_LINUX: linuxTouch(s); break;
    default: heatTouch(s);
  }
}

function policyVictim(): u32 {
  switch (policy) {
    case POLICY_LRU: return lruVictim();
    case POLICY_CLOCK: return clockVictim();
    case POLICY_LINUX: return linuxVictim();
    default: return heatVictim();
  }
}

function policyRemove(s: u32): void {
  switch (policy) {
    case POLICY_LRU: lruRemove(s); break;
    case POLICY_CLOCK: clockRemove(s); break;
    case POLICY_LINUX: linuxRemove(s); break;
    default: heatRemove(s);
  }
}

/** An access to `page` (a write when `write` != 0): its slot on a hit, -1 on a miss (no state changes). */
export function pgAccess(page: u32, write: u32): i32 {
  const s = lookup(page);
  if (s < 0) return -1;
  advance();
  if (hasFlag(<u32>s, F_PREFETCHED)) {
    // The heat credited at prefetch stood for this access: count it once.
    clearFlag(<u32>s, F_PREFETCHED);
    setSlotKey(<u32>s, bumpKey(COLD_KEY));
  } else {
    setSlotKey(<u32>s, bumpKey(slotKey(<u32>s)));
  }
  if (write != 0) addFlag(<u32>s, F_DIRTY);
  policyTouch(<u32>s);
  return s;
}

/**
 * Gives non-resident `page` a slot (mode: 0 read, 1 write, 2 prefetch,
 * 3 first touch), evicting the policy's victim when the cache is full.
 * Returns the slot, or E_INVALID_ARGUMENT for a resident page or bad mode.
 */
export function pgInstall(page: u32, mode: u32): i32 {
  if (mode > MODE_FRESH || page == NO_PAGE || lookup(page) >= 0) return E_INVALID_ARGUMENT;
  evicted = NO_PAGE;
  evictedDirty = false;
  evictedAction = TIER_STAY;
  let s: u32;
  if (filled < nSlots) {
    s = filled++;
  } else {
    s = policyVictim();
    evicted = slotPage(s);
    evictedDirty = hasFlag(s, F_DIRTY);
    policyRemove(s);
    evictedAction = tierEvicted(evicted, slotKey(s));
    unbind(s);
  }
  let k = tierCached(page);
  if (isNaN(k)) k = COLD_KEY;
  const used = mode != MODE_PREFETCH;
  // A prefetched page is keyed as if used now (without counting an
  // access; its first real access replaces this credit): keyed cold, it
  // would be the heat policy's next victim and the next prefetch would
  // evict it before its use.
  if (used) advance();
  k = bumpKey(k);
  setSlotKey(s, k);
  bind(s, page, mode == MODE_WRITE || mode == MODE_FRESH ? F_DIRTY : used ? 0 : F_PREFETCHED);
  policyInsert(s, used);
  return <i32>s;
}

/** The page the last pgInstall evicted, or -1. */
export function pgEvictedPage(): f64 { return evicted == NO_PAGE ? -1 : <f64>evicted; }
/** 1 when the evicted page was dirty (write it back). */
export function pgEvictedDirty(): i32 { return evictedDirty ? 1 : 0; }
/** Where the evicted page goes: 0 stays in its tier, 1 to the near tier, 2 back to the far tier. */
export function pgEvictedAction(): i32 { return evictedAction; }
/** An uncached near page pushed back to the far tier by the last promotion, or -1. */
export function pgDisplacedPage(): f64 { return displaced == NO_PAGE ? -1 : <f64>displaced; }

/** The page in slot `s`, or -1 (empty or out of range). */
export function pgSlotPage(s: u32): f64 {
  if (s >= filled) return -1;
  const p = slotPage(s);
  return p == NO_PAGE ? -1 : <f64>p;
}
/** 1 when slot `s` is dirty. */
export function pgSlotDirty(s: u32): i32 { return s < filled && hasFlag(s, F_DIRTY) ? 1 : 0; }
/** Marks slot `s` clean (after the host wrote it back). */
export function pgClean(s: u32): void { if (s < filled) clearFlag(s, F_DIRTY); }
/** Slot `s`'s decayed heat now (accesses). */
export function pgSlotHeat(s: u32): f64 { return s < filled ? heatOf(slotKey(s)) : 0; }
/** Accesses counted so far (the heat clock). */
export function pgTick(): f64 { return tick; }
/** 1 when `page` is in the near tier. */
export function pgIsNear(page: u32): i32 { return isNear(page) ? 1 : 0; }
/** Drops `page` from the near tier (the host could not move it there). */
export function pgTierForget(page: u32): void { tierForget(page); }
/** 1 when `page` is cached (no access is counted). */
export function pgResident(page: u32): i32 { return lookup(page) >= 0 ? 1 : 0; }
/** Pages in the near tier. */
export function pgNearCount(): i32 { return <i32>nearCount(); }
/** Demotes up to `max` (<= 256) uncached near pages that cooled below the cold mark; returns how many. */
export function pgTierSweep(max: u32): i32 { return <i32>tierSweep(max); }
/** Page `i` of the last sweep. */
export function pgSweptPage(i: u32): f64 { return <f64>sweptPage(i); }
