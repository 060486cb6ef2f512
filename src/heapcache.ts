/**
 * The host's fast path of the object heap (issue 10): where the pool is
 * mapped into this process but not into the core's memory (a memory: pool,
 * or a direct window turned off: where the core has a direct window its
 * own path, assembly/heap.ts heapAllocDirect, is faster and src/heap.ts
 * takes it instead), in one window or several (a slab whose metadata
 * straddles two windows is left to the core), the common heap alloc and free
 * (assembly/heap.ts, `heapAllocObject` and `heapFreeAt`) run in JS itself,
 * with one `Atomics.compareExchange` on a 32-bit tag or bitmap half and no
 * call into the core, no import back and no BigInt (those crossings were
 * most of a heap operation's time: docs/performance.md).
 *
 * The per-class object caches stay where the core keeps them, in core
 * memory: the slots, their lengths and the active slabs are read and
 * written here through views of the core's memory at the addresses the
 * core reports (`heapCacheLayout`). Everything else (an active slab with
 * nothing left to claim, a full cache to spill, a CAS that fails, an
 * address that is not a live object's start, an object in another state)
 * goes to the core's own path, which does the same and more and reports
 * the errors; nothing is changed here before handing over.
 *
 * The protocol is the core's, step for step (assembly/slab.ts,
 * "Concurrency"; assembly/heap.ts, "Tag words"):
 *   alloc  pop the class's cache, then CAS the object's tag half
 *          cached(me) -> (me, requested): the core writes that half with
 *          a CAS of the whole word that changes only this half, which is
 *          exactly a 32-bit CAS of the half
 *   refill of an empty cache from the active slab: the core's
 *          `claimFrom`, see `refill` below
 *   free of an object this client took, in any slab: the bit must be set
 *          and the tag half must say handed out by me; CAS that half
 *          (me, requested) -> cached(me), then push it on the cache (the
 *          core's `freeOwn`)
 *   free of an object another client took: the tag must say handed out;
 *          a CAS loop clears the object's bit in its 32-bit bitmap half
 *          (the core's `freeObject`, whose 64-bit CAS loop only needs the
 *          bit set and retries on any other change of the word, so a CAS
 *          of the half holding the bit is the same step); when the slab is
 *          marked full and this word now has enough free objects, the core
 *          clears the hint (`heapClearFull`)
 * Reads are plain reads of the mapping (an aligned 32-bit read is one
 * load on the hosts we run on; V8's Atomics.load costs three times as
 * much), each made once per call: every decision they feed is either
 * checked again by the CAS that acts on the word read, or is the same
 * unchecked read the core makes with its own `load64`.
 * A 32-bit CAS and the core's 64-bit CASes on the same word are both one
 * locked instruction on the mapping; one that lands between another's read
 * and its CAS makes that CAS fail and retry, as two 64-bit ones would.
 * Only the bookkeeping moves here: a pop or push updates the core's slots
 * and length exactly as the core would, after its CAS won.
 *
 * Fencing: callers run the pool's lease check (`guard`) first, as for the
 * core path. A client is recovered only once fenced (docs/design.md,
 * "Fencing"); a paused pop that resumes after a recovery has freed its
 * cached object and another client has claimed it finds a tag that is not
 * cached(me) and loses its CAS (test/heap.test.ts freezes one there).
 *
 * Little-endian hosts only. Not used while a crash point is armed (the
 * core path is then the one under test).
 *
 * Algorithm: the slab allocator's per-client object cache (Bonwick, USENIX
 * '94; a cache per client as the magazines of Bonwick and Adams, USENIX
 * '01, section 3) kept in the pool so recovery needs no help (HPE NVMM's
 * heap), with every shared step one CAS that records its client, as in
 * FineMem's one-sided allocator (OSDI '25, section 4).
 */
import type { Core } from './core.js';

/** 2^-32: the upper half of an offset below 2^53 is (off - (off >>> 0)) * TWO_TO_MINUS_32, exactly. */
const TWO_TO_MINUS_32 = 1 / 4294967296;
/** A slab is 16 chunks of 4 KiB, aligned to its size in the data area (assembly/slab.ts). */
const SLAB_BYTES = 65536;
/** The owner-log entry's upper half: S (a slab) is bit 31, F (full hint) bit 26 (assembly/slab.ts). */
const S_FULL = 1 << 26;
/** The owner and owner-generation bits of a slab entry's upper half (assembly/slab.ts). */
const OWNER_BITS = 0x3ffffff;
/** Tag halves: taker in the low 16 bits, requested bytes above; 0xFFFF: queued for a delayed free. */
const RETIRED = 0xffff;

