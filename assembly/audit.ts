/**
 * Audit of the whole pool against the invariants of docs/design.md:
 * the orphan list for the lease monitor's grace sweep, and fsck.
 *
 * An allocated unit is *owned* when an owner-log HELD head covers it and
 * names a client whose slot is LIVE in the generation the entry carries.
 * Anything allocated and not owned is an orphan:
 *   kind 1  set bits of a chunk-level span header (classes 0..4)
 *   kind 2  a whole-span header (classes 5..8) whose block head is not owned
 *   kind 3  a LARGE section header whose block head is not owned
 * An orphan is either an operation in flight (a live client between its CAS
 * and its owner-log write, or between its FREED write and its CAS) or one a
 * dead client left; the monitor tells them apart by time (assembly/recover.ts):
 * `reclaimOrphan` acts only if the header word is still exactly the one seen
 * a full lease earlier, after every live client renewed.
 *
 * fsck counts, f64 each, at the returned pointer:
 *   [0] sections checked       [1] orphan chunks
 *   [2] blocks held by a client that is not LIVE (or a stale generation)
 *   [3] sealed spans in CHUNK sections   [4] RETIRING sections
 *   [5] unsealed spans in FREE or LARGE sections
 *   [6] LARGE tails with no head         [7] span-state hints that disagree
 *   [8] owner-log entries scanned        [9] items repaired
 * With `repair`, each of [1]..[7] is fixed as it is found (fsck is meant to
 * run with no other client attached: `dmem fsck` checks that first).
 */
import { clientId, freeChunks, freeSections, freeSpans, markSpan } from './alloc';
import {
  W_CHUNK, W_END, W_FREE, W_LARGE_HEAD, W_LARGE_TAIL, W_RETIRING, W_SEALED_SPAN, W_SPAN_HEAD, W_SPAN_TAIL,
  walkCover, walkCovered, walkEntry, walkLogBase, walkNext, walkSection, walkSectionWord, walkSpan, walkStart, walkWord,
} from './walk';
import { SLOT_LIVE, slotGen, slotOff, slotState } from './client';
import { cas64, load64, readInto } from './imports';
import { SECTION_CHUNKS, SECTION_SPANS, logOff, maxClients, nSections, sectionHdr, spanHdr } from './layout';
import { CLASS_LARGE, LOG_CACHED, LOG_HELD, groupChunk, heldGroups, isPoolOwner, logClass, logClient, logGen, logSections, logState } from './ownerlog';
import {
  MODE_CHUNK, MODE_FREE, MODE_LARGE, MODE_RETIRING, SOP_FREE, SOP_MODE, ST_CONTENDED, ST_EMPTY, ST_FULL, ST_NORMAL,
  nextSectionWord, sectionMode, sectionTail, spanState,
} from './section';
import {
  FULL_BITMAP, OP_FREE, OP_NONE, OP_SEAL, bitmapOf, groupMask, isSealed, isWholeSpanBlock, nextSpanWord,
  spanChunk, spanClass,
} from './span';

export const ORPHAN_CHUNKS: u32 = 1;
export const ORPHAN_SPAN: u32 = 2;
export const ORPHAN_SECTION: u32 = 3;
/** Orphan records kept per scan: (kind, index, word, bits), 32 bytes each. */
export const MAX_ORPHANS: u32 = 2048;

const records = memory.data(32 * 2048);
const counts = memory.data(8 * 10);
const liveGen = memory.data(4 * 4096);
const spans = memory.data(8 * 16);
const logs = memory.data(8 * 512);

let nRecords: u32 = 0;
let repairing = false;

@inline function add(i: u32, v: f64): void { store<f64>(counts + (i << 3), load<f64>(counts + (i << 3)) + v); }

/** Caches each slot's generation (low 14 bits) if LIVE, else 0xFFFFFFFF. */
function loadLiveGens(): void {
  for (let id: u32 = 1; id <= maxClients; id++) {
    const w = load64(slotOff(id));
    store<u32>(liveGen + (id << 2), slotState(w) == SLOT_LIVE ? slotGen(w) & 0x3FFF : 0xFFFFFFFF);
  }
}

