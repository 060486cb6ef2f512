/**
 * Recovery: giving back everything a client (id x, slot generation g) holds
 * or left half done, from pool metadata alone (docs/design.md,
 * invariant 2), while other clients keep allocating (online recovery, after
 * HPE gull). Used for a dead client (its slot REVOKED and fenced, see
 * assembly/client.ts) and by a closing client for itself.
 *
 * What is x's, section by section:
 *   LARGE header naming x     a block x allocated (its head, HELD or not yet
 *                             logged) or tails x took before its head
 *   RETIRING header naming x  x died retiring it: undo x's seals, back to CHUNK
 *   CHUNK header, op MODE, x  x died unsealing a section it claimed: unseal
 *   whole-span header naming x   a block of classes 5..8 (or its tails)
 *   HELD(x, g) owner-log head    a block of classes 0..4
 *   span commit log (x, ALLOC, c, cls) on set bits that no HELD head covers:
 *                             x died between its CAS and its owner-log write
 *                             (unless the head is a marked FREED entry: a
 *                             cached block of x's half freed by its stealer,
 *                             assembly/cache.ts, "Stealing", or a block x
 *                             handed to a pool owner, half freed by another
 *                             client; the same for whole-span and LARGE heads)
 *
 * A block whose owner-log head is HELD by a pool owner (assembly/ownerlog.ts)
 * is not x's even when its headers still name x: x allocated it and handed it
 * over with adoptBlock (a region, a slab). It and its tails are skipped.
 *
 * Nothing else is touched. Set bits that no HELD entry covers and whose
 * commit log names someone else (x's free cut short after its FREED write, a
 * steal of x's cached block cut short after its FREED write, or an
 * allocation whose commit log a later CAS overwrote) are "orphans": only
 * the grace-period sweep (`scanOrphans` / `reclaimOrphan`) gives them back,
 * once every live client has renewed its lease since they were seen and the
 * header word has not changed, which proves no operation is still in flight
 * on them. Every step is idempotent, so a recovery cut short (its recoverer
 * died) is simply run again by the next recoverer.
 */
import { dropCache, isStolenEntry } from './cache';
import {
  clientGen, clientId, freeChunks, freeSections, freeSpans, markSpan,
} from './alloc';
import { SLOT_LIVE, SLOT_RECOVERING, beginRecovery, releaseSlot, slotGen, slotOff, slotState } from './client';
import { CP_RECOVER_CLAIMED, CP_RECOVER_PARTIAL, CP_RECOVER_RECLAIMED, crashPoint } from './crash';
import { cas64, load64, readInto, store64 } from './imports';
import {
  E_INVALID_ARGUMENT, SB_LIMBO, SECTION_CHUNKS, SECTION_SPANS, logOff, maxClients, nSections, sectionHdr, spanHdr,
} from './layout';
import { isSlabEntry, reclaimSlab } from './slab';
import { lockRing, unlockRing } from './epoch';
import {
  W_CHUNK, W_END, W_FREE, W_LARGE_HEAD, W_LARGE_TAIL, W_RETIRING, W_SEALED_SPAN, W_SPAN_HEAD, W_SPAN_TAIL,
  walkCover, walkCovered, walkEntry, walkLogBase, walkNext, walkSection, walkSpan, walkStart, walkWord,
} from './walk';
import {
  CLASS_LARGE, LOG_HELD, groupChunk, heldBy, heldGroups, isPoolOwner, logClass, logClient, logGen, logSections, logState,
} from './ownerlog';
import {
  MODE_CHUNK, MODE_FREE, MODE_LARGE, MODE_RETIRING, SOP_FREE, SOP_MODE, ST_EMPTY, nextSectionWord, sectionClient, sectionMode,
  sectionOp, sectionStates, sectionTail,
} from './section';
import {
  FULL_BITMAP, OP_ALLOC, OP_NONE, OP_SEAL, bitmapOf, groupMask, isSealed, isWholeSpanBlock, nextSpanWord,
  spanChunk, spanClass, spanClient, spanOp, spanWord,
} from './span';

/**
 * Counters of the last reclaim / recovery, f64 each:
 *   [0] blocks freed  [1] chunks freed  [2] spans unsealed  [3] sections fixed
 *   [4] owner-log entries scanned  [5] in-flight operations completed
 *   [6] status (0 or a negative E_*)  [7] heap objects freed (slabs)
 *   [8] 0 when complete, else why heap objects were left for a later run
 *       (E_BUSY: the delayed-free ring's lock stayed held by a live client)
 */
