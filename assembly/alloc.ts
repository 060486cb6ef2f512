/**
 * One-sided allocation and free (FineMem, OSDI '25, sections 4.2-4.3): the
 * client runs this code and reaches pool metadata only through transport
 * operations, so the memory node's CPU does no work per allocation.
 *
 * Three paths, by size class (4 KiB * 2^c):
 *   c 0..4  a naturally aligned group of 2^c chunks inside one span: one CAS
 *           on the span header sets the bits and writes the commit log.
 *   c 5..8  2^(c-5) aligned whole spans of one CHUNK section: one CAS per
 *           span, tails first, the head last; the head's CAS commits.
 *   c 9, and blocks above 2 MiB: contiguous FREE sections taken to LARGE,
 *           tails first, the head section's CAS commits.
 *
 * Then the owner-log entry of the block's first chunk is written HELD.
 * `free` writes FREED first and then clears with CAS (the ordering argument
 * is in assembly/ownerlog.ts; the sealing argument for sections is in
 * assembly/section.ts).
 *
 * Invariant 3 (no chunk handed to two holders): a chunk becomes allocated only
 * through a successful CAS whose expected word showed it free, in a span that
 * was unsealed (chunk and span paths) or in a section that was FREE with all
 * spans sealed (section path). Sealed spans never pass the first check, and
 * FREE sections' spans are always sealed, so the two namespaces never meet.
 *
 * Contention (FineMem section 4.3): each client starts its scans at its own
 * random section and keeps one hint span (with the last word it saw) per
 * class; a failed CAS retries with the word the CAS returned, never a fresh
 * read; a span whose CAS failed CONTENDED_RETRIES times in a row is marked
 * CONTENDED in its section and left for others.
 */
import { cas64, load64, readInto, store64, transportOps } from './imports';
import { cursorNext, cursorSection, cursorStart, cursorWord } from './cursor';
import {
  CP_ALLOC_CHUNK_COMMITTED, CP_ALLOC_CHUNK_LOGGED, CP_ALLOC_SECTIONS_COMMITTED, CP_ALLOC_SECTIONS_TAILS,
  CP_ALLOC_SPANS_COMMITTED, CP_ALLOC_SPANS_TAILS, CP_CLAIM_CLAIMED, CP_CLAIM_UNSEALING, CP_FREE_CHUNK_LOGGED,
  CP_FREE_SECTIONS_LOGGED, CP_FREE_SECTIONS_PARTIAL, CP_FREE_SPANS_LOGGED, CP_FREE_SPANS_PARTIAL, CP_RETIRE_MARKED,
  CP_RETIRE_SEALED, CP_RETIRE_SEALING, crashPoint,
} from './crash';
import {
  CHUNK_BYTES, CHUNK_SHIFT, E_CORRUPT, E_DOUBLE_FREE, E_EXHAUSTED, E_INVALID_ADDRESS, SECTION_BYTES,
  SECTION_CHUNKS, SECTION_SPANS, SPAN_CHUNKS, dataOff, logOff, nSections, sectionHdr, spanHdr,
} from './layout';
import { CLASS_LARGE, LOG_FREED, LOG_HELD, isPoolOwner, logClass, logClient, logEntry, logSections, logState } from './ownerlog';
import { nextBelow } from './prng';
import {
  CACHE_CLASSES, STOLEN, anyCached, cacheHasRoom, cacheLimit, dropCache, flushCache, isCachedEntry, popCached, pushCached, stealCached,
} from './cache';
import {
  MODE_CHUNK, MODE_FREE, MODE_LARGE, MODE_RETIRING, SOP_ALLOC, SOP_FREE, SOP_MODE, ST_CONTENDED, ST_EMPTY, ST_FULL, ST_NORMAL,
  nextSectionWord, sectionMode, sectionStates, sectionTail, spanState, withSpanState,
} from './section';
import {
  FULL_BITMAP, OP_ALLOC, OP_FREE, OP_NONE, OP_SEAL, bitmapOf, findFreeGroup, groupMask, isEmptySpan, isSealed,
  isWholeSpanBlock, nextSpanWord, spanChunk, spanClass, spanWord,
} from './span';

const DEBUG = !ASC_NO_ASSERT;

/** Failed CASes in a row on one span before the allocator moves away. */
const CONTENDED_RETRIES: u32 = 4;

/** This client's id (1..4095) and slot generation, set by `setClient`. */
export let clientId: u32 = 0;
export let clientGen: u32 = 0;
/** Section where this client's scans start (random at registration, then wherever it last found room). */
let startSection: u32 = 0;
/** Next-fit position of the section path. */
let largeCursor: u32 = 0;

// Per-class hint span (global span index, -1 = none) and the last word seen.
const hintSpan = memory.data(4 * 5);
const hintWord = memory.data(8 * 5);
// Scratch word for probes, and a buffer for bulk reads of a section's span headers.
const scratch = memory.data(8);
const spanBatch = memory.data(8 * 16);

// Counters (read through assembly/stats.ts).
export let allocCount: u64 = 0;
export let freeCount: u64 = 0;
export let allocRetries: u64 = 0;
export let allocRetryMax: u32 = 0;
export let allocOps: u64 = 0;
export let freeOps: u64 = 0;
const classAllocs = memory.data(8 * 11);
const classFrees = memory.data(8 * 11);

