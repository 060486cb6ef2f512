/**
 * Owner log: one 64-bit entry per chunk; the entry of a block's first chunk
 * names its holder and size, for `free` (which needs the class) and for
 * recovery (which needs the holder without the holder's help, invariant 2).
 *
 *    63                               32 31     18 17 16 15   12 11          0
 *   +-----------------------------------+---------+-----+-------+-------------+
 *   |  sections (LARGE blocks only)     |  gen:14 |st:2 |class:4|  client:12  |
 *   +-----------------------------------+---------+-----+-------+-------------+
 *
 *   upper 32  LARGE blocks: their section count; pool-owned blocks (below):
 *          the owner's own state (a slab's state word, assembly/slab.ts)
 *   st     NONE (never used), HELD, FREED, CACHED (a client's block that its
 *          application freed and the client keeps for reuse, assembly/cache.ts:
 *          still its block for recovery, the audit and the census)
 *   class  0..9, or CLASS_LARGE for a block of more than one section
 *   gen    low 14 bits of the client slot's generation (assembly/client.ts):
 *          an entry names client (id, gen), so a slot's next owner never
 *          inherits its previous owner's entries
 *
 * Ordering (the argument recovery relies on): `alloc` commits with its CAS
 * first and writes HELD after; `free` writes FREED first and clears the
 * bitmap with its CAS after. Hence an entry HELD(x) at the head of a block
 * whose bits are set always means x holds that block; a set bit covered by
 * no HELD head is an allocation or free in flight (or one a dead client left
 * half done), and the span's commit log names the last client that touched
 * it. Interior chunks of a block carry no entry of their own.
 */

/**
 * Pool owners: blocks HELD by these ids belong to the pool, not to a client.
 * Recovery and `close` never free them (no slot has these ids: client ids
 * stop at MAX_CLIENTS = 4093), the audit counts them as owned, and the
 * public `free` refuses them. OWNER_REGION holds region memory and the
 * region directory (assembly/region.ts); OWNER_HEAP holds slabs and the
 * delayed-free ring (assembly/heap.ts, assembly/epoch.ts). Their entries
 * carry gen 0; the upper 32 bits are theirs to use (a slab keeps its state
 * there).
 */
export const OWNER_REGION: u32 = 4094;
export const OWNER_HEAP: u32 = 4095;

@inline export function isPoolOwner(id: u32): bool { return id >= OWNER_REGION; }

export const LOG_NONE: u32 = 0;
export const LOG_HELD: u32 = 1;
export const LOG_FREED: u32 = 2;
/** A block in its client's block cache (assembly/cache.ts). Only a client's chunk-path (class 0..4) entry is ever CACHED. */
export const LOG_CACHED: u32 = 3;
export const CLASS_LARGE: u32 = 15;

@inline export function logClient(e: u64): u32 { return <u32>e & 0xFFF; }
@inline export function logClass(e: u64): u32 { return (<u32>e >> 12) & 15; }
@inline export function logState(e: u64): u32 { return (<u32>e >> 16) & 3; }
@inline export function logSections(e: u64): u32 { return <u32>(e >> 32); }
@inline export function logGen(e: u64): u32 { return (<u32>e >> 18) & 0x3FFF; }

@inline export function logEntry(client: u32, gen: u32, cls: u32, state: u32, sections: u32): u64 {
  return <u64>(client & 0xFFF) | (<u64>(cls & 15) << 12) | (<u64>(state & 3) << 16)
    | (<u64>(gen & 0x3FFF) << 18) | (<u64>sections << 32);
}

/** True when `e` is a HELD entry of client `client` in generation `gen`. */
@inline export function heldBy(e: u64, client: u32, gen: u32): bool {
  return logState(e) == LOG_HELD && logClient(e) == client && logGen(e) == (gen & 0x3FFF);
}

/** Chunk indexes (in the span) of the groups `heldGroups` found, in order. */
export const groupChunk = memory.data(32);

/**
 * Finds the HELD (or CACHED) heads among the 32 owner-log entries of one chunk-level
 * span (at `logBase`, u64 each) whose block (class 0..4, naturally aligned)
 * has every bit set in `bitmap`. Writes their chunk indexes to `groupChunk`
 * and returns how many; the entries themselves are at logBase + 8 * index.
 * This is the one definition of "a block the owner log vouches for", used by
 * the census, recovery and the audit.
 */
export function heldGroups(bitmap: u32, logBase: usize): u32 {
  let n: u32 = 0;
  for (let k: u32 = 0; k < 32; k++) {
    const e = load<u64>(logBase + (k << 3));
    const st = logState(e);
    if (st != LOG_HELD && st != LOG_CACHED) continue;
    const cls = logClass(e);
    if (cls > 4 || (k & ((1 << cls) - 1)) != 0) continue;
    const mask = groupMaskOf(k, cls);
    if ((bitmap & mask) != mask) continue;
    store<u8>(groupChunk + n, <u8>k);
    n++;
  }
  return n;
}

/** Bitmap mask of the 2^cls chunks starting at chunk `k` (cls 0..4). */
@inline export function groupMaskOf(k: u32, cls: u32): u32 {
  const n: u32 = 1 << cls;
  return (n == 32 ? 0xFFFFFFFF : ((<u32>1 << n) - 1)) << k;
}