const OUT_WORDS: u32 = 9;
const out = memory.data(8 * OUT_WORDS);
/** False while this reclaim could not take the ring's lock: slab objects are left alone. */
let slabsLocked = true;

@inline function add(i: u32, v: f64): void { store<f64>(out + (i << 3), load<f64>(out + (i << 3)) + v); }

/** True when owner-log head `e` is a block of class `cls` that a pool owner holds (adopted: no client's any more). */
@inline function poolOwned(e: u64, cls: u32): bool {
  return logState(e) == LOG_HELD && isPoolOwner(logClient(e)) && logClass(e) == cls;
}

let partialFired = false;

@inline function freedBlock(chunks: f64): void {
  add(0, 1);
  add(1, chunks);
  if (!partialFired) { partialFired = true; crashPoint(CP_RECOVER_PARTIAL); }
}

/**
 * Gives back everything client (x, gen) holds or left half done (see the
 * file comment). Each free passes the owner-log entry it read as the
 * expected value of its FREED write (assembly/alloc.ts, writeFreed), so a
 * block someone else freed in the meantime is left alone; a never-used
 * entry (0) is guarded by the header CAS alone. Returns a pointer to the
 * counters.
 */
export function reclaimClient(x: u32, gen: u32): usize {
  memory.fill(out, 0, 8 * OUT_WORDS);
  // This client's own release (close): its cached blocks are HELD | CACHED
  // in its generation, so the walk below frees them with the rest; the
  // core-local cache only has to forget them (assembly/cache.ts).
  if (x == clientId && gen == clientGen) dropCache();
  partialFired = false;
  // Heap objects are freed under the delayed-free ring's lock, so that none
  // is retired (handed to the ring) between reading its tag and clearing its
  // bit (assembly/epoch.ts, "Ownership").
  const ring = load64(SB_LIMBO);
  const lock = ring == 0 ? 0 : lockRing(ring);
  slabsLocked = lock == 0;
  if (!slabsLocked) store<f64>(out + 64, <f64>lock);
  walkStart();
  for (let kind = walkNext(); kind != W_END; kind = walkNext()) {
    const sec = walkSection;
    const sw = walkWord;
    if (kind == W_LARGE_HEAD) {
      if (sectionClient(sw) == x) walkCover(reclaimLarge(sec, sw, x, gen) - sec);
    } else if (kind == W_LARGE_TAIL) {
      if (!walkCovered && sectionClient(sw) == x) reclaimLarge(sec, sw, x, gen);
    } else if (kind == W_RETIRING) {
      if (sectionClient(sw) == x) undoRetire(sec, sw, x);
    } else if (kind == W_CHUNK) {
      add(4, <f64>SECTION_CHUNKS);
      claimedByX = sectionOp(sw) == SOP_MODE && sectionClient(sw) == x;
    } else if (kind != W_FREE) {
      reclaimSpan(kind, x, gen);
    }
  }
  if (ring != 0 && slabsLocked) unlockRing();
  return out;
}

/** A LARGE block whose header names x, starting at `sec`; returns the last section it covered. */
function reclaimLarge(sec: u32, sw: u64, x: u32, gen: u32): u32 {
  const head = sec * SECTION_CHUNKS;
  if (!sectionTail(sw)) {
    add(4, 1);
    const e = load64(logOff(head));
    if (poolOwned(e, 9)) return sec;
    if (poolOwned(e, CLASS_LARGE)) return sec + logSections(e) - 1;
    let n: u32 = 1;
    if (heldBy(e, x, gen)) {
      n = logClass(e) == CLASS_LARGE ? logSections(e) : 1;
    } else {
      // Not logged yet: its tails are the x-tails that follow.
      while (sec + n < nSections) {
        const t = load64(sectionHdr(sec + n));
        if (sectionMode(t) != MODE_LARGE || !sectionTail(t) || sectionClient(t) != x) break;
        n++;
      }
      // A pool owner's free of a block x allocated and handed over, under
      // way (its FREED write done, its sections not yet released): the
      // freer finishes it; it and its tails are not x's.
      if (isStolenEntry(e)) return sec + n - 1;
      add(5, 1);
    }
    const cls = n == 1 ? 9 : CLASS_LARGE;
    if (freeSections(head, n, cls, e) == 0) freedBlock(<f64>(n * SECTION_CHUNKS));
    return sec + n - 1;
  }
  // A tail taken before its head: x died in the middle of the allocation.
  // The caller read `sw` naming x, so a CAS on exactly that word is safe.
  if (cas64(sectionHdr(sec), sw, nextSectionWord(sw, 0, clientId, SOP_FREE, MODE_FREE, false)) == sw) add(5, 1);
  return sec;
}