/*
 * Guesses for the free path (issue 10): a free's CAS needs the exact word it
 * replaces, and the CAS returns the true word when a guess is wrong, so a
 * good guess saves the load that would otherwise precede each CAS, and a
 * wrong one costs no more than that load (one failed CAS, whose answer is
 * used exactly as the load's would have been). Guesses are never a reason
 * to act: what a successful CAS acted on is the word it found.
 *   guessCls    per chunk (direct-mapped on the low 15 bits): 1 + the class
 *               of the block this client last allocated there in the chunk
 *               path, so its free can CAS the owner-log entry HELD(me, cls)
 *               -> FREED without reading it first; 0 = no guess
 *   guessSpan   per span (direct-mapped on the low 10 bits): the last
 *               header word this client wrote or read there, tagged with
 *               the span index + 1
 *   guessSec    per section (direct-mapped on the low 10 bits): the same
 *               for section headers (markSpan's expected word)
 * The allocation path uses a span guess only when it shows room (a guess
 * showing none is read again, so a stale guess never hides free memory),
 * and a CAS that fails on a guess is not counted as a retry (it is the
 * read the guess replaced, not contention).
 */
const GUESS_CHUNKS: u32 = 32768;
const GUESS_SPANS: u32 = 1024;
const GUESS_SECTIONS: u32 = 1024;
const guessCls = memory.data(GUESS_CHUNKS);
const guessSpanIdx = memory.data(4 * GUESS_SPANS);
const guessSpanWord = memory.data(8 * GUESS_SPANS);
const guessSecIdx = memory.data(4 * GUESS_SECTIONS);
const guessSecWord = memory.data(8 * GUESS_SECTIONS);
/** The per-chunk class guesses and their count (the block cache's host fast path reads them, assembly/cache.ts). */
export function guessTable(): usize { return guessCls; }
export function guessChunks(): u32 { return GUESS_CHUNKS; }
/** Set by probeSpan: the word it left in scratch is a guess, not a read. */
let probeGuessed = false;

/** The guessed header word of span `span` into scratch; false when there is none. */
@inline function spanGuess(span: u32): bool {
  const i = span & (GUESS_SPANS - 1);
  if (load<u32>(guessSpanIdx + (i << 2)) != span + 1) return false;
  store<u64>(scratch, load<u64>(guessSpanWord + (i << 3)));
  return true;
}

@inline function noteSectionWord(sec: u32, w: u64): void {
  const i = sec & (GUESS_SECTIONS - 1);
  store<u32>(guessSecIdx + (i << 2), sec + 1);
  store<u64>(guessSecWord + (i << 3), w);
}

@inline function noteSpanWord(span: u32, w: u64): void {
  const i = span & (GUESS_SPANS - 1);
  store<u32>(guessSpanIdx + (i << 2), span + 1);
  store<u64>(guessSpanWord + (i << 3), w);
}

@inline function getHintSpan(cls: u32): i32 { return load<i32>(hintSpan + (cls << 2)); }
@inline function getHintWord(cls: u32): u64 { return load<u64>(hintWord + (cls << 3)); }
@inline function setHint(cls: u32, span: i32, w: u64): void {
  store<i32>(hintSpan + (cls << 2), span);
  store<u64>(hintWord + (cls << 3), w);
}

/** Byte offset of global chunk `chunk`. */
@inline export function chunkOffset(chunk: u32): u64 { return dataOff + (<u64>chunk << CHUNK_SHIFT); }

/** Binds this core instance to client `id` (slot generation `gen`) and picks its random start section. */
export function setClient(id: u32, gen: u32): void {
  clientId = id;
  clientGen = gen;
  startSection = nSections > 0 ? nextBelow(nSections) : 0;
  largeCursor = startSection;
  for (let c: u32 = 0; c < 5; c++) setHint(c, -1, 0);
  memory.fill(guessCls, 0, GUESS_CHUNKS);
  memory.fill(guessSpanIdx, 0, 4 * GUESS_SPANS);
  memory.fill(guessSecIdx, 0, 4 * GUESS_SECTIONS);
  dropCache();
}

@inline function classStat(base: usize, cls: u32): usize { return base + (<usize>min(cls, 10) << 3); }

/**
 * Allocates one block of size class `cls` (0..9). Returns its first chunk's
 * global index, or E_EXHAUSTED.
 */
export function allocClass(cls: u32): i64 {
  const ops0 = transportOps;
  let r: i64 = -1;
  if (cls < CACHE_CLASSES) {
    // This client's cache first (assembly/cache.ts): one CAS, no bitmap.
    r = popCached(cls, clientId, clientGen);
    if (r >= 0) store<u8>(guessCls + (<u32>r & (GUESS_CHUNKS - 1)), <u8>(cls + 1));
  }
  if (r < 0) {
    r = allocFresh(cls);
    if (r == E_EXHAUSTED) r = allocUncached(cls, 0);
  }
  noteAlloc(r, cls, ops0);
  return r;
}

/**
 * The pool looked exhausted for class `cls` (CLASS_LARGE: `n` sections):
 * memory in block caches never makes an allocation fail (assembly/cache.ts,
 * "Bounds" and "Stealing"). This client's own cache goes back first, then
 * every other client's; the allocation is tried again after each step
 * that gave anything back. Returns the block's first chunk, or E_EXHAUSTED.
 */
