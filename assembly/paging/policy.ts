/**
 * The eviction-policy interface. Each policy is one module exporting the
 * same five functions; index.ts dispatches on the policy id:
 *
 *   xxxSetup(slots): bool    allocate state for `slots` slots (false: no memory)
 *   xxxInsert(s, used)       slot `s` was just filled; `used` = it was
 *                            accessed (false: a prefetch nobody asked for yet)
 *   xxxTouch(s)              a hit on slot `s`
 *   xxxVictim(): u32         the slot to evict; every slot is full. Must not
 *                            change which pages are resident.
 *   xxxRemove(s)             slot `s` is being emptied (after xxxVictim)
 *
 * A policy sees only slot numbers and the flags/keys of slots.ts; it never
 * reads the clock or a random source (invariant 4).
 */
export const POLICY_LRU: u32 = 0;
export const POLICY_CLOCK: u32 = 1;
export const POLICY_LINUX: u32 = 2;
export const POLICY_HEAT: u32 = 3;
export const POLICIES: u32 = 4;
