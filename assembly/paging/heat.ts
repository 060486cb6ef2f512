/**
 * Evict the coldest page: the least exponentially decayed access heat
 * (Rcmp, TACO '23, where heat picks pages to swap between
 * tiers; used here as an eviction order). slots.ts keeps each slot's heat
 * key, whose order does not change as time passes, so a min-heap on the
 * keys yields the coldest slot in O(log n).
 */
import { MinHeap } from './minheap';
import { keysBase } from './slots';

const byHeat = new MinHeap();

export function heatSetup(slots: u32): bool { return byHeat.setup(slots, keysBase()); }
export function heatInsert(s: u32, used: bool): void { byHeat.push(s); }
export function heatTouch(s: u32): void { byHeat.update(s); }
export function heatVictim(): u32 { return byHeat.min(); }
export function heatRemove(s: u32): void { byHeat.remove(s); }
