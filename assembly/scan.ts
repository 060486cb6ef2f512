/**
 * Pool-wide census from metadata alone (for `dmem stat`, and the base of
 * fsck): blocks and chunks held per class, free chunks, the largest free run,
 * and orphan chunks (set bits that no HELD owner-log head covers: an
 * allocation or free in flight, or one a dead client left half done; see
 * assembly/ownerlog.ts). Reads each CHUNK section's span headers and owner
 * log with two bulk reads; writes nothing.
 *
 * Result block, f64 each, at the returned pointer:
 *   [0]  sections FREE    [1] sections CHUNK   [2] sections LARGE
 *   [3]  free chunks      [4] orphan chunks    [5] largest free run (chunks)
 *   [6]  sealed spans in CHUNK sections        [7] live client slots
 *   [8..18]  blocks held per class 0..9, [18] = above 2 MiB
 *   [19..29] chunks held per class 0..9, [29] = above 2 MiB
 */
import { load64, readInto } from './imports';
import { SLOT_LIVE, slotOff, slotState } from './client';
import { SECTION_CHUNKS, SECTION_SPANS, maxClients, nSections, ownerLogOff, sectionHdrOff, spanHdrOff } from './layout';
import { CLASS_LARGE, LOG_HELD, groupChunk, heldGroups, logClass, logSections, logState } from './ownerlog';
import { MODE_CHUNK, MODE_FREE, MODE_LARGE, sectionMode, sectionTail } from './section';
import { bitmapOf, groupMask, isSealed, isWholeSpanBlock, spanChunk, spanClass } from './span';

export const SCAN_FIELDS: u32 = 30;
const out = memory.data(8 * 30);
const spans = memory.data(8 * 16);
const logs = memory.data(8 * 512);

@inline function add(i: u32, v: f64): void { store<f64>(out + (i << 3), load<f64>(out + (i << 3)) + v); }
@inline function classIndex(cls: u32): u32 { return cls == CLASS_LARGE ? 10 : cls; }

export function scanPool(): usize {
  memory.fill(out, 0, 8 * SCAN_FIELDS);
  let run: f64 = 0;
  let best: f64 = 0;
  let coveredTails: u32 = 0;
  for (let sec: u32 = 0; sec < nSections; sec++) {
    const sw = load64(sectionHdrOff + (<u64>sec << 3));
    const mode = sectionMode(sw);
    if (mode != MODE_LARGE) coveredTails = 0;
    if (mode == MODE_FREE) {
      add(0, 1);
      add(3, <f64>SECTION_CHUNKS);
      run += <f64>SECTION_CHUNKS;
      if (run > best) best = run;
      continue;
    }
    if (mode == MODE_LARGE) {
      add(2, 1);
      run = 0;
      if (sectionTail(sw)) {
        // A tail is covered by the HELD head before it, else it is an orphan
        // (a multi-section allocation that died before taking its head).
        if (coveredTails > 0) coveredTails--;
        else add(4, <f64>SECTION_CHUNKS);
        continue;
      }
      const e = load64(ownerLogOff + (<u64>(sec * SECTION_CHUNKS) << 3));
      coveredTails = 0;
      if (logState(e) == LOG_HELD && logClass(e) >= 9) {
        const n: u32 = logClass(e) == CLASS_LARGE ? logSections(e) : 1;
        add(8 + classIndex(logClass(e)), 1);
        add(19 + classIndex(logClass(e)), <f64>(n * SECTION_CHUNKS));
        coveredTails = n - 1;
      } else {
        add(4, <f64>SECTION_CHUNKS);
      }
      continue;
    }
    if (mode != MODE_CHUNK) continue;
    add(1, 1);
    readInto(spanHdrOff + (<u64>(sec * SECTION_SPANS) << 3), spans, SECTION_SPANS << 3);
    readInto(ownerLogOff + (<u64>(sec * SECTION_CHUNKS) << 3), logs, SECTION_CHUNKS << 3);
    let coveredSpans: u32 = 0;
    for (let j: u32 = 0; j < SECTION_SPANS; j++) {
      const w = load<u64>(spans + (j << 3));
      if (isSealed(w)) { add(6, 1); run = 0; continue; }
      if (isWholeSpanBlock(w)) {
        run = 0;
        if (coveredSpans > 0) { coveredSpans--; continue; }
        const e = load<u64>(logs + (j << 8));
        if (spanChunk(w) == 0 && logState(e) == LOG_HELD && logClass(e) == spanClass(w)) {
          const n: u32 = 1 << (spanClass(w) - 5);
          add(8 + spanClass(w), 1);
          add(19 + spanClass(w), <f64>(n * 32));
          coveredSpans = n - 1;
        } else {
          add(4, 32);
        }
        continue;
      }
      coveredSpans = 0;
      const bm = bitmapOf(w);
      let covered: u32 = 0;
      const logBase = logs + ((j << 5) << 3);
      const groups = heldGroups(bm, logBase);
      for (let g: u32 = 0; g < groups; g++) {
        const k = <u32>load<u8>(groupChunk + g);
        const cls = logClass(load<u64>(logBase + (k << 3)));
        covered |= groupMask(k, cls);
        add(8 + cls, 1);
        add(19 + cls, <f64>(1 << cls));
      }
      add(4, <f64>popcnt(bm & ~covered));
      add(3, <f64>popcnt(~bm));
      for (let k: u32 = 0; k < 32; k++) {
        if ((bm & (<u32>1 << k)) != 0) { run = 0; continue; }
        run += 1;
        if (run > best) best = run;
      }
    }
  }
  store<f64>(out + (5 << 3), best);
  let live: f64 = 0;
  for (let id: u32 = 1; id <= maxClients; id++) if (slotState(load64(slotOff(id))) == SLOT_LIVE) live += 1;
  store<f64>(out + (7 << 3), live);
  return out;
}