export class HeapFastPath {
  /** Allocations and frees this path completed (the core counts the rest). */
  allocs = 0;
  frees = 0;

  private readonly x: Core['exports'];
  /**
   * The pool mapping as 32-bit halves, one Int32Array per window: the
   * lower half of pool word w is half 2w, in window floor(2w / winHalves)
   * at 2w mod winHalves (a power of two). Every index into one window is a
   * small integer (V8 keeps it untagged and its Atomics inline): a window
   * is at most 4 GiB.
   */
  private readonly wins: Int32Array[];
  private readonly winHalves: number;
  /** wins[0], read without the array (the only window of most pools). */
  private readonly win0: Int32Array;
  /** 1 / winHalves (a power of two: exact). */
  private readonly perWindow: number;
  /** True when the pool is one window (no window arithmetic on the hot path). */
  private readonly single: boolean;
  private readonly dataOffset: number;
  private readonly dataBytes: number;
  /** Pool-wide half index of the data area's first byte, and of the owner log's first entry. */
  private readonly dataHalf0: number;
  private readonly logHalf0: number;
  /** This client's tag of a cached object (requested 0), and its taker bits. */
  private readonly cachedTag: number;
  private readonly taker: number;
  /** Lower half of every slab's owner-log entry, and the owner bits of its upper half for a slab this client owns. */
  private readonly slabLow: number;
  private readonly ownerBits: number;
  private readonly cap: number;
  private readonly classes: number;
  /** Per object class: object size, objects per slab, metadata bytes, bitmap words (all below 2^16). */
  private readonly size: Int32Array;
  private readonly count: Int32Array;
  private readonly meta: Int32Array;
  private readonly metaHalves: Int32Array;
  private readonly words: Int32Array;
  /** 1 / size per class: an object's index is round(distance * inverse), checked by multiplying back (no division on the hot path). */
  private readonly inverse: Float64Array;
  /** Free objects a bitmap word of a full-hinted slab needs before a free clears the hint, per class. */
  private readonly refillMin: Int32Array;
  /** Object class by 64-byte granule count (bytes + 63) >> 6, for 1..maxObject bytes. */
  private readonly classOfGranules: Uint8Array;
  /** Largest object size with a slab class (bytes). */
  readonly maxObject: number;
  private readonly slotsAt: number;
  private readonly lenAt: number;
  private readonly activeAt: number;
  private slots!: Uint32Array;
  private len!: Uint32Array;
  private active!: Int32Array;
  private next!: Uint32Array;
  private readonly nextAt: number;

  /**
   * @param mapping the pool mapping (MappedMemory.windowArrays): its windows,
   *   each `windowBytes` long (a power of two, at most 4 GiB) but the last
   * @param ownerLogOffset byte offset of the owner log; @param dataOffset of chunk 0; @param dataBytes of the data area
   */
  constructor(core: Core, mapping: { words: BigInt64Array[]; windowBytes: number }, ownerLogOffset: number, dataOffset: number, dataBytes: number) {
    const x = (this.x = core.exports);
    this.wins = mapping.words.map((w) => new Int32Array(w.buffer, w.byteOffset, w.length * 2));
    this.win0 = this.wins[0];
    this.winHalves = mapping.windowBytes / 4;
    this.perWindow = 1 / this.winHalves;
    this.single = this.wins.length === 1;
    this.logHalf0 = ownerLogOffset / 4;
    this.dataOffset = dataOffset;
    this.dataBytes = dataBytes;
    this.dataHalf0 = dataOffset / 4;
    this.slotsAt = x.heapCacheLayout(0);
    this.lenAt = x.heapCacheLayout(1);
    this.activeAt = x.heapCacheLayout(2);
    this.nextAt = x.heapCacheLayout(6);
    this.cap = x.heapCacheLayout(3);
    this.cachedTag = x.heapCacheLayout(4);
    this.taker = this.cachedTag & 0xffff;
    this.slabLow = x.heapCacheLayout(5) | 0;
    this.ownerBits = x.heapCacheLayout(7);
    let k = 0;
    while (x.heapClassSize(k) > 0) k++;
    this.classes = k;
    this.size = new Int32Array(k);
    this.count = new Int32Array(k);
    this.meta = new Int32Array(k);
    this.metaHalves = new Int32Array(k);
    this.words = new Int32Array(k);
    this.inverse = new Float64Array(k);
    this.refillMin = new Int32Array(k);
    for (let c = 0; c < k; c++) {
      this.size[c] = x.heapClassSize(c);
      this.count[c] = x.heapClassObjects(c);
      this.meta[c] = x.heapCacheLayout(16 + c);
      this.metaHalves[c] = this.meta[c] / 4;
      this.words[c] = Math.ceil(this.count[c] / 64);
      this.inverse[c] = 1 / this.size[c];
      this.refillMin[c] = x.heapCacheLayout(32 + c);
    }
    this.maxObject = this.size[k - 1];
    this.classOfGranules = new Uint8Array(this.maxObject / 64 + 1);
    for (let g = 1, c = 0; g < this.classOfGranules.length; g++) {
      while (this.size[c] < g * 64) c++;
      this.classOfGranules[g] = c;
    }
    this.remap();
  }