/** True when owner-log entry `e` is a HELD (or CACHED) head of a LIVE client in the generation it names, or a pool owner's. */
@inline function owned(e: u64): bool {
  // A CACHED head (assembly/cache.ts) is its client's as much as a HELD one.
  if (logState(e) != LOG_HELD && logState(e) != LOG_CACHED) return false;
  const id = logClient(e);
  if (isPoolOwner(id)) return true;
  if (id < 1 || id > maxClients) return false;
  return load<u32>(liveGen + (id << 2)) == logGen(e);
}

function record(kind: u32, index: u32, w: u64, bits: u32 = 0): void {
  if (nRecords >= MAX_ORPHANS) return;
  const p = records + nRecords * 32;
  store<u64>(p, <u64>kind);
  store<u64>(p + 8, <u64>index);
  store<u64>(p + 16, w);
  store<u64>(p + 24, <u64>bits);
  nRecords++;
}

/** Bits of chunk-level span `span` (header `w`) not covered by an owned HELD head; `logBase` holds its 32 entries. */
function orphanBits(w: u64, logBase: usize): u32 {
  const bm = bitmapOf(w);
  let covered: u32 = 0;
  const groups = heldGroups(bm, logBase);
  for (let g: u32 = 0; g < groups; g++) {
    const k = <u32>load<u8>(groupChunk + g);
    const e = load<u64>(logBase + (k << 3));
    if (owned(e)) covered |= groupMask(k, logClass(e));
  }
  return bm & ~covered;
}

/**
 * Walks every block (assembly/walk.ts), recording orphans and (with fsck)
 * counting and repairing every other violation.
 */
function walk(fsck: bool): void {
  nRecords = 0;
  memory.fill(counts, 0, 8 * 10);
  loadLiveGens();
  walkStart();
  for (let kind = walkNext(); kind != W_END; kind = walkNext()) {
    const sec = walkSection;
    if (kind <= W_CHUNK) add(0, 1);
    if (kind == W_LARGE_HEAD) {
      add(8, 1);
      const sw = walkWord;
      const e = walkEntry;
      const cls = logClass(e);
      const n: u32 = cls == CLASS_LARGE ? logSections(e) : 1;
      if (owned(e) && (cls == 9 || cls == CLASS_LARGE)) {
        walkCover(n - 1);
      } else {
        record(ORPHAN_SECTION, sec, sw);
        if (fsck) {
          const held = logState(e) == LOG_HELD && (cls == 9 || cls == CLASS_LARGE);
          if (held) add(2, 1); else add(1, <f64>SECTION_CHUNKS);
          if (repairing && (held ? freeSections(sec * SECTION_CHUNKS, n, cls, e) == 0 : freeOrphanSection(sec, sw))) add(9, 1);
        }
      }
      if (fsck) checkSealed(sec);
    } else if (kind == W_LARGE_TAIL) {
      if (!walkCovered) {
        record(ORPHAN_SECTION, sec, walkWord);
        if (fsck) {
          add(6, 1);
          if (repairing && freeOrphanSection(sec, walkWord)) add(9, 1);
        }
      }
      if (fsck) checkSealed(sec);
    } else if (kind == W_FREE) {
      if (fsck) checkSealed(sec);
    } else if (kind == W_RETIRING) {
      if (fsck) {
        add(4, 1);
        if (repairing && undoRetiring(sec, walkWord)) add(9, 1);
      }
    } else if (kind == W_CHUNK) {
      add(8, <f64>SECTION_CHUNKS);
    } else {
      spanUnit(kind, fsck);
    }
  }
}

