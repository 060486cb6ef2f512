/**
 * The block walker: the one pass over pool metadata that the census
 * (assembly/scan.ts), the audit (orphans and fsck, assembly/audit.ts) and
 * recovery (assembly/recover.ts) share. It visits every section in order and,
 * inside CHUNK sections, every span, and stops at each *unit*:
 *
 *   W_FREE          a FREE section
 *   W_RETIRING      a RETIRING section (a retire in progress, or one a dead
 *                   client left half done)
 *   W_LARGE_HEAD    the first section of a LARGE block; `walkEntry` is the
 *                   owner-log entry of its first chunk
 *   W_LARGE_TAIL    a later section of a LARGE block
 *   W_CHUNK         a CHUNK section, entered: its 16 span headers and 512
 *                   owner-log entries were just read in two bulk reads
 *                   (`walkSpans`, `walkLogs`), and its spans follow
 *   W_SEALED_SPAN   a sealed span of that section (a claim not yet unsealed)
 *   W_SPAN_HEAD     the first span of a whole-span block (class 5..8);
 *                   `walkEntry` is the owner-log entry of its first chunk
 *   W_SPAN_TAIL     a later span of a whole-span block
 *   W_CHUNKS        a span of chunk-level blocks (class 0..4): `walkWord`
 *                   is its header, `walkLogBase` its 32 owner-log entries
 *
 * A head does not say by itself how many tails are its own: that depends
 * on the caller's question (does any HELD entry cover them, for the census;
 * does a *live* client's, for the audit; is it the recovered client's, for
 * recovery). So the caller decides: `walkCover(n)` after a head marks the
 * next n tails of that kind as covered, and each tail comes with
 * `walkCovered`. A tail the caller did not cover is one without a head
 * (an allocation that died after taking it and before its head) or one of
 * a head the caller judged not owned.
 *
 * Section headers are read one at a time (`load64`) as the walk reaches
 * them, so a caller that changes metadata as it goes (recovery, fsck
 * --repair) sees later sections as they are then; span headers and owner
 * logs of a CHUNK section are a snapshot taken on entering it, which the
 * callers only use as the expected values of their CASes, and which
 * belongs to the section state its header was read in (no mode operation
 * between the two: `nextSectionUnit`).
 */
import { CP_WALK_SECTION, crashPoint } from './crash';
import { load64, readInto } from './imports';
import { SECTION_CHUNKS, SECTION_SPANS, logOff, nSections, sectionHdr, spanHdr } from './layout';
import { MODE_CHUNK, MODE_FREE, MODE_LARGE, sectionMode, sectionTail } from './section';
import { isSealed, isWholeSpanBlock, spanChunk } from './span';

/** Kinds up to W_CHUNK are sections, the rest spans (a caller counts sections with `kind <= W_CHUNK`). */
export const W_END: u32 = 0;
export const W_FREE: u32 = 1;
export const W_RETIRING: u32 = 2;
export const W_LARGE_HEAD: u32 = 3;
export const W_LARGE_TAIL: u32 = 4;
export const W_CHUNK: u32 = 5;
export const W_SEALED_SPAN: u32 = 6;
export const W_SPAN_HEAD: u32 = 7;
export const W_SPAN_TAIL: u32 = 8;
export const W_CHUNKS: u32 = 9;

/** The section of the last unit (for span units, the section holding the span). */
export let walkSection: u32 = 0;
/** That section's header word, as read. */
export let walkSectionWord: u64 = 0;
/** Global index of the last span unit's span. */
export let walkSpan: u32 = 0;
/** The last unit's header word: a section header (section units) or a span header (span units). */
export let walkWord: u64 = 0;
/** The owner-log entry of a head unit's first chunk. */
export let walkEntry: u64 = 0;
/** W_CHUNKS: address of the span's 32 owner-log entries (u64 each) in core memory. */
export let walkLogBase: usize = 0;
/** A tail unit: covered by the last head (`walkCover`). */
export let walkCovered = false;

/** The current CHUNK section's span headers and owner log (bulk reads). */
export const walkSpans = memory.data(8 * 16);
export const walkLogs = memory.data(8 * 512);

