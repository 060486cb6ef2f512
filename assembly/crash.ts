/**
 * Named crash points (HPE gull's method): places between two metadata writes
 * where a test can make the client die, to check that recovery leaves the
 * pool exactly as the live clients hold it. A point is armed by a host call
 * (`armCrash`), which the Node host makes only when DMEM_CRASH_POINT or the
 * `crashPoint` option asks for it; unarmed, a point costs one compare of a
 * global. When an armed point is reached (after `skip` earlier passes), the
 * core calls the `crash` import. The Node host then sends itself SIGKILL,
 * or, with DMEM_CRASH_ACTION=stop, SIGSTOP: the client is frozen at that
 * exact step, and resumes there on SIGCONT (a test's paused client).
 *
 * Ids are stable; src/crash.ts holds the names in the same order.
 */

@external("dmem", "crash")
declare function host_crash(point: u32): void;

export const CP_REGISTER_CLAIMED: u32 = 1;
export const CP_ALLOC_CHUNK_COMMITTED: u32 = 2;
export const CP_ALLOC_CHUNK_LOGGED: u32 = 3;
export const CP_CLAIM_CLAIMED: u32 = 4;
export const CP_CLAIM_UNSEALING: u32 = 5;
export const CP_ALLOC_SPANS_TAILS: u32 = 6;
export const CP_ALLOC_SPANS_COMMITTED: u32 = 7;
export const CP_ALLOC_SECTIONS_TAILS: u32 = 8;
export const CP_ALLOC_SECTIONS_COMMITTED: u32 = 9;
export const CP_RETIRE_MARKED: u32 = 10;
export const CP_RETIRE_SEALING: u32 = 11;
export const CP_RETIRE_SEALED: u32 = 12;
export const CP_FREE_CHUNK_LOGGED: u32 = 13;
export const CP_FREE_SPANS_LOGGED: u32 = 14;
export const CP_FREE_SPANS_PARTIAL: u32 = 15;
export const CP_FREE_SECTIONS_LOGGED: u32 = 16;
export const CP_FREE_SECTIONS_PARTIAL: u32 = 17;
export const CP_RECOVER_CLAIMED: u32 = 18;
export const CP_RECOVER_PARTIAL: u32 = 19;
export const CP_RECOVER_RECLAIMED: u32 = 20;
export const CP_RING_ENTRY_WRITTEN: u32 = 21;
export const CP_RING_RETIRED: u32 = 22;
export const CP_RING_POPPED: u32 = 23;
export const CP_CACHE_POP: u32 = 24;
export const CP_CACHE_STOLEN: u32 = 25;
export const CP_HEAP_POP: u32 = 26;
export const CP_HEAP_FREE: u32 = 27;
export const CP_WALK_SECTION: u32 = 28;
export const CP_COUNT: u32 = 28;

let armed: u32 = 0;
let skip: u32 = 0;

/** Arms crash point `point` (0 disarms), to fire after `skipHits` passes. */
export function armCrash(point: u32, skipHits: u32): void {
  armed = point;
  skip = skipHits;
}

/** A crash point: free unless armed. */
@inline export function crashPoint(point: u32): void {
  if (armed == point) fire(point);
}

function fire(point: u32): void {
  if (skip > 0) { skip--; return; }
  host_crash(point);
}
