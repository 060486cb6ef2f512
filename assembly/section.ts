/**
 * Section header: one 64-bit word per 2 MiB section.
 *
 *    63       55 54    49 48  47 46 45 44 43          32 31                  0
 *   +-----------+--------+----+------+-----+--------------+-------------------+
 *   |  seq:9    | rsvd:6 |tail|mode:2| op:2|  client:12   | span states,      |
 *   |           |        |    |      |     |              | 2 bits x 16 spans |
 *   +-----------+--------+----+------+-----+--------------+-------------------+
 *
 *   mode   FREE     : no block in it; all 16 span headers sealed
 *          CHUNK    : its spans serve classes 0..8 through their span headers
 *          LARGE    : part of one block of whole sections (class 9 or > 2 MiB);
 *                     tail = 1 on every section of the block but the first
 *          RETIRING : `client` is sealing its spans on the way CHUNK -> FREE
 *   op     NONE, ALLOC (commit of a LARGE block), FREE, MODE (a mode change)
 *   client who made the last mode change or LARGE commit
 *   states per span, EMPTY / NORMAL / CONTENDED / FULL: hints for the
 *          search (FineMem's two-level bitmap, section 4.2). Only span
 *          headers are authoritative; a stale hint costs a probe, never a
 *          wrong allocation, and a last full scan ignores hints entirely
 *          before the pool is declared exhausted.
 *
 * Why FREE sections keep their spans sealed. A chunk allocator reads a
 * section header (CHUNK) and later CASes a span header: between the two, the
 * section may be retired to FREE and taken whole by a LARGE allocation. The
 * retirer therefore first marks the section RETIRING (so no new search
 * picks it), then seals every span with a CAS that expects it empty and
 * unsealed (an allocation in between makes that CAS fail and the retire is
 * rolled back: own seals undone, RETIRING -> CHUNK), and only then CASes
 * RETIRING -> FREE. A chunk allocator's CAS on a sealed span cannot succeed
 * (it expects the unsealed word it read), so no chunk of a FREE or LARGE
 * section is ever handed out by the chunk path (invariant 3). A claimant
 * that moves FREE -> CHUNK with its CAS owns the sealed spans and unseals
 * them with plain stores. So a sealed span in a CHUNK section always means a
 * claim whose claimant (the header's client) has not finished unsealing, and
 * sealed spans in a RETIRING section belong to its retirer: recovery can tell
 * whose work a dead client left half done.
 */

export const MODE_FREE: u32 = 0;
export const MODE_CHUNK: u32 = 1;
export const MODE_LARGE: u32 = 2;
export const MODE_RETIRING: u32 = 3;

export const SOP_NONE: u32 = 0;
export const SOP_ALLOC: u32 = 1;
export const SOP_FREE: u32 = 2;
export const SOP_MODE: u32 = 3;

export const ST_EMPTY: u32 = 0;
export const ST_NORMAL: u32 = 1;
export const ST_CONTENDED: u32 = 2;
export const ST_FULL: u32 = 3;

@inline export function sectionStates(w: u64): u32 { return <u32>w; }
@inline export function sectionClient(w: u64): u32 { return <u32>(w >> 32) & 0xFFF; }
@inline export function sectionOp(w: u64): u32 { return <u32>(w >> 44) & 3; }
@inline export function sectionMode(w: u64): u32 { return <u32>(w >> 46) & 3; }
@inline export function sectionTail(w: u64): bool { return ((w >> 48) & 1) != 0; }
@inline export function sectionSeq(w: u64): u32 { return <u32>(w >> 55); }

@inline export function spanState(w: u64, span: u32): u32 {
  return (<u32>w >> (span << 1)) & 3;
}

/** `w` with span `span`'s hint set to `state` (commit log and seq kept). */
@inline export function withSpanState(w: u64, span: u32, state: u32): u64 {
  const shift = <u64>(span << 1);
  return (w & ~(<u64>3 << shift)) | (<u64>state << shift);
}

/** A new section header after `w`: new mode, commit log, states; seq bumped. */
@inline export function nextSectionWord(w: u64, states: u32, client: u32, op: u32, mode: u32, tail: bool): u64 {
  return <u64>states | (<u64>(client & 0xFFF) << 32) | (<u64>(op & 3) << 44) | (<u64>(mode & 3) << 46)
    | (<u64>(tail ? 1 : 0) << 48) | (<u64>((sectionSeq(w) + 1) & 511) << 55);
}