let nextSection: u32 = 0;
/** Span index inside the current CHUNK section, or 16 when not inside one. */
let spanIndex: u32 = SECTION_SPANS;
let lastKind: u32 = W_END;
let largeLeft: u32 = 0;
let spansLeft: u32 = 0;

/** Starts a walk from section 0. */
export function walkStart(): void {
  nextSection = 0;
  spanIndex = SECTION_SPANS;
  lastKind = W_END;
  largeLeft = 0;
  spansLeft = 0;
}

/** The last head unit covers the next `n` tails of its kind. */
export function walkCover(n: u32): void {
  if (lastKind == W_LARGE_HEAD) largeLeft = n;
  else if (lastKind == W_SPAN_HEAD) spansLeft = n;
}

/** Moves to the next unit and returns its kind (W_END after the last). */
export function walkNext(): u32 {
  lastKind = spanIndex < SECTION_SPANS ? nextSpan() : nextSectionUnit();
  return lastKind;
}

function nextSectionUnit(): u32 {
  if (nextSection >= nSections) return W_END;
  const sec = nextSection++;
  walkSection = sec;
  // A section's header and what is read after it (a LARGE head's owner-log
  // entry; a CHUNK section's span headers and owner log) make one snapshot
  // only if no mode operation ran in between. Between a recoverer's header
  // read and its span read, a retire may seal a CHUNK section's spans and
  // free it, and a LARGE allocation take it: "CHUNK, claimed by x" paired
  // with seals that are now a live LARGE block's, which the recovery of x
  // would unseal (test/fencing.test.ts, "finding 11"). Every mode operation
  // rewrites the header's upper half (its commit log and seq: section.ts,
  // nextSectionWord; span hints are the lower half), so the header is read
  // again after those reads, and the section read again while that half
  // changed.
  for (;;) {
    const sw = load64(sectionHdr(sec));
    walkSectionWord = sw;
    walkWord = sw;
    const mode = sectionMode(sw);
    if (mode == MODE_LARGE) {
      if (sectionTail(sw)) {
        walkCovered = largeLeft > 0;
        if (walkCovered) largeLeft--;
        return W_LARGE_TAIL;
      }
      largeLeft = 0;
      walkEntry = load64(logOff(sec * SECTION_CHUNKS));
      if (sameMode(sec, sw)) return W_LARGE_HEAD;
      continue;
    }
    largeLeft = 0;
    if (mode == MODE_FREE) return W_FREE;
    if (mode != MODE_CHUNK) return W_RETIRING;
    // A walker paused here, between the header and the spans (the test's).
    crashPoint(CP_WALK_SECTION);
    readInto(spanHdr(sec * SECTION_SPANS), walkSpans, SECTION_SPANS << 3);
    readInto(logOff(sec * SECTION_CHUNKS), walkLogs, SECTION_CHUNKS << 3);
    if (!sameMode(sec, sw)) continue;
    spanIndex = 0;
    spansLeft = 0;
    return W_CHUNK;
  }
}

/** True when section `sec`'s header still has the upper half (commit log, mode, seq) of `sw`. */
@inline function sameMode(sec: u32, sw: u64): bool {
  return (load64(sectionHdr(sec)) >> 32) == (sw >> 32);
}

function nextSpan(): u32 {
  const j = spanIndex++;
  const w = load<u64>(walkSpans + (j << 3));
  walkSpan = walkSection * SECTION_SPANS + j;
  walkWord = w;
  if (isSealed(w)) { spansLeft = 0; return W_SEALED_SPAN; }
  if (isWholeSpanBlock(w)) {
    if (spanChunk(w) == 0) {
      spansLeft = 0;
      walkEntry = load<u64>(walkLogs + ((j << 5) << 3));
      return W_SPAN_HEAD;
    }
    walkCovered = spansLeft > 0;
    if (walkCovered) spansLeft--;
    return W_SPAN_TAIL;
  }
  spansLeft = 0;
  walkLogBase = walkLogs + ((j << 5) << 3);
  return W_CHUNKS;
}