function allocUncached(cls: u32, n: u32): i64 {
  if (anyCached() && flushCache(clientId, clientGen) > 0) {
    const r = cls == CLASS_LARGE ? allocSections(n, CLASS_LARGE) : allocFresh(cls);
    if (r != E_EXHAUSTED) return r;
  }
  if (stealCached(clientId, clientGen) == 0) return E_EXHAUSTED;
  return cls == CLASS_LARGE ? allocSections(n, CLASS_LARGE) : allocFresh(cls);
}

/** An allocation of class `cls` from the pool (the cache passed by). */
function allocFresh(cls: u32): i64 {
  if (cls <= 4) return allocChunks(cls);
  if (cls <= 8) return allocSpans(cls);
  return allocSections(1, cls);
}

/** Allocates `n` >= 2 contiguous sections (a block above 2 MiB). */
export function allocLarge(n: u32): i64 {
  const ops0 = transportOps;
  let r = allocSections(n, CLASS_LARGE);
  if (r == E_EXHAUSTED) r = allocUncached(CLASS_LARGE, n);
  noteAlloc(r, 10, ops0);
  return r;
}

@inline function noteAlloc(r: i64, statClass: u32, ops0: u64): void {
  allocOps += transportOps - ops0;
  if (r >= 0) {
    allocCount++;
    const p = classStat(classAllocs, statClass);
    store<u64>(p, load<u64>(p) + 1);
  }
}

@inline function noteRetries(retries: u32): void {
  allocRetries += retries;
  if (retries > allocRetryMax) allocRetryMax = retries;
}

// ---------------------------------------------------------------- chunk path

function allocChunks(cls: u32): i64 {
  let span = getHintSpan(cls);
  let w = getHintWord(cls);
  let retries: u32 = 0;
  let streak: u32 = 0;
  let guessed = false;
  while (true) {
    if (span < 0) {
      span = findSpanForChunks(cls);
      if (span < 0) { noteRetries(retries); return span; }
      w = load<u64>(scratch);
      guessed = probeGuessed;
      streak = 0;
    }
    const bm = bitmapOf(w);
    const pos = findFreeGroup(bm, cls);
    if (pos < 0) {
      if (bm == FULL_BITMAP && !isSealed(w)) markSpan(<u32>span, ST_FULL);
      span = -1;
      continue;
    }
    const nbm = bm | groupMask(<u32>pos, cls);
    const desired = nextSpanWord(w, nbm, clientId, OP_ALLOC, <u32>pos, cls);
    const old = cas64(spanHdr(<u32>span), w, desired);
    if (old == w) {
      refreshHints(<u32>span, desired);
      setHint(cls, span, desired);
      const chunk = (<u32>span << 5) + <u32>pos;
      crashPoint(CP_ALLOC_CHUNK_COMMITTED);
      store64(logOff(chunk), logEntry(clientId, clientGen, cls, LOG_HELD, 0));
      crashPoint(CP_ALLOC_CHUNK_LOGGED);
      store<u8>(guessCls + (chunk & (GUESS_CHUNKS - 1)), <u8>(cls + 1));
      if (nbm == FULL_BITMAP) {
        // Marked FULL here; the next allocation looks elsewhere straight
        // away (a kept hint would only be found full and marked again).
        markSpan(<u32>span, ST_FULL);
        setHint(cls, -1, 0);
      } else if (bm == 0) markSpan(<u32>span, ST_NORMAL);
      noteRetries(retries);
      return chunk;
    }
    w = old;
    noteSpanWord(<u32>span, old);
    if (guessed) { guessed = false; continue; }
    retries++;
    if (++streak >= CONTENDED_RETRIES) {
      markSpan(<u32>span, ST_CONTENDED);
      span = -1;
    }
  }
}

/**
 * Finds a span with a free aligned group for `cls`; returns its global index
 * and leaves its header word in scratch[0], or a negative status.
 * Three phases: (1) every section's hints, from this client's start section,
 * one bulk read per 32 headers (assembly/cursor.ts); (2) claim a FREE section; (3) every span
 * header of every CHUNK section, hints ignored (stale hints never make a
 * pool look exhausted).
 */
function findSpanForChunks(cls: u32): i32 {
  let freeSec: i32 = -1;
  cursorStart(startSection);
  while (cursorNext()) {
    const s = cursorSection;
    const sw = cursorWord;
    const mode = sectionMode(sw);
    if (mode == MODE_FREE) { if (freeSec < 0) freeSec = <i32>s; continue; }
    if (mode != MODE_CHUNK) continue;
    noteSectionWord(s, sw);
    // NORMAL spans first (pack partly used spans), then EMPTY ones.
    for (let pass: u32 = 0; pass < 2; pass++) {
      const want = pass == 0 ? ST_NORMAL : ST_EMPTY;
      for (let j: u32 = 0; j < SECTION_SPANS; j++) {
        if (spanState(sw, j) != want) continue;
        const span = s * SECTION_SPANS + j;
        if (probeSpan(span, cls)) { startSection = s; return <i32>span; }
      }
    }
  }
  if (freeSec < 0) freeSec = findSectionInMode(MODE_FREE);
  while (freeSec >= 0) {
    if (claimSection(<u32>freeSec)) {
      startSection = <u32>freeSec;
      const span = <u32>freeSec * SECTION_SPANS;
      store<u64>(scratch, load64(spanHdr(span)));
      probeGuessed = false;
      return <i32>span;
    }
    freeSec = findSectionInMode(MODE_FREE);
  }
  for (let s: u32 = 0; s < nSections; s++) {
    if (sectionMode(load64(sectionHdr(s))) != MODE_CHUNK) continue;
    readInto(spanHdr(s * SECTION_SPANS), spanBatch, SECTION_SPANS << 3);
    for (let j: u32 = 0; j < SECTION_SPANS; j++) {
      if (findFreeGroup(bitmapOf(load<u64>(spanBatch + (j << 3))), cls) < 0) continue;
      const span = s * SECTION_SPANS + j;
      if (probeSpan(span, cls)) { startSection = s; return <i32>span; }
    }
  }
  return E_EXHAUSTED;
}

