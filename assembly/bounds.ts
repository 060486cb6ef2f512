/**
 * Per-block bounds of read, write, cas and faa (issue 9, finding 6): every
 * access names exactly one block, heap object or region, and stays inside
 * it. "Inside some allocated memory" is not enough: a write that runs from
 * one block into the next client's, a write to a heap object after its
 * free, or a store into another slab's bitmap and tags would all corrupt
 * someone else's memory without a word.
 *
 * What a byte range [off, off + len) may lie in:
 *
 *   a chunk block (class 0..4)   the owner-log head at the block's first
 *                                chunk is HELD (by a client, a region, or
 *                                the delayed-free ring) and every chunk of
 *                                the block has its bit set
 *   a whole-span block (5..8)    the head span's header says so and its
 *                                owner-log head is HELD with that class
 *   a LARGE block (9, > 2 MiB)   its head section is LARGE and its owner-log
 *                                head is HELD and covers the range
 *   a heap object                inside a slab, between an object's first
 *                                and last byte, the object's bit set and its
 *                                tag naming a requested size (handed out, or
 *                                queued for a delayed free: readers of an
 *                                epoch may still use it, assembly/epoch.ts)
 * Never: slab metadata (bitmap and tags), the delayed-free ring, the region
 * directory, free or sealed memory, or any range that crosses a block's end.
 *
 * Cost: for a chunk block, one span-header load and one owner-log load (the
 * same two loads the old "allocated by someone" check made); a heap object
 * adds its bitmap word and its tag word. The answer is a snapshot: a block
 * freed right after the check is the caller's race, as with any free.
 *
 * A stale HELD entry on an interior chunk (left by an orphan sweep that
 * freed bits without a free) could make a block look smaller than it is:
 * the check then refuses part of a valid range, never accepts a wrong one
 * across a block's end, because the head it accepts must cover the whole
 * range with set bits.
 */
import { CHUNK_SHIFT, SECTION_BYTES, SECTION_CHUNKS, dataOff, logOff, nSections, sectionHdr, spanHdr } from './layout';
import { load64 } from './imports';
import { CLASS_LARGE, LOG_HELD, OWNER_HEAP, OWNER_REGION, logClass, logClient, logGen, logSections, logState } from './ownerlog';
import { MODE_LARGE, sectionMode, sectionTail } from './section';
import { bitmapOf, groupMask, isSealed, isWholeSpanBlock, spanChunk, spanClass } from './span';
import { chunkOffset } from './alloc';
import { isSlabEntry, loadTag, objectCount, objectSize, slabClassOf, slabMeta, tagRequested } from './slab';

/** Owner-log gen of a block the delayed-free ring owns (assembly/epoch.ts). */
const RETIRED_GEN: u32 = 1;

/**
 * True when a block whose owner-log head is `e` may be read and written
 * through the public API: a client's, a region's, or one queued for a
 * delayed free (the ring block itself and slabs are handled elsewhere).
 */
@inline function accessibleHead(e: u64): bool {
  if (logState(e) != LOG_HELD) return false;
  const who = logClient(e);
  if (who == OWNER_REGION) return true;
  if (who == OWNER_HEAP) return logGen(e) == RETIRED_GEN;
  return who != 0;
}

/**
 * True when [off, off + len) (bytes, len >= 1) lies inside one block, heap
 * object or region that is allocated now (see the file comment).
 */
export function inOneBlock(off: u64, len: u64): bool {
  const end = dataOff + <u64>nSections * SECTION_BYTES;
  if (len == 0 || off < dataOff || off >= end || len > end - off) return false;
  const chunk = <u32>((off - dataOff) >> CHUNK_SHIFT);
  const lastChunk = <u32>((off + len - 1 - dataOff) >> CHUNK_SHIFT);
  const span = chunk >> 5;
  const w = load64(spanHdr(span));
  if (isSealed(w)) return inLargeBlock(chunk, lastChunk);
  if (isWholeSpanBlock(w)) {
    const headSpan = span - spanChunk(w);
    const cls = spanClass(w);
    const head = headSpan << 5;
    const e = load64(logOff(head));
    if (logClass(e) != cls || !accessibleHead(e)) return false;
    return lastChunk < head + (<u32>1 << cls);
  }
  const bm = bitmapOf(w);
  if ((bm & (<u32>1 << (chunk & 31))) == 0) return false;
  // The head of the block holding `chunk`: its own entry first (most
  // accesses start at a block's first chunk), then aligned heads below.
  const pos = chunk & 31;
  const own = load64(logOff(chunk));
  const ownCls = logClass(own);
  if (logState(own) == LOG_HELD && ownCls <= 4 && (pos & ((<u32>1 << ownCls) - 1)) == 0) {
    const r = inChunkBlock(chunk, pos, ownCls, own, bm, off, len, lastChunk);
    if (r >= 0) return r == 1;
  }
  for (let cls: u32 = 1; cls <= 4; cls++) {
    const k = pos & ~((<u32>1 << cls) - 1);
    if (k == pos) continue;
    const head = (span << 5) + k;
    const e = load64(logOff(head));
    if (logState(e) != LOG_HELD || logClass(e) != cls) continue;
    const r = inChunkBlock(head, k, cls, e, bm, off, len, lastChunk);
    if (r >= 0) return r == 1;
  }
  return false;
}

/**
 * The verdict for a candidate block head `head` (position `k` in its span,
 * class `cls`, entry `e`): -1 when its bits are not all set (not the block
 * holding the chunk), else 1 inside, 0 outside.
 */
@inline function inChunkBlock(head: u32, k: u32, cls: u32, e: u64, bm: u32, off: u64, len: u64, lastChunk: u32): i32 {
  const mask = groupMask(k, cls);
  if ((bm & mask) != mask) return -1;
  if (isSlabEntry(e)) return inHeapObject(head, e, off, len) ? 1 : 0;
  if (!accessibleHead(e)) return 0;
  return lastChunk < head + (<u32>1 << cls) ? 1 : 0;
}

/** [off, off + len) inside one handed-out (or queued) object of the slab at `head` (entry `e`). */
function inHeapObject(head: u32, e: u64, off: u64, len: u64): bool {
  const k = slabClassOf(logSections(e));
  const base = chunkOffset(head);
  const first = base + <u64>slabMeta(k);
  const size = <u64>objectSize(k);
  if (off < first) return false;
  const idx = (off - first) / size;
  if (idx >= <u64>objectCount(k)) return false;
  if (off + len > first + (idx + 1) * size) return false;
  const i = <u32>idx;
  if ((load64(base + (<u64>(i >> 6) << 3)) & (<u64>1 << (i & 63))) == 0) return false;
  return tagRequested(loadTag(base, k, i)) != 0;
}

/** Chunks `chunk`..`lastChunk` inside one LARGE block (its sections' spans are sealed). */
function inLargeBlock(chunk: u32, lastChunk: u32): bool {
  let sec = chunk / SECTION_CHUNKS;
  if (sectionMode(load64(sectionHdr(sec))) != MODE_LARGE) return false;
  while (sec > 0 && sectionTail(load64(sectionHdr(sec)))) sec--;
  const e = load64(logOff(sec * SECTION_CHUNKS));
  const cls = logClass(e);
  if ((cls != 9 && cls != CLASS_LARGE) || !accessibleHead(e)) return false;
  const n: u32 = cls == CLASS_LARGE ? logSections(e) : 1;
  return <u64>lastChunk < (<u64>sec + n) * SECTION_CHUNKS && sectionMode(load64(sectionHdr(sec))) == MODE_LARGE;
}