  /**
   * The window holding pool-wide halves [h, h + n) (n small), or -1 when
   * they straddle two windows (a slab's metadata can, once per window
   * boundary at most: such a slab is left to the core).
   */
  private windowOf(h: number, n: number): number {
    if (this.single) return 0;
    const w = Math.floor(h * this.perWindow);
    return h + n <= (w + 1) * this.winHalves ? w : -1;
  }

  /** Window `w`'s halves. */
  private win(w: number): Int32Array {
    return w === 0 ? this.win0 : this.wins[w];
  }

  /** The upper half of the owner-log entry of the slab whose first chunk is `head`. */
  private slabState(head: number): number {
    const log = this.logHalf0 + 2 * head;
    const lw = this.windowOf(log, 2);
    return this.win(lw)[log - lw * this.winHalves + 1];
  }

  /** Cache slot `s` (a half index into `slots`): the byte offset it holds. */
  private slotOffset(s: number): number {
    return this.slots[s] + this.slots[s + 1] * 4294967296;
  }

  /** Puts byte offset `off` (below 2^53) in cache slot `s`. */
  private setSlot(s: number, off: number): void {
    this.slots[s] = off >>> 0;
    this.slots[s + 1] = (off - (off >>> 0)) * TWO_TO_MINUS_32;
  }

  /**
   * Clears bit `bit` of bitmap half `bitAt` (of `halves`) by a CAS loop, as
   * the core's freeObject does; then, for a slab marked full (entry upper
   * half `st`, first chunk `head`), has the core clear the hint once the
   * object's bitmap word has refillMin free objects (rare: once per slab
   * and release). False when the bit was clear already.
   */
  private clearBit(halves: Int32Array, slabHalf: number, bitAt: number, bit: number, idx: number, k: number, st: number, head: number): boolean {
    let bits = halves[bitAt];
    while ((bits & bit) !== 0) {
      const old = Atomics.compareExchange(halves, bitAt, bits, bits & ~bit);
      if (old === bits) {
        if ((st & S_FULL) !== 0 && freeInWord(halves, slabHalf, idx >> 6, this.count[k]) >= this.refillMin[k]) this.x.heapClearFull(head);
        return true;
      }
      bits = old;
    }
    return false;
  }

  /**
   * Views of the core's slots, lengths and active slabs; again after the
   * core's memory grew (its old buffer is detached and views of it have
   * length 0, which is what the hot path checks).
   */
  private remap(): void {
    const buffer = this.x.memory.buffer;
    this.slots = new Uint32Array(buffer, this.slotsAt, 2 * this.cap * this.classes);
    this.len = new Uint32Array(buffer, this.lenAt, this.classes);
    this.active = new Int32Array(buffer, this.activeAt, this.classes);
    this.next = new Uint32Array(buffer, this.nextAt, this.classes);
  }

  /**
   * Hands out a cached object for `bytes` (an integer 1..maxObject).
   * Returns its byte offset, or -1 when the core must allocate (its cache
   * of that class is empty, or the CAS lost).
   */
  alloc(bytes: number): number {
    if (this.len.length === 0) this.remap();
    const k = this.classOfGranules[(bytes + 63) >> 6];
    let n = this.len[k];
    if (n === 0 && (n = this.refill(k)) === 0) return -1;
    const off = this.slotOffset(2 * (k * this.cap + n - 1));
    const rel = off - this.dataOffset;
    const slab = Math.floor(rel * (1 / SLAB_BYTES));
    const idx = Math.round((rel - slab * SLAB_BYTES - this.meta[k]) * this.inverse[k]);
    const slabHalf = this.dataHalf0 + slab * (SLAB_BYTES / 4);
    const w = this.windowOf(slabHalf, this.metaHalves[k]);
    if (w < 0) return -1;
    const at = slabHalf - w * this.winHalves + 2 * this.words[k] + idx;
    const want = this.cachedTag;
    if (Atomics.compareExchange(this.win(w), at, want, want | (bytes << 16)) !== want) return -1;
    this.len[k] = n - 1;
    this.allocs++;
    return off;
  }