/**
 * Leaves span `span`'s header word in scratch[0] (probeGuessed says whether
 * it is this client's guess or a fresh load); true when it has room for
 * `cls`. A guess showing no room is read again.
 */
@inline function probeSpan(span: u32, cls: u32): bool {
  if (spanGuess(span) && !isSealed(load<u64>(scratch)) && findFreeGroup(bitmapOf(load<u64>(scratch)), cls) >= 0) {
    probeGuessed = true;
    return true;
  }
  const w = load64(spanHdr(span));
  store<u64>(scratch, w);
  noteSpanWord(span, w);
  probeGuessed = false;
  return findFreeGroup(bitmapOf(w), cls) >= 0;
}

/**
 * First section whose mode is `mode`, scanning from this client's start
 * section (assembly/cursor.ts); -1 when there is none. A bulk
 * read may see a word mid-update: the caller's CAS settles it.
 */
function findSectionInMode(mode: u32): i32 {
  cursorStart(startSection);
  while (cursorNext()) if (sectionMode(cursorWord) == mode) return <i32>cursorSection;
  return -1;
}

/**
 * Best-effort update of span `span`'s hint in its section header (a few CAS
 * tries; hints are never needed for correctness).
 */
export function markSpan(span: u32, state: u32): void {
  const sec = span >> 4;
  const j = span & 15;
  const off = sectionHdr(sec);
  // Guess the header from the last one this client saw; a guess is only a
  // CAS's expected value, never a reason to skip the update.
  const gi = sec & (GUESS_SECTIONS - 1);
  let guessed = load<u32>(guessSecIdx + (gi << 2)) == sec + 1;
  let w = guessed ? load<u64>(guessSecWord + (gi << 3)) : load64(off);
  for (let i = 0; i < 4; i++) {
    if (sectionMode(w) != MODE_CHUNK || spanState(w, j) == state) {
      if (!guessed) break;
      w = load64(off);
      guessed = false;
      continue;
    }
    const nw = withSpanState(w, j, state);
    const old = cas64(off, w, nw);
    if (old == w) { w = nw; break; }
    w = old;
    guessed = false;
  }
  noteSectionWord(sec, w);
}

/** Sets the hints of `n` spans from `first` (within one section) to `state`. */
export function markSpans(sec: u32, first: u32, n: u32, state: u32): void {
  const off = sectionHdr(sec);
  let w = load64(off);
  for (let i = 0; i < 8; i++) {
    if (sectionMode(w) != MODE_CHUNK) return;
    let nw = w;
    for (let j = first; j < first + n; j++) nw = withSpanState(nw, j, state);
    if (nw == w) return;
    const old = cas64(off, w, nw);
    if (old == w) return;
    w = old;
  }
}

/**
 * Moves section `sec` FREE -> CHUNK with one CAS, then unseals its spans
 * with plain stores (the claimant owns them: assembly/section.ts).
 */
function claimSection(sec: u32): bool {
  const off = sectionHdr(sec);
  const w = load64(off);
  if (sectionMode(w) != MODE_FREE) return false;
  if (cas64(off, w, nextSectionWord(w, 0, clientId, SOP_MODE, MODE_CHUNK, false)) != w) return false;
  crashPoint(CP_CLAIM_CLAIMED);
  // The claimant owns the seals; still, each unseal is a CAS from the sealed
  // word read, so nothing but a seal is ever overwritten.
  readInto(spanHdr(sec * SECTION_SPANS), spanBatch, SECTION_SPANS << 3);
  for (let j: u32 = 0; j < SECTION_SPANS; j++) {
    if (j == SECTION_SPANS / 2) crashPoint(CP_CLAIM_UNSEALING);
    const w = load<u64>(spanBatch + (j << 3));
    if (isSealed(w)) cas64(spanHdr(sec * SECTION_SPANS + j), w, nextSpanWord(w, 0, clientId, OP_NONE, 0, 0));
  }
  return true;
}

// ----------------------------------------------------------------- span path