/**
 * Releases the tail span `span` (header `w` as read) of a whole-span block
 * that x took before dying, only while its header still names x.
 */
function releaseTail(span: u32, w: u64, x: u32): bool {
  const off = spanHdr(span);
  const now = load64(off);
  if (now != w || spanClient(now) != x) return false;
  return cas64(off, now, nextSpanWord(now, 0, clientId, OP_NONE, spanChunk(now), spanClass(now))) == now;
}

/** x died retiring section `sec`: undo x's seals, RETIRING -> CHUNK. */
function undoRetire(sec: u32, sw: u64, x: u32): void {
  const base = sec * SECTION_SPANS;
  for (let j: u32 = 0; j < SECTION_SPANS; j++) {
    const off = spanHdr(base + j);
    const w = load64(off);
    if (isSealed(w) && spanClient(w) == x && cas64(off, w, nextSpanWord(w, 0, clientId, OP_NONE, 0, 0)) == w) add(2, 1);
  }
  if (cas64(sectionHdr(sec), sw, nextSectionWord(sw, sectionStates(sw), clientId, SOP_MODE, MODE_CHUNK, false)) == sw) add(3, 1);
}

/** The CHUNK section being walked was claimed by x, which died before unsealing all of it. */
let claimedByX = false;

/** One span unit of a CHUNK section (assembly/walk.ts) for the recovery of client (x, gen). */
function reclaimSpan(kind: u32, x: u32, gen: u32): void {
  const span = walkSpan;
  const w = walkWord;
  if (kind == W_SEALED_SPAN) {
    // x died before unsealing a section it had claimed; the claimant owns
    // these seals (assembly/section.ts). A CAS from the word read: a
    // recoverer that resumes late (its snapshot stale) cannot undo seals
    // that a later retire wrote (issue 9, finding 9).
    if (claimedByX && cas64(spanHdr(span), w, nextSpanWord(w, 0, clientId, OP_NONE, 0, 0)) == w) {
      markSpan(span, ST_EMPTY);
      add(2, 1);
    }
    return;
  }
  if (kind == W_SPAN_HEAD) {
    if (spanClient(w) != x) return;
    const cls = spanClass(w);
    const e = walkEntry;
    const tails = (<u32>1 << (cls - 5)) - 1;
    // A pool-owned block (x allocated it and handed it over), or a pool
    // owner's free of one under way (a marked FREED head: the freer
    // finishes it): neither it nor its tails are x's.
    if (poolOwned(e, cls) || isStolenEntry(e)) { walkCover(tails); return; }
    if (!heldBy(e, x, gen)) add(5, 1);
    if (freeSpans(span << 5, cls, e) == 0) {
      freedBlock(<f64>(32 << (cls - 5)));
      walkCover(tails);
    }
    return;
  }
  if (kind == W_SPAN_TAIL) {
    // A tail no head of x covers: taken before x's head, x died in the middle.
    if (!walkCovered && spanClient(w) == x && releaseTail(span, w, x)) {
      add(5, 1);
      markSpan(span, ST_EMPTY);
    }
    return;
  }
  const bm = bitmapOf(w);
  if (bm == 0) return;
  let covered: u32 = 0;
  const logBase = walkLogBase;
  const groups = heldGroups(bm, logBase);
  for (let g: u32 = 0; g < groups; g++) {
    const k = <u32>load<u8>(groupChunk + g);
    const e = load<u64>(logBase + (k << 3));
    const cls = logClass(e);
    covered |= groupMask(k, cls);
    if (logClient(e) == x && logGen(e) == (gen & 0x3FFF)) {
      if (freeChunks((span << 5) + k, cls, e) == 0) freedBlock(<f64>(1 << cls));
    } else if (slabsLocked && isSlabEntry(e)) {
      add(7, <f64>reclaimSlab((span << 5) + k, e, x, gen));
    }
  }
  // x's own allocation, committed but not yet logged. Not over a STOLEN
  // entry: that picture is also a cached block of x's that another client
  // is stealing, or a block x allocated and handed to a pool owner (a slab,
  // a region) that another client is freeing, between its FREED write and
  // its bit clear; that freer owns the clear (assembly/cache.ts, "Stealing";
  // alloc.ts, freeChunk), and one that never finishes leaves an orphan for
  // the grace sweep.
  if (spanClient(w) == x && spanOp(w) == OP_ALLOC) {
    const k = spanChunk(w);
    const cls = spanClass(w);
    if (cls <= 4) {
      const mask = groupMask(k, cls);
      const e = load<u64>(logBase + (k << 3));
      if ((bm & mask) == mask && (covered & mask) == 0 && !isStolenEntry(e)) {
        add(5, 1);
        if (freeChunks((span << 5) + k, cls, e) == 0) freedBlock(<f64>(1 << cls));
      }
    }
  }
}