  /**
   * The core's `claimFrom` for the empty cache of class `k`: in the active
   * slab, from the bitmap word the last refill stopped at, the first word
   * with free objects has them all claimed: their tags first (only the
   * owner writes tags of free objects, each a 32-bit store of its own half,
   * so a ring's retag of a neighbour half is never undone: assembly/heap.ts,
   * "Tag words"), then one CAS per 32-bit bitmap half setting exactly the
   * bits whose tags were written (a failed CAS re-reads and writes the tags
   * of what is free now). A half's CAS is the core's word CAS restricted to
   * that half: bits are set only by the owner after their tags, and every
   * other writer of the word clears bits by a CAS that retries on any
   * change. Returns how many objects went into the cache; 0 when there is
   * no active slab, this client no longer owns it, or it has no free object
   * left (the core then releases it or drops it, and finds another).
   */
  private refill(k: number): number {
    const head = this.active[k];
    if (head < 0) return 0;
    // Only from a slab this client owns in its generation (the core's
    // refill checks the same and finds another when a recovery released it).
    const st = this.slabState(head);
    if (st >= 0 || (st & OWNER_BITS) !== this.ownerBits) return 0;
    const w = this.windowOf(this.dataHalf0 + head * 1024, this.metaHalves[k]);
    if (w < 0) return 0;
    const halves = this.win(w);
    const slabHalf = this.dataHalf0 + head * 1024 - w * this.winHalves;
    const words = this.words[k];
    const count = this.count[k];
    const tagHalf = slabHalf + 2 * words;
    const mine = this.cachedTag;
    for (let i = this.next[k]; i < words; i++) {
      let claimedLo = 0;
      let claimedHi = 0;
      for (let h = 0; h < 2; h++) {
        const left = count - 64 * i - 32 * h;
        if (left <= 0) break;
        const valid = left >= 32 ? -1 : (1 << left) - 1;
        const at = slabHalf + 2 * i + h;
        const tag0 = tagHalf + 64 * i + 32 * h;
        let bits = halves[at];
        for (;;) {
          const free = ~bits & valid;
          if (free === 0) break;
          for (let rest = free; rest !== 0; rest &= rest - 1) halves[tag0 + 31 - Math.clz32(rest & -rest)] = mine;
          const old = Atomics.compareExchange(halves, at, bits, bits | free);
          if (old === bits) {
            if (h === 0) claimedLo = free;
            else claimedHi = free;
            break;
          }
          bits = old;
        }
      }
      const got = popcount32(claimedLo) + popcount32(claimedHi);
      if (got === 0) continue;
      // Lowest address on top, as the core pushes them (pops hand out low addresses first).
      const first = this.dataOffset + head * 4096 + this.meta[k] + 64 * i * this.size[k];
      let p = 2 * (k * this.cap + got - 1);
      for (let h = 0; h < 2; h++) {
        for (let rest = h === 0 ? claimedLo : claimedHi; rest !== 0; rest &= rest - 1) {
          this.setSlot(p, first + (32 * h + 31 - Math.clz32(rest & -rest)) * this.size[k]);
          p -= 2;
        }
      }
      this.len[k] = got;
      this.next[k] = i;
      return got;
    }
    this.next[k] = words;
    return 0;
  }