function allocSpans(cls: u32): i64 {
  const n: u32 = 1 << (cls - 5);
  // Phase 1: hints of every section, from this client's start section.
  let freeSec: i32 = -1;
  cursorStart(startSection);
  while (cursorNext()) {
    const s = cursorSection;
    const sw = cursorWord;
    const mode = sectionMode(sw);
    if (mode == MODE_FREE) { if (freeSec < 0) freeSec = <i32>s; continue; }
    if (mode != MODE_CHUNK) continue;
    for (let g: u32 = 0; g < SECTION_SPANS; g += n) {
      if (!hintsEmpty(sw, g, n)) continue;
      const r = takeSpans(s, g, n, cls);
      if (r >= 0) { startSection = s; return r; }
    }
  }
  // Phase 2: a FREE section of our own.
  if (freeSec < 0) freeSec = findSectionInMode(MODE_FREE);
  while (freeSec >= 0) {
    if (claimSection(<u32>freeSec)) {
      const r = takeSpans(<u32>freeSec, 0, n, cls);
      if (r >= 0) { startSection = <u32>freeSec; return r; }
    }
    freeSec = findSectionInMode(MODE_FREE);
  }
  // Phase 3: span headers themselves, hints ignored.
  for (let s: u32 = 0; s < nSections; s++) {
    if (sectionMode(load64(sectionHdr(s))) != MODE_CHUNK) continue;
    readInto(spanHdr(s * SECTION_SPANS), spanBatch, SECTION_SPANS << 3);
    for (let g: u32 = 0; g < SECTION_SPANS; g += n) {
      let empty = true;
      for (let j = g; j < g + n; j++) if (!isEmptySpan(load<u64>(spanBatch + (j << 3)))) { empty = false; break; }
      if (!empty) continue;
      const r = takeSpans(s, g, n, cls);
      if (r >= 0) { startSection = s; return r; }
    }
  }
  return E_EXHAUSTED;
}

@inline function hintsEmpty(sw: u64, first: u32, n: u32): bool {
  for (let j = first; j < first + n; j++) if (spanState(sw, j) != ST_EMPTY) return false;
  return true;
}

/**
 * Takes spans first..first+n-1 of section `sec` as one block of class `cls`:
 * tails first, head last (the head's CAS commits). Returns the head chunk, or
 * -1 after rolling back whatever it had taken.
 */
function takeSpans(sec: u32, first: u32, n: u32, cls: u32): i64 {
  const base = sec * SECTION_SPANS + first;
  let retries: u32 = 0;
  for (let i: i32 = <i32>n - 1; i >= 0; i--) {
    const span = base + <u32>i;
    let w = load64(spanHdr(span));
    while (true) {
      if (!isEmptySpan(w)) { releaseSpans(base, <u32>i + 1, n, cls); noteRetries(retries); return -1; }
      const old = cas64(spanHdr(span), w, nextSpanWord(w, FULL_BITMAP, clientId, OP_ALLOC, <u32>i, cls));
      if (old == w) break;
      retries++;
      w = old;
    }
    if (i == 1) crashPoint(CP_ALLOC_SPANS_TAILS);
  }
  const head = base << 5;
  crashPoint(CP_ALLOC_SPANS_COMMITTED);
  store64(logOff(head), logEntry(clientId, clientGen, cls, LOG_HELD, 0));
  markSpans(sec, first, n, ST_FULL);
  noteRetries(retries);
  return head;
}

/**
 * Frees spans base+from..base+n-1 of a block of class `cls` (rollback and
 * free). Each span gets one CAS from the word read just before, which must
 * still show span i of a class-`cls` block: while a whole-span block is held
 * nobody else CASes its headers, so a CAS that fails means someone else
 * freed that span, and this free stops there rather than retry against a
 * word that may already be a new holder's. Returns false when it stopped.
 */
export function releaseSpans(base: u32, from: u32, n: u32, cls: u32): bool {
  for (let i = from; i < n; i++) {
    if (i == 1 && from == 0) crashPoint(CP_FREE_SPANS_PARTIAL);
    const span = base + i;
    const w = load64(spanHdr(span));
    if (!isWholeSpanBlock(w) || spanClass(w) != cls || spanChunk(w) != i) return false;
    if (cas64(spanHdr(span), w, nextSpanWord(w, 0, clientId, OP_FREE, i, cls)) != w) return false;
  }
  return true;
}

// -------------------------------------------------------------- section path

function allocSections(n: u32, cls: u32): i64 {
  if (n == 0 || n > nSections) return E_EXHAUSTED;
  for (let attempt = 0; attempt < 2; attempt++) {
    // Next-fit from the cursor (usually a FREE section is among the first
    // few: read 4 headers first), then first-fit from section 0: a run that
    // straddles the cursor is cut in two by the next-fit pass (it resets at
    // the pool's end), and only the second pass sees it whole (issue 9,
    // finding 7). A run never wraps around the end of the pool.
    for (let pass = 0; pass < 2; pass++) {
      const from = pass == 0 ? largeCursor : 0;
      if (pass == 1 && from == largeCursor) break;
      const r = nextFitRun(from, n, cls);
      if (r >= 0) return r;
    }
    if (retireEmptySections() == 0) break;
  }
  return E_EXHAUSTED;
}

/** One pass over every section from `from` for a FREE run of `n`; takes it. */
function nextFitRun(from: u32, n: u32, cls: u32): i64 {
  let run: u32 = 0;
  cursorStart(from, 4);
  while (cursorNext()) {
    const sec = cursorSection;
    if (sec == 0) run = 0;
    if (sectionMode(cursorWord) != MODE_FREE) { run = 0; continue; }
    run++;
    if (run < n) continue;
    const r = takeSections(sec + 1 - n, n, cls, cursorWord);
    if (r >= 0) {
      largeCursor = (sec + 1) % nSections;
      return r;
    }
    run = 0;
  }
  return E_EXHAUSTED;
}

