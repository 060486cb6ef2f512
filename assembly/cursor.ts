/**
 * Section-header cursor: visits every section once, starting anywhere and
 * wrapping at the end, reading BATCH headers per bulk transport read (one
 * round trip per 32 sections on RDMA, instead of 32). A bulk read may see a
 * header mid-update; callers only use what they see as a hint or as a CAS's
 * expected value, so a torn or stale word costs a failed CAS, never a wrong
 * result. One cursor is live at a time (the core is single-threaded and no
 * caller nests two scans).
 */
import { readInto } from './imports';
import { nSections, sectionHdrOff } from './layout';

const BATCH: u32 = 32;
const buf = memory.data(8 * 32);

let nextSection: u32 = 0;
let left: u32 = 0;
let want: u32 = BATCH;
let base: u32 = 0;
let index: u32 = 0;
let count: u32 = 0;

/** Section the last `cursorNext()` visited. */
export let cursorSection: u32 = 0;
/** Its header word, as read. */
export let cursorWord: u64 = 0;

/**
 * Starts a walk over all sections from `from`; the first bulk read fetches
 * `firstBatch` headers (small when the first few usually suffice).
 */
export function cursorStart(from: u32, firstBatch: u32 = BATCH): void {
  nextSection = nSections > 0 ? from % nSections : 0;
  left = nSections;
  want = max(1, min(firstBatch, BATCH));
  index = 0;
  count = 0;
}

/** Moves to the next section; false when every section was visited. */
export function cursorNext(): bool {
  if (index == count) {
    if (left == 0) return false;
    count = min(min(want, left), nSections - nextSection);
    want = BATCH;
    readInto(sectionHdrOff + (<u64>nextSection << 3), buf, count << 3);
    base = nextSection;
    index = 0;
    left -= count;
    nextSection = (nextSection + count) % nSections;
  }
  cursorSection = base + index;
  cursorWord = load<u64>(buf + (index << 3));
  index++;
  return true;
}