  /**
   * The core's `spill` for the full cache of class `k`: its older half goes
   * back to the bitmaps. Each object is first taken out of this client's
   * hands, its tag CASed from exactly "cached by me" to 0 (the core's
   * `uncache`; one whose tag is not that any more, after a recovery of this
   * client, is left alone), then its bit cleared (`clearBit`; a bit found
   * clear is left so, as the core leaves it). The younger half moves down.
   * False, with nothing changed, when an object's slab metadata straddles
   * two windows (the core then spills).
   */
  private spill(k: number): boolean {
    const half = this.cap >> 1;
    const base = 2 * k * this.cap;
    for (let j = 0; j < half; j++) {
      const slab = Math.floor((this.slotOffset(base + 2 * j) - this.dataOffset) * (1 / SLAB_BYTES));
      if (this.windowOf(this.dataHalf0 + slab * (SLAB_BYTES / 4), this.metaHalves[k]) < 0) return false;
    }
    for (let j = 0; j < half; j++) {
      const rel = this.slotOffset(base + 2 * j) - this.dataOffset;
      const slab = Math.floor(rel * (1 / SLAB_BYTES));
      const idx = Math.round((rel - slab * SLAB_BYTES - this.meta[k]) * this.inverse[k]);
      const w = this.windowOf(this.dataHalf0 + slab * (SLAB_BYTES / 4), this.metaHalves[k]);
      const halves = this.win(w);
      const slabHalf = this.dataHalf0 + slab * (SLAB_BYTES / 4) - w * this.winHalves;
      const want = this.cachedTag;
      if (Atomics.compareExchange(halves, slabHalf + 2 * this.words[k] + idx, want, 0) !== want) continue;
      this.clearBit(halves, slabHalf, slabHalf + (idx >> 5), 1 << (idx & 31), idx, k, this.slabState(slab * 16), slab * 16);
    }
    this.slots.copyWithin(base, base + 2 * half, base + 2 * this.cap);
    this.len[k] = this.cap - half;
    return true;
  }

  /** `free` of an object this client took: its bit checked, a full cache spilled first, its tag CASed back to "cached by me", pushed. */
  private freeOwn(off: number, halves: Int32Array, tagAt: number, bitAt: number, bit: number, t: number, k: number): boolean {
    if ((halves[bitAt] & bit) === 0) return false;
    if (this.len[k] >= this.cap && !this.spill(k)) return false;
    const n = this.len[k];
    if (Atomics.compareExchange(halves, tagAt, t, this.cachedTag) !== t) return false;
    this.setSlot(2 * (k * this.cap + n), off);
    this.len[k] = n + 1;
    this.frees++;
    return true;
  }

  /**
   * Frees the object at byte offset `off` when it is a live slab object the
   * protocol above covers. Returns false when the core must free it: it
   * also reports every error. Nothing of this object was changed then (a
   * full cache may have been spilled first, which is complete in itself).
   */
  free(off: number): boolean {
    const rel = off - this.dataOffset;
    if (!(rel >= 0 && rel < this.dataBytes)) return false;
    const slab = Math.floor(rel * (1 / SLAB_BYTES));
    const log = this.logHalf0 + 32 * slab;
    const lw = this.windowOf(log, 2);
    const logs = this.win(lw);
    const lo = log - lw * this.winHalves;
    const st = logs[lo + 1];
    if (st >= 0 || logs[lo] !== this.slabLow) return false;
    const k = (st >>> 27) & 15;
    if (k >= this.classes) return false;
    const d = rel - slab * SLAB_BYTES - this.meta[k];
    const idx = Math.round(d * this.inverse[k]);
    if (d < 0 || idx * this.size[k] !== d || idx >= this.count[k]) return false;
    const w = this.windowOf(this.dataHalf0 + slab * (SLAB_BYTES / 4), this.metaHalves[k]);
    if (w < 0) return false;
    const halves = this.win(w);
    const slabHalf = this.dataHalf0 + slab * (SLAB_BYTES / 4) - w * this.winHalves;
    const tagAt = slabHalf + 2 * this.words[k] + idx;
    const t = halves[tagAt];
    const requested = t >>> 16;
    if (requested === 0 || requested === RETIRED) return false;
    const bitAt = slabHalf + (idx >> 5);
    const bit = 1 << (idx & 31);
    if ((t & 0xffff) === this.taker) {
      // This client took it: back into its cache, from whichever slab.
      if (this.len.length === 0) this.remap();
      return this.freeOwn(off, halves, tagAt, bitAt, bit, t, k);
    }
    if (!this.clearBit(halves, slabHalf, bitAt, bit, idx, k, st, slab * 16)) return false;
    this.frees++;
    return true;
  }
}

/** Free objects in bitmap word `i` (of `count` objects) of the slab whose bitmap starts at half `slabHalf` of `halves`. */
function freeInWord(halves: Int32Array, slabHalf: number, i: number, count: number): number {
  const left = count - 64 * i;
  const lo = ~halves[slabHalf + 2 * i];
  const hi = ~halves[slabHalf + 2 * i + 1];
  return popcount32(left >= 32 ? lo : lo & ((1 << left) - 1))
    + (left >= 64 ? popcount32(hi) : left > 32 ? popcount32(hi & ((1 << (left - 32)) - 1)) : 0);
}

/** Set bits of a 32-bit integer. */
function popcount32(v: number): number {
  v -= (v >>> 1) & 0x55555555;
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24);
}