/**
 * Takes sections first..first+n-1 FREE -> LARGE, tails first, head last.
 * `lastWord` is a (possibly stale) read of the last section's header, used
 * as its CAS's expected value; a stale one only fails that CAS.
 */
function takeSections(first: u32, n: u32, cls: u32, lastWord: u64): i64 {
  for (let i: i32 = <i32>n - 1; i >= 0; i--) {
    const sec = first + <u32>i;
    const off = sectionHdr(sec);
    const w = i == <i32>n - 1 ? lastWord : load64(off);
    const ok = sectionMode(w) == MODE_FREE
      && cas64(off, w, nextSectionWord(w, 0, clientId, SOP_ALLOC, MODE_LARGE, i > 0)) == w;
    if (!ok) {
      releaseSections(first, <u32>i + 1, n);
      return -1;
    }
    if (i == 1) crashPoint(CP_ALLOC_SECTIONS_TAILS);
  }
  const head = first * SECTION_CHUNKS;
  crashPoint(CP_ALLOC_SECTIONS_COMMITTED);
  store64(logOff(head), logEntry(clientId, clientGen, cls, LOG_HELD, cls == CLASS_LARGE ? n : 0));
  return head;
}

/**
 * LARGE -> FREE for sections first+from..first+n-1; `firstWord`, when not 0,
 * is the caller's fresh read of the first of them (saves a load). One CAS
 * per header from the word read, stopping at the first lost race (as
 * releaseSpans: nobody else CASes a held LARGE block's headers).
 */
export function releaseSections(first: u32, from: u32, n: u32, firstWord: u64 = 0): bool {
  for (let i = from; i < n; i++) {
    if (i == 1 && from == 0) crashPoint(CP_FREE_SECTIONS_PARTIAL);
    const off = sectionHdr(first + i);
    const w = i == from && firstWord != 0 ? firstWord : load64(off);
    if (sectionMode(w) != MODE_LARGE || sectionTail(w) != (i > 0)) return false;
    if (cas64(off, w, nextSectionWord(w, 0, clientId, SOP_FREE, MODE_FREE, false)) != w) return false;
  }
  return true;
}

/**
 * Retires every CHUNK section whose 16 spans are all empty back to FREE, so
 * the section path can use it. Returns how many were retired.
 */
function retireEmptySections(): u32 {
  let retired: u32 = 0;
  for (let sec: u32 = 0; sec < nSections; sec++) {
    if (sectionMode(load64(sectionHdr(sec))) != MODE_CHUNK) continue;
    readInto(spanHdr(sec * SECTION_SPANS), spanBatch, SECTION_SPANS * 8);
    let allEmpty = true;
    for (let j: u32 = 0; j < SECTION_SPANS; j++) {
      if (!isEmptySpan(load<u64>(spanBatch + (j << 3)))) { allEmpty = false; break; }
    }
    if (allEmpty && retireSection(sec)) retired++;
  }
  return retired;
}

/**
 * CHUNK -> RETIRING, seals all spans (each CAS expects it empty and
 * unsealed), then RETIRING -> FREE. Any span in use rolls it all back.
 */
function retireSection(sec: u32): bool {
  const off = sectionHdr(sec);
  let w = load64(off);
  while (true) {
    if (sectionMode(w) != MODE_CHUNK) return false;
    const marked = nextSectionWord(w, sectionStates(w), clientId, SOP_MODE, MODE_RETIRING, false);
    const old = cas64(off, w, marked);
    if (old == w) { w = marked; break; }
    w = old;
  }
  crashPoint(CP_RETIRE_MARKED);
  const base = sec * SECTION_SPANS;
  for (let j: u32 = 0; j < SECTION_SPANS; j++) {
    if (j == SECTION_SPANS / 2) crashPoint(CP_RETIRE_SEALING);
    const soff = spanHdr(base + j);
    const sw = load64(soff);
    const sealed = nextSpanWord(sw, FULL_BITMAP, clientId, OP_SEAL, 0, 0);
    if (!isEmptySpan(sw) || cas64(soff, sw, sealed) != sw) {
      unsealSpans(base, j);
      // Only this client changes a RETIRING header it marked.
      if (DEBUG) assert(load64(off) == w, 'a RETIRING section header changed under its retirer');
      cas64(off, w, nextSectionWord(w, sectionStates(w), clientId, SOP_MODE, MODE_CHUNK, false));
      return false;
    }
  }
  crashPoint(CP_RETIRE_SEALED);
  const freed = cas64(off, w, nextSectionWord(w, 0, clientId, SOP_MODE, MODE_FREE, false)) == w;
  if (DEBUG) assert(freed, 'a RETIRING section header changed under its retirer');
  return freed;
}

/** Undoes this client's seals on spans base..base+count-1 (retire rollback). */
function unsealSpans(base: u32, count: u32): void {
  for (let j: u32 = 0; j < count; j++) {
    const off = spanHdr(base + j);
    const w = load64(off);
    if (DEBUG) assert(isSealed(w), 'a span we sealed was changed by someone else');
    cas64(off, w, nextSpanWord(w, 0, clientId, OP_NONE, 0, 0));
  }
}

