/**
 * The page cache's bookkeeping (docs/paging.md): cache slots, the page
 * table that maps a resident page to its slot, and each slot's access heat.
 * Policies (lru.ts, clock.ts, linux.ts, heat.ts) keep their own per-slot
 * state next to these arrays; the page bytes themselves live in the host
 * (a JS buffer of slots * 4 KiB), so this module sizes only metadata.
 *
 * Memory: one arena from the core's heap, laid out as arrays of `slots`
 * (struct of arrays), allocated by `arenaAlloc` at `pgInit` and never freed
 * (a space owns its core instance). Per slot: page u32, flags u8, heat key
 * f64, plus the policy's own arrays and the page table (table.ts).
 *
 *   flags (u8)
 *   +---+---+---+---+---+---+---+---+
 *   | 0 | 0 | 0 |PF |ACT|REF|DRT|USE|
 *   +---+---+---+---+---+---+---+---+
 *     USE  the slot holds a page        DRT  written since fetched
 *     REF  referenced (clock, linux)    ACT  on linux's active list
 *     PF   prefetched, not accessed since
 *
 * Heat (Rcmp, TACO '23: page hotness that decays so that pages
 * hot long ago turn cold) is an exponentially decayed access count with a
 * half-life of H accesses to the space: heat(t) = sum over past accesses at
 * t_i of 2^-((t - t_i) / H). It is stored as a key k with heat(t) =
 * 2^(k - t/H); every page's heat decays by the same factor, so the order of
 * keys never changes between accesses and a heap keyed on k finds the
 * coldest page in O(log n) (heat.ts, tier.ts).
 *
 * Single-threaded: one instance serves one space of one client; nothing
 * here is shared between processes, so there is no concurrency argument.
 * Deterministic (invariant 4): no clock, no randomness; the tick is the
 * count of accesses.
 */

import { arenaAlloc } from './arena';
import { NO_PAGE, PageTable } from './table';

const DEBUG = !ASC_NO_ASSERT;

export { NO_PAGE };
export const F_USE: u8 = 1;
export const F_DIRTY: u8 = 2;
export const F_REF: u8 = 4;
export const F_ACTIVE: u8 = 8;
export const F_PREFETCHED: u8 = 16;
/** Key of a page never accessed (prefetched only): heat 0. */
export const COLD_KEY: f64 = -1e300;

export let nSlots: u32 = 0;
/** Accesses so far (the heat clock). */
export let tick: f64 = 0;
/** Half-life of heat, in accesses. */
export let halfLife: f64 = 1;

let pageArr: usize = 0;
let flagArr: usize = 0;
let keyArr: usize = 0;

/** Bytes `initSlots(slots)` needs. */
export function slotBytes(slots: u32): usize {
  return <usize>slots * (4 + 1 + 8) + 32;
}

/** Sets up `slots` empty slots; returns false when memory does not hold them. */
export function initSlots(slots: u32, half: f64): bool {
  const base = arenaAlloc(slotBytes(slots));
  if (base == 0) return false;
  nSlots = slots;
  halfLife = half;
  tick = 0;
  keyArr = base;
  pageArr = keyArr + (<usize>slots << 3);
  flagArr = pageArr + (<usize>slots << 2);
  for (let s: u32 = 0; s < slots; s++) store<u32>(pageArr + (<usize>s << 2), NO_PAGE);
  return table.setup(slots, pageArr);
}

@inline export function slotPage(s: u32): u32 { return load<u32>(pageArr + (<usize>s << 2)); }
@inline export function slotFlags(s: u32): u8 { return load<u8>(flagArr + <usize>s); }
@inline export function setFlags(s: u32, f: u8): void { store<u8>(flagArr + <usize>s, f); }
@inline export function hasFlag(s: u32, f: u8): bool { return (slotFlags(s) & f) != 0; }
@inline export function addFlag(s: u32, f: u8): void { setFlags(s, slotFlags(s) | f); }
@inline export function clearFlag(s: u32, f: u8): void { setFlags(s, slotFlags(s) & ~f); }
@inline export function slotKey(s: u32): f64 { return load<f64>(keyArr + (<usize>s << 3)); }
@inline export function setSlotKey(s: u32, k: f64): void { store<f64>(keyArr + (<usize>s << 3), k); }

const table = new PageTable();

/** The slot holding `page`, or -1. */
export function lookup(page: u32): i32 { return table.find(page); }

/** Puts `page` in empty slot `s` and the table. */
export function bind(s: u32, page: u32, flags: u8): void {
  if (DEBUG) assert(slotPage(s) == NO_PAGE && lookup(page) < 0);
  store<u32>(pageArr + (<usize>s << 2), page);
  setFlags(s, flags | F_USE);
  table.insert(s);
}

/** Removes slot `s`'s page from the table and empties the slot. */
export function unbind(s: u32): void {
  if (DEBUG) assert(slotPage(s) != NO_PAGE);
  table.remove(s);
  store<u32>(pageArr + (<usize>s << 2), NO_PAGE);
  setFlags(s, 0);
}

/** Decayed heat of key `k` now. */
@inline export function heatOf(k: f64): f64 {
  return Math.pow(2, k - tick / halfLife);
}

/** The key after one more access now, to a page whose key was `k`. */
@inline export function bumpKey(k: f64): f64 {
  const now = tick / halfLife;
  return Math.log2(Math.pow(2, k - now) + 1) + now;
}

/** Advances the heat clock by one access. */
@inline export function advance(): void { tick += 1; }

/** Address of the slot key array (f64 per slot), for heaps keyed on heat. */
export function keysBase(): usize { return keyArr; }