/** One span unit of a CHUNK section (assembly/walk.ts): sealed, whole-span head or tail, or chunk-level. */
function spanUnit(kind: u32, fsck: bool): void {
  const span = walkSpan;
  const w = walkWord;
  const sw = walkSectionWord;
  if (kind == W_SEALED_SPAN) {
    if (fsck) {
      add(3, 1);
      if (repairing && cas64(spanHdr(span), w, spanWord0()) == w) { markSpan(span, ST_EMPTY); add(9, 1); }
    }
    return;
  }
  if (kind == W_SPAN_HEAD) {
    const cls = spanClass(w);
    const e = walkEntry;
    if (owned(e) && logClass(e) == cls) {
      walkCover((<u32>1 << (cls - 5)) - 1);
      return;
    }
    {
      record(ORPHAN_SPAN, span, w);
      if (fsck) {
        const held = logState(e) == LOG_HELD && logClass(e) == cls;
        if (held) add(2, 1); else add(1, 32);
        if (repairing && (held ? freeSpans((span << 5), cls, e) == 0 : freeOrphanSpan(span, w))) add(9, 1);
      }
    }
    if (fsck) checkHint(sw, span, ST_FULL);
    return;
  }
  if (kind == W_SPAN_TAIL) {
    if (!walkCovered) {
      record(ORPHAN_SPAN, span, w);
      if (fsck) {
        add(1, 32);
        if (repairing && freeOrphanSpan(span, w)) add(9, 1);
      }
    }
    if (fsck) checkHint(sw, span, ST_FULL);
    return;
  }
  const bm = bitmapOf(w);
  const logBase = walkLogBase;
  if (fsck) checkHint(sw, span, bm == 0 ? ST_EMPTY : bm == FULL_BITMAP ? ST_FULL : ST_NORMAL);
  if (bm == 0) return;
  const orphan = orphanBits(w, logBase);
  if (orphan != 0) record(ORPHAN_CHUNKS, span, w, orphan);
  if (!fsck) return;
  add(1, <f64>popcnt(orphan));
  if (repairing && orphan != 0 && freeOrphanBits(span, w, orphan)) add(9, 1);
  // HELD heads of clients that are not live: their blocks leak until freed.
  const groups = heldGroups(bm, logBase);
  for (let g: u32 = 0; g < groups; g++) {
    const k = <u32>load<u8>(groupChunk + g);
    const e = load<u64>(logBase + (k << 3));
    if (owned(e)) continue;
    add(2, 1);
    if (repairing && freeChunks((span << 5) + k, logClass(e), e) == 0) add(9, 1);
  }
}

@inline function spanWord0(): u64 { return nextSpanWord(0, 0, clientId, OP_NONE, 0, 0); }

/** fsck: a span hint that disagrees with the span (CONTENDED agrees with anything but FULL-vs-EMPTY truth). */
function checkHint(sw: u64, span: u32, truth: u32): void {
  const hint = spanState(sw, span & 15);
  if (hint == truth || (hint == ST_CONTENDED && truth == ST_NORMAL)) return;
  add(7, 1);
  if (repairing) { markSpan(span, truth); add(9, 1); }
}

/** fsck: every span of a FREE or LARGE section must be sealed. */
function checkSealed(sec: u32): void {
  readInto(spanHdr(sec * SECTION_SPANS), spans, SECTION_SPANS << 3);
  for (let j: u32 = 0; j < SECTION_SPANS; j++) {
    const w = load<u64>(spans + (j << 3));
    if (isSealed(w)) continue;
    add(5, 1);
    if (repairing) {
      const sealed = nextSpanWord(w, FULL_BITMAP, clientId, OP_SEAL, 0, 0);
      if (cas64(spanHdr(sec * SECTION_SPANS + j), w, sealed) == w) add(9, 1);
    }
  }
}

/** RETIRING section: unseal every span, back to CHUNK. */
function undoRetiring(sec: u32, sw: u64): bool {
  const base = sec * SECTION_SPANS;
  for (let j: u32 = 0; j < SECTION_SPANS; j++) {
    const off = spanHdr(base + j);
    const w = load64(off);
    if (isSealed(w)) cas64(off, w, nextSpanWord(w, 0, clientId, OP_NONE, 0, 0));
  }
  return cas64(sectionHdr(sec), sw, nextSectionWord(sw, 0, clientId, SOP_MODE, MODE_CHUNK, false)) == sw;
}