// ---------------------------------------------------------------------- free

/**
 * Frees the block whose first chunk is global chunk `chunk`. Returns OK,
 * E_DOUBLE_FREE (already freed) or E_INVALID_ADDRESS (not the start of an
 * allocated block).
 */
export function freeChunk(chunk: u32, asPool: bool = false): i32 {
  const ops0 = transportOps;
  let r: i32 = 1;
  let e: u64;
  const caching = !asPool && cacheLimit() > 0;
  // A chunk-path block this client allocated here: CAS its entry from
  // HELD(me, cls) straight away (the guess above), to CACHED when the
  // block goes into this client's cache (assembly/cache.ts), else to FREED.
  // Success is exactly "read HELD(me, cls), then won the CAS"; failure
  // returns the true entry, which the checks below take as a load's answer.
  const g = asPool ? 0 : <u32>load<u8>(guessCls + (chunk & (GUESS_CHUNKS - 1)));
  if (g != 0 && ((chunk & 31) & ((1 << (g - 1)) - 1)) == 0) {
    const cls = g - 1;
    const held = logEntry(clientId, clientGen, cls, LOG_HELD, 0);
    if (caching && cacheHasRoom(cls)) {
      e = pushCached(chunk, cls, held);
      if (e == held) r = 0;
    } else {
      e = cas64(logOff(chunk), held, logEntry(clientId, clientGen, cls, LOG_FREED, 0));
      if (e == held) r = clearChunks(chunk, cls);
    }
  } else {
    e = load64(logOff(chunk));
    // This client's own block without a guess (evicted from the direct-mapped table).
    if (caching && e == logEntry(clientId, clientGen, logClass(e), LOG_HELD, 0) && logClass(e) < CACHE_CLASSES
      && (chunk & ((<u32>1 << logClass(e)) - 1)) == 0 && cacheHasRoom(logClass(e))) {
      const held = e;
      e = pushCached(chunk, logClass(e), held);
      if (e == held) r = 0;
    }
  }
  if (r != 1) {
    // Freed (or cached) by the CAS above.
  } else if (logState(e) == LOG_HELD && isPoolOwner(logClient(e)) != asPool) {
    // A slab, a region or the ring is freed only by its own code, and those
    // free only pool-owned blocks.
    r = E_INVALID_ADDRESS;
  } else if (isCachedEntry(e)) {
    // In its client's cache: the application freed it already (and no
    // pool owner's code frees a client's block).
    r = asPool ? E_INVALID_ADDRESS : E_DOUBLE_FREE;
  } else if (logState(e) != LOG_HELD) {
    r = logState(e) == LOG_FREED && !isChunkAllocated(chunk) ? E_DOUBLE_FREE : E_INVALID_ADDRESS;
  } else {
    const cls = logClass(e);
    // A pool owner's free marks its FREED entry (assembly/cache.ts, STOLEN):
    // the span or section commit log may still name the client that
    // allocated the block before handing it over, and its recovery must not
    // take this free, cut short or paused after that write, for its
    // unlogged allocation (test/fencing.test.ts, "finding 12"). The mark
    // takes the place of a multi-section block's length, which no reader
    // takes from a FREED entry.
    const mark = asPool ? STOLEN : 0;
    if (cls <= 4) r = freeChunks(chunk, cls, e, mark);
    else if (cls <= 8) r = freeSpans(chunk, cls, e, mark);
    else r = freeSections(chunk, cls == CLASS_LARGE ? logSections(e) : 1, cls, e, mark);
  }
  freeOps += transportOps - ops0;
  if (r == 0) {
    store<u8>(guessCls + (chunk & (GUESS_CHUNKS - 1)), 0);
    freeCount++;
    const cls = logClass(e);
    const p = classStat(classFrees, cls == CLASS_LARGE ? 10 : cls);
    store<u64>(p, load<u64>(p) + 1);
  }
  return r;
}

/**
 * Hands the block at global chunk `chunk`, just allocated by this client
 * (class `cls`, `sections` sections if CLASS_LARGE), to a pool owner: one CAS of its owner-log head from
 * HELD(this client) to `entry` (assembly/ownerlog.ts, "Pool owners"). Until
 * it succeeds the block is this client's, so a crash in between is undone by
 * this client's recovery. Returns false if the head was not ours.
 */
export function adoptBlock(chunk: u32, cls: u32, sections: u32, entry: u64): bool {
  const mine = logEntry(clientId, clientGen, cls, LOG_HELD, cls == CLASS_LARGE ? sections : 0);
  return cas64(logOff(chunk), mine, entry) == mine;
}

/**
 * Writes the FREED entry that starts every free: a CAS from `expectLog`, the
 * exact owner-log word the caller observed (HELD by the holder for a public
 * free or a recovery of a logged block; whatever the entry held before for
 * an allocation its dead holder never logged). Of two racing frees of one
 * block exactly one wins this CAS; the loser returns E_DOUBLE_FREE and
 * touches nothing else, so it can never go on to clear bits that a third
 * client's new allocation has set (issue 9, finding 9).
 */
