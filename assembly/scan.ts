/**
 * Pool-wide census from metadata alone (for `dmem stat`, and the base of
 * fsck): blocks and chunks held per class, free chunks, the largest free run,
 * and orphan chunks (set bits that no HELD owner-log head covers: an
 * allocation or free in flight, or one a dead client left half done; see
 * assembly/ownerlog.ts). One pass of the shared block walker
 * (assembly/walk.ts); writes nothing.
 *
 * Result block, f64 each, at the returned pointer:
 *   [0]  sections FREE    [1] sections CHUNK   [2] sections LARGE
 *   [3]  free chunks      [4] orphan chunks    [5] largest free run (chunks)
 *   [6]  sealed spans in CHUNK sections        [7] live client slots
 *   [8..18]  blocks held per class 0..9, [18] = above 2 MiB
 *   [19..29] chunks held per class 0..9, [29] = above 2 MiB
 * Blocks in their clients' block caches are not held here: see scanCached.
 */
import { load64 } from './imports';
import { SLOT_LIVE, slotOff, slotState } from './client';
import { SECTION_CHUNKS, maxClients } from './layout';
import { CLASS_LARGE, LOG_HELD, groupChunk, heldGroups, logClass, logClient, logSections, logState } from './ownerlog';
import { isCachedEntry } from './cache';
import { bitmapOf, groupMask, spanClass } from './span';
import {
  W_CHUNK, W_CHUNKS, W_END, W_FREE, W_LARGE_HEAD, W_LARGE_TAIL, W_SEALED_SPAN, W_SPAN_HEAD, W_SPAN_TAIL,
  walkCover, walkCovered, walkEntry, walkLogBase, walkNext, walkStart, walkWord,
} from './walk';

export const SCAN_FIELDS: u32 = 30;
const out = memory.data(8 * 30);

/**
 * Blocks in clients' caches (assembly/cache.ts), from the last scanPool, at
 * scanCached()'s pointer, f64 each: [0] blocks, [1] chunks, [2] clients
 * listed (at most CACHED_CLIENTS; the totals count every client), then per
 * listed client [client id, blocks, chunks]. The census above counts them
 * neither as held (the application freed them) nor as free (their bits
 * are set, and only their client hands them out again) nor as orphans
 * (their client owns them): free + held + orphan + cached = all chunks.
 */
export const CACHED_CLIENTS: u32 = 64;
const cachedOut = memory.data(8 * (3 + 3 * 64));

@inline function cachedAt(i: u32): usize { return cachedOut + (i << 3); }

function noteCached(client: u32, chunks: u32): void {
  store<f64>(cachedAt(0), load<f64>(cachedAt(0)) + 1);
  store<f64>(cachedAt(1), load<f64>(cachedAt(1)) + <f64>chunks);
  const n = <u32>load<f64>(cachedAt(2));
  for (let i: u32 = 0; i < n; i++) {
    const at = 3 + 3 * i;
    if (<u32>load<f64>(cachedAt(at)) != client) continue;
    store<f64>(cachedAt(at + 1), load<f64>(cachedAt(at + 1)) + 1);
    store<f64>(cachedAt(at + 2), load<f64>(cachedAt(at + 2)) + <f64>chunks);
    return;
  }
  if (n >= CACHED_CLIENTS) return;
  const at = 3 + 3 * n;
  store<f64>(cachedAt(at), <f64>client);
  store<f64>(cachedAt(at + 1), 1);
  store<f64>(cachedAt(at + 2), <f64>chunks);
  store<f64>(cachedAt(2), <f64>(n + 1));
}

/** Pointer to the cached-block counts of the last scanPool (see `cachedOut`). */
export function scanCached(): usize { return cachedOut; }

@inline function add(i: u32, v: f64): void { store<f64>(out + (i << 3), load<f64>(out + (i << 3)) + v); }
@inline function classIndex(cls: u32): u32 { return cls == CLASS_LARGE ? 10 : cls; }

export function scanPool(): usize {
  memory.fill(out, 0, 8 * SCAN_FIELDS);
  memory.fill(cachedOut, 0, 8 * 3);
  let run: f64 = 0;
  let best: f64 = 0;
  walkStart();
  for (let kind = walkNext(); kind != W_END; kind = walkNext()) {
    if (kind == W_FREE) {
      add(0, 1);
      add(3, <f64>SECTION_CHUNKS);
      run += <f64>SECTION_CHUNKS;
      if (run > best) best = run;
    } else if (kind == W_LARGE_HEAD) {
      add(2, 1);
      run = 0;
      const e = walkEntry;
      if (logState(e) == LOG_HELD && logClass(e) >= 9) {
        const n: u32 = logClass(e) == CLASS_LARGE ? logSections(e) : 1;
        add(8 + classIndex(logClass(e)), 1);
        add(19 + classIndex(logClass(e)), <f64>(n * SECTION_CHUNKS));
        walkCover(n - 1);
      } else {
        add(4, <f64>SECTION_CHUNKS);
      }
    } else if (kind == W_LARGE_TAIL) {
      // A tail is covered by the HELD head before it, else it is an orphan
      // (a multi-section allocation that died before taking its head).
      add(2, 1);
      run = 0;
      if (!walkCovered) add(4, <f64>SECTION_CHUNKS);
    } else if (kind == W_CHUNK) {
      add(1, 1);
    } else if (kind == W_SEALED_SPAN) {
      add(6, 1);
      run = 0;
    } else if (kind == W_SPAN_HEAD) {
      run = 0;
      const w = walkWord;
      const e = walkEntry;
      if (logState(e) == LOG_HELD && logClass(e) == spanClass(w)) {
        const n: u32 = 1 << (spanClass(w) - 5);
        add(8 + spanClass(w), 1);
        add(19 + spanClass(w), <f64>(n * 32));
        walkCover(n - 1);
      } else {
        add(4, 32);
      }
    } else if (kind == W_SPAN_TAIL) {
      run = 0;
      if (!walkCovered) add(4, 32);
    } else if (kind == W_CHUNKS) {
      const bm = bitmapOf(walkWord);
      let covered: u32 = 0;
      const logBase = walkLogBase;
      const groups = heldGroups(bm, logBase);
      for (let g: u32 = 0; g < groups; g++) {
        const k = <u32>load<u8>(groupChunk + g);
        const e = load<u64>(logBase + (k << 3));
        const cls = logClass(e);
        covered |= groupMask(k, cls);
        if (isCachedEntry(e)) {
          noteCached(logClient(e), <u32>1 << cls);
        } else {
          add(8 + cls, 1);
          add(19 + cls, <f64>(1 << cls));
        }
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