/** Clears orphan bits `mask` of span `span` if its header is still `w`. */
function freeOrphanBits(span: u32, w: u64, mask: u32): bool {
  const nw = nextSpanWord(w, bitmapOf(w) & ~mask, clientId, OP_FREE, 0, 0);
  if (cas64(spanHdr(span), w, nw) != w) return false;
  markSpan(span, bitmapOf(nw) == 0 ? ST_EMPTY : ST_NORMAL);
  return true;
}

/** Frees an orphan whole-span header if it is still `w`. */
function freeOrphanSpan(span: u32, w: u64): bool {
  if (cas64(spanHdr(span), w, nextSpanWord(w, 0, clientId, OP_FREE, spanChunk(w), spanClass(w))) != w) return false;
  markSpan(span, ST_EMPTY);
  return true;
}

/** Frees an orphan LARGE section if its header is still `w`. */
function freeOrphanSection(sec: u32, w: u64): bool {
  return cas64(sectionHdr(sec), w, nextSectionWord(w, 0, clientId, SOP_FREE, MODE_FREE, false)) == w;
}

/** Lists the orphans (up to MAX_ORPHANS); returns how many, records at `orphanRecords()`. */
export function scanOrphans(): u32 {
  repairing = false;
  walk(false);
  return nRecords;
}

/** Pointer to the orphan records: u64 kind, u64 index (span or section), u64 header word, u64 orphan chunk bits (kind 1; else 0). */
export function orphanRecords(): usize {
  return records;
}

/**
 * Frees one orphan if its header still holds exactly `w` and it is still
 * not owned (re-checked against the owner log now). Of a span's chunk bits
 * (kind 1), only `bits & (the span's orphan bits now)` are freed: the bits
 * the record found orphan, never one that is orphan only now. One header
 * word covers up to 32 blocks, and a block whose head was owned a lease ago
 * may be a free in flight now (its FREED entry written, its bit clear not
 * yet, by a live client paused in between: that write leaves the header
 * as it was); freed here, its chunks could be handed out again before that
 * client's bit clear runs, which would then clear the new holder's bits
 * (test/fencing.test.ts, "finding 10"). Returns true when freed.
 */
export function reclaimOrphan(kind: u32, index: u32, w: u64, bits: u32): bool {
  loadLiveGens();
  if (kind == ORPHAN_CHUNKS) {
    if (index >= nSections * SECTION_SPANS || load64(spanHdr(index)) != w || isSealed(w)) return false;
    readInto(logOff(index << 5), logs, 32 << 3);
    const orphan = orphanBits(w, logs) & bits;
    return orphan != 0 && freeOrphanBits(index, w, orphan);
  }
  if (kind == ORPHAN_SPAN) {
    if (index >= nSections * SECTION_SPANS || load64(spanHdr(index)) != w || !isWholeSpanBlock(w)) return false;
    const head = index - spanChunk(w);
    const e = load64(logOff(head << 5));
    if (owned(e) && logClass(e) == spanClass(w) && isWholeSpanBlock(load64(spanHdr(head)))) return false;
    return freeOrphanSpan(index, w);
  }
  if (kind == ORPHAN_SECTION) {
    if (index >= nSections || load64(sectionHdr(index)) != w || sectionMode(w) != MODE_LARGE) return false;
    if (!sectionTail(w) && owned(load64(logOff(index * SECTION_CHUNKS)))) return false;
    if (sectionTail(w)) {
      // A tail is owned when the nearest head before it is owned and long enough.
      for (let h: i32 = <i32>index - 1; h >= 0; h--) {
        const hw = load64(sectionHdr(<u32>h));
        if (sectionMode(hw) != MODE_LARGE) break;
        if (sectionTail(hw)) continue;
        const e = load64(logOff(<u32>h * SECTION_CHUNKS));
        const n: u32 = logClass(e) == CLASS_LARGE ? logSections(e) : 1;
        if (owned(e) && <u32>h + n > index) return false;
        break;
      }
    }
    return freeOrphanSection(index, w);
  }
  return false;
}

/** Checks (and with `repair`, fixes) every invariant; returns a pointer to the counts. */
export function fsckPool(repair: bool): usize {
  repairing = repair;
  walk(true);
  repairing = false;
  return counts;
}