@inline function writeFreed(chunk: u32, entry: u64, expectLog: u64): bool {
  return cas64(logOff(chunk), expectLog, entry) == expectLog;
}

export function freeChunks(chunk: u32, cls: u32, expectLog: u64, mark: u32 = 0): i32 {
  const pos = chunk & 31;
  if ((pos & ((1 << cls) - 1)) != 0) return E_CORRUPT;
  if (!writeFreed(chunk, logEntry(clientId, clientGen, cls, LOG_FREED, mark), expectLog)) return E_DOUBLE_FREE;
  return clearChunks(chunk, cls);
}

/**
 * The rest of a chunk-path free, once its FREED entry is written: clears
 * the block's bits in its span header with a CAS. Returns OK or
 * E_DOUBLE_FREE (bits not set: freed meanwhile).
 */
export function clearChunks(chunk: u32, cls: u32): i32 {
  crashPoint(CP_FREE_CHUNK_LOGGED);
  const span = chunk >> 5;
  const pos = chunk & 31;
  const mask = groupMask(pos, cls);
  // Guess the word from a hint or the last word this client saw there
  // (saves a load); a wrong guess costs one failed CAS, which returns the
  // true word, or fails the bit check and is read again.
  let fresh = true;
  let w: u64 = 0;
  for (let c: u32 = 0; c < 5; c++) {
    if (getHintSpan(c) == <i32>span) { w = getHintWord(c); fresh = false; break; }
  }
  if (fresh) {
    const i = span & (GUESS_SPANS - 1);
    if (load<u32>(guessSpanIdx + (i << 2)) == span + 1) { w = load<u64>(guessSpanWord + (i << 3)); fresh = false; }
  }
  if (fresh) w = load64(spanHdr(span));
  while (true) {
    const bm = bitmapOf(w);
    if ((bm & mask) != mask || isSealed(w)) {
      if (fresh) return E_DOUBLE_FREE;
      w = load64(spanHdr(span));
      fresh = true;
      continue;
    }
    const nbm = bm & ~mask;
    const desired = nextSpanWord(w, nbm, clientId, OP_FREE, pos, cls);
    const old = cas64(spanHdr(span), w, desired);
    if (old == w) {
      refreshHints(span, desired);
      if (nbm == 0) markSpan(span, ST_EMPTY);
      else if (bm == FULL_BITMAP) markSpan(span, ST_NORMAL);
      return 0;
    }
    w = old;
    fresh = true;
  }
}

/** Updates every class hint that points at `span`, and its guess, to its latest word. */
@inline function refreshHints(span: u32, w: u64): void {
  for (let c: u32 = 0; c < 5; c++) if (getHintSpan(c) == <i32>span) store<u64>(hintWord + (c << 3), w);
  noteSpanWord(span, w);
}

export function freeSpans(chunk: u32, cls: u32, expectLog: u64, mark: u32 = 0): i32 {
  if ((chunk & (SPAN_CHUNKS - 1)) != 0) return E_CORRUPT;
  const n: u32 = 1 << (cls - 5);
  const base = chunk >> 5;
  const head = load64(spanHdr(base));
  if (!isWholeSpanBlock(head) || spanClass(head) != cls || spanChunk(head) != 0) return E_DOUBLE_FREE;
  if (!writeFreed(chunk, logEntry(clientId, clientGen, cls, LOG_FREED, mark), expectLog)) return E_DOUBLE_FREE;
  crashPoint(CP_FREE_SPANS_LOGGED);
  const ok = releaseSpans(base, 0, n, cls);
  markSpans(base >> 4, base & 15, n, ST_EMPTY);
  return ok ? 0 : E_CORRUPT;
}

export function freeSections(chunk: u32, n: u32, cls: u32, expectLog: u64, mark: u32 = 0): i32 {
  if (chunk % SECTION_CHUNKS != 0) return E_CORRUPT;
  const first = chunk / SECTION_CHUNKS;
  if (n == 0 || first + n > nSections) return E_CORRUPT;
  const w = load64(sectionHdr(first));
  if (sectionMode(w) != MODE_LARGE || sectionTail(w)) return E_DOUBLE_FREE;
  if (!writeFreed(chunk, logEntry(clientId, clientGen, cls, LOG_FREED, cls == CLASS_LARGE && mark == 0 ? n : mark), expectLog)) return E_DOUBLE_FREE;
  crashPoint(CP_FREE_SECTIONS_LOGGED);
  return releaseSections(first, 0, n, w) ? 0 : E_CORRUPT;
}

/** True when global chunk `chunk` belongs to an allocated block right now. */
export function isChunkAllocated(chunk: u32): bool {
  const sec = chunk / SECTION_CHUNKS;
  const mode = sectionMode(load64(sectionHdr(sec)));
  if (mode == MODE_LARGE) return true;
  if (mode != MODE_CHUNK) return false;
  const w = load64(spanHdr(chunk >> 5));
  return !isSealed(w) && (bitmapOf(w) & (<u32>1 << (chunk & 31))) != 0;
}

/** Blocks this client allocated / freed of class `cls` (10 = above 2 MiB). */
export function classAllocCount(cls: u32): u64 { return load<u64>(classStat(classAllocs, cls)); }
export function classFreeCount(cls: u32): u64 { return load<u64>(classStat(classFrees, cls)); }