/**
 * Recovers client `id` as this client: claims the recovery (REVOKED ->
 * RECOVERING, or a takeover from dead recoverer `deadRecoverer`), reclaims,
 * releases the slot. Returns a pointer to the counters ([6] = status).
 */
export function recoverClient(id: u32, deadRecoverer: u32): usize {
  const gen = beginRecovery(id, clientId, deadRecoverer);
  if (gen < 0) {
    memory.fill(out, 0, 8 * OUT_WORDS);
    store<f64>(out + 48, <f64>E_INVALID_ARGUMENT);
    return out;
  }
  crashPoint(CP_RECOVER_CLAIMED);
  reclaimClient(id, <u32>gen);
  crashPoint(CP_RECOVER_RECLAIMED);
  // Incomplete (heap objects left): the slot stays RECOVERING by this
  // client, and the next run (this recoverer again, or a takeover) finishes.
  if (load<f64>(out + 64) == 0) releaseSlot(id, SLOT_RECOVERING);
  return out;
}

/**
 * Slot facts for monitors, f64 each: [0] state, [1] gen, [2] pid (0 while
 * RECOVERING), [3] heartbeat ms, [4] host id low 32 bits, [5] host id high
 * 32 bits, [6] process start time, [7] fence acknowledged (1/0),
 * [8] recoverer, [9] recoverer's gen (while RECOVERING), [10] PID namespace,
 * [11] boot id (52 bits), [12] the pid the identity words were written for
 * (assembly/client.ts: equal to [2] when they describe this owner).
 */
const slotOut = memory.data(8 * 13);
export function slotInfo(id: u32): usize {
  memory.fill(slotOut, 0, 8 * 13);
  if (id < 1 || id > maxClients) return slotOut;
  const off = slotOff(id);
  const w = load64(off);
  const host = load64(off + 16);
  const ack = load64(off + 40);
  store<f64>(slotOut, <f64>slotState(w));
  store<f64>(slotOut + 8, <f64>slotGen(w));
  const recovering = slotState(w) == SLOT_RECOVERING;
  store<f64>(slotOut + 16, recovering ? 0 : <f64>(<u32>(w >> 32)));
  store<f64>(slotOut + 24, <f64>load64(off + 8));
  store<f64>(slotOut + 32, <f64>(<u32>host));
  store<f64>(slotOut + 40, <f64>(<u32>(host >> 32)));
  store<f64>(slotOut + 48, <f64>load64(off + 32));
  store<f64>(slotOut + 56, ack == ((<u64>(slotGen(w)) & 0x3FFFF) | (<u64>1 << 32)) ? 1 : 0);
  store<f64>(slotOut + 64, <f64>((<u32>w >> 2) & 0xFFF));
  store<f64>(slotOut + 72, recovering ? <f64>(<u32>(w >> 32)) : 0);
  const ident = load64(off + 48);
  store<f64>(slotOut + 80, <f64>(ident >> 32));
  store<f64>(slotOut + 88, <f64>(load64(off + 56) & 0xFFFFFFFFFFFFF));
  store<f64>(slotOut + 96, <f64>(<u32>ident));
  return slotOut;
}

/** True when client `id` is LIVE in generation `gen` (low 14 bits compared). */
export function isLiveOwner(id: u32, gen: u32): bool {
  if (id < 1 || id > maxClients) return false;
  const w = load64(slotOff(id));
  return slotState(w) == SLOT_LIVE && (slotGen(w) & 0x3FFF) == (gen & 0x3FFF);
}

