/**
 * Slabs: the object heap's blocks (issue 5; the slab idea is Bonwick's,
 * USENIX '94; per-client caches with a one-CAS refill follow FineMem's
 * one-sided design, OSDI '25 section 4). A slab is one class-4 block
 * (64 KiB, 16 chunks) HELD by the pool owner OWNER_HEAP, carved into N
 * objects of one object class. All of its metadata lives in the pool, so any
 * client can free an object another allocated, and recovery needs nobody's
 * help.
 *
 * Slab state, the upper 32 bits of the owner-log entry of the slab's first
 * chunk (assembly/ownerlog.ts; the low 32 bits say HELD, OWNER_HEAP, class 4):
 *
 *     31 30       27 26  25            14 13              0
 *    +--+-----------+---+----------------+-----------------+
 *    |S | ocls:4    | F | owner:12       | ownerGen:14     |
 *    +--+-----------+---+----------------+-----------------+
 *     S      always 1: this block is a slab
 *     ocls   object class (0..10: OBJECT_SIZES)
 *     F      full hint: released with no free object; a free clears it
 *            once its bitmap word has refillMin(ocls) free objects
 *     owner  the client allocating from this slab (0 = none); only the
 *            owner claims objects and only the owner writes tags
 *
 * Slab memory:
 *
 *    +0         bitmap, W = ceil(N / 64) u64 words: bit i = object i is
 *               taken (handed out, or claimed into its owner's cache)
 *    +8W        tags, N u32: who took object i
 *
 *                31                 16 15  12 11          0
 *               +---------------------+------+-------------+
 *               | requested bytes:16  | gen:4| client:12   |
 *               +---------------------+------+-------------+
 *               requested 0 = claimed into the client's cache, not handed out
 *               requested RETIRED (0xFFFF) = handed out, then queued for a
 *               delayed free: the delayed-free ring owns it now
 *               (assembly/epoch.ts), so neither its taker's recovery or
 *               close nor any public free touches it; only the ring's pop
 *               frees it
 *
 *    +META      N objects of OBJECT_SIZES[ocls] bytes (META = bitmap + tags,
 *               rounded up to 64 B); objects never start at the slab's
 *               first byte, so a heap free can tell them from chunk blocks
 *
 * Concurrency. Bits are set only by the owner, in one CAS per bitmap word
 * that claims every free object of the word (the refill), after writing
 * their tags; bits are cleared by any client's free, one CAS each. So a set
 * bit always has its taker's tag: the tags of free objects are written only
 * by the owner, before the CAS that takes them. Tags are u32, two to a
 * 64-bit word, and the one write by a non-owner (the ring's retag, a CAS of
 * the whole word) may hit a word whose other half the owner is writing: so
 * the owner writes tags 4 bytes at a time, only the halves it owns (free
 * objects, or its own cached or handed-out ones), never a whole word from
 * an older read of it. Ownership itself changes by
 * CAS on the owner-log entry (acquire: owner 0 -> me; release: me -> 0).
 * A taken object's tag half is written only by its taker and by the ring:
 * the taker's free into its cache (handed out by me -> cached by me) and
 * its pop (cached by me -> requested size), each a CAS of that half (heap.ts,
 * "Tag words"), in whatever slab the object is, owned by the taker or not;
 * the ring's retag (handed out -> RETIRED, a CAS). No one else writes it:
 * a slab's owner writes tags of free objects only, a free by another client
 * refuses an object whose tag is not handed out (a cached one), and
 * recovery of the taker, which happens only once the taker is fenced,
 * CASes the tags of its cached objects to 0 (so a pop it resumes from a
 * stale cache loses its CAS) before it clears their bits.
 *
 * Recovery of client x (and `close`, which is x recovering itself) frees
 * every set bit whose tag names x, cached or handed out (a cached one's tag
 * set to 0 first), and releases the slabs x owned; an empty unowned slab
 * goes back to the chunk allocator. A client takes a slab only while its
 * own lease is live, and claims only from a slab it owns in its generation
 * (heap.ts, refill and acquireSlab).
 * Like every block of the pool, an object belongs to the client that
 * allocated it: hand-offs to other clients last while that client lives.
 */
import { adoptBlock, allocClass, clientGen, clientId, chunkOffset, freeChunk } from './alloc';
import { cas64, load64, readInto, writeFrom } from './imports';
import { CHUNK_BYTES, CHUNK_SHIFT, E_CORRUPT, E_DOUBLE_FREE, dataOff, logOff } from './layout';
import { LOG_HELD, OWNER_HEAP, logClass, logClient, logEntry, logSections, logState } from './ownerlog';

/** Object sizes in bytes, by object class. */
export const OBJECT_CLASSES: u32 = 11;
// Per-class tables, padded to 16 entries and read unchecked with `k & 15`
// (a class from a torn or foreign log entry has 4 bits): the pads are a
// class with no objects (count 0, size 2^32 - 1), which every caller
// refuses, so the hot paths carry no bounds check and no abort.
const SIZES: StaticArray<u32> = [64, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
  0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF];
/** Largest object a slab holds; larger heap objects are chunk blocks. */
export const MAX_SLAB_OBJECT: u32 = 3072;
/** A slab is one block of this chunk size class (64 KiB). */
export const SLAB_CLASS: u32 = 4;
export const SLAB_CHUNKS: u32 = 16;
export const SLAB_BYTES: u32 = <u32>CHUNK_BYTES * SLAB_CHUNKS;

const counts = new StaticArray<u32>(16);
const metas = new StaticArray<u32>(16);

/** Fills the per-class object count and metadata size (called once at init). */
export function planSlabs(): void {
  for (let k: u32 = 0; k < OBJECT_CLASSES; k++) {
    const size = SIZES[k];
    let n = SLAB_BYTES / size;
    while (n > 0 && metaBytes(n) + n * size > SLAB_BYTES) n--;
    counts[k] = n;
    metas[k] = metaBytes(n);
  }
}

@inline function metaBytes(n: u32): u32 {
  return (((n + 63) >> 6) * 8 + n * 4 + 63) & ~63;
}

@inline export function objectSize(k: u32): u32 { return unchecked(SIZES[k & 15]); }
@inline export function objectCount(k: u32): u32 { return unchecked(counts[k & 15]); }
@inline export function slabMeta(k: u32): u32 { return unchecked(metas[k & 15]); }
@inline export function bitmapWords(k: u32): u32 { return (objectCount(k) + 63) >> 6; }

/** Smallest object class holding `bytes` (1..MAX_SLAB_OBJECT). */
export function objectClassOf(bytes: u32): u32 {
  let k: u32 = 0;
  while (objectSize(k) < bytes) k++;
  return k;
}

/** First chunk of the slab that byte offset `off` (in the data area) would lie in. */
@inline export function slabHeadOf(off: u64): u32 {
  return <u32>((off - dataOff) >> CHUNK_SHIFT) & ~(SLAB_CHUNKS - 1);
}

/**
 * Index of the object of class `k` starting at byte offset `off` in the slab
 * at `head`, or -1 when `off` is not an object's start.
 */
@inline export function objectIndex(head: u32, k: u32, off: u64): i32 {
  const first = chunkOffset(head) + <u64>slabMeta(k);
  const size = <u64>objectSize(k);
  if (off < first || (off - first) % size != 0) return -1;
  const idx = (off - first) / size;
  return idx < <u64>objectCount(k) ? <i32>idx : -1;
}

// ------------------------------------------------------------- slab state

const S_SLAB: u32 = 1 << 31;
const S_FULL: u32 = 1 << 26;

@inline export function slabClassOf(st: u32): u32 { return (st >> 27) & 15; }
@inline export function slabFull(st: u32): bool { return (st & S_FULL) != 0; }
@inline export function slabOwner(st: u32): u32 { return (st >> 14) & 0xFFF; }
@inline export function slabOwnerGen(st: u32): u32 { return st & 0x3FFF; }
@inline function slabState(k: u32, full: bool, owner: u32, gen: u32): u32 {
  return S_SLAB | ((k & 15) << 27) | (full ? S_FULL : 0) | ((owner & 0xFFF) << 14) | (gen & 0x3FFF);
}
/** The owner-log entry of a slab in state (k, full, owner, gen). */
@inline export function slabEntry(k: u32, full: bool, owner: u32, gen: u32): u64 {
  return logEntry(OWNER_HEAP, 0, SLAB_CLASS, LOG_HELD, slabState(k, full, owner, gen));
}

/** True when owner-log entry `e` heads a live slab. */
@inline export function isSlabEntry(e: u64): bool {
  return logState(e) == LOG_HELD && logClient(e) == OWNER_HEAP && logClass(e) == SLAB_CLASS
    && (logSections(e) & S_SLAB) != 0 && slabClassOf(logSections(e)) < OBJECT_CLASSES;
}

/** A tag: (client, gen) and the requested size (0 = in a cache). */
@inline export function tagOf(client: u32, gen: u32, requested: u32): u32 {
  return (client & 0xFFF) | ((gen & 15) << 12) | (requested << 16);
}
@inline export function tagTaker(t: u32): u32 { return t & 0xFFFF; }
@inline export function tagRequested(t: u32): u32 { return t >> 16; }
/** `requested` of an object the delayed-free ring owns (above every object size). */
export const RETIRED: u32 = 0xFFFF;
/** True when tag `t` is an object handed out to a caller and not queued for a delayed free. */
@inline export function tagHandedOut(t: u32): bool { const r = t >> 16; return r != 0 && r != RETIRED; }

// --------------------------------------------------- create, release, free

const zeros = memory.data(4096);

/**
 * Allocates a new slab of object class `k` owned by this client: a class-4
 * block as this client, its bitmap and tags zeroed, then handed to
 * OWNER_HEAP (adoptBlock: until then a crash leaves it to this client's
 * recovery). Returns the slab's first chunk or a negative status.
 */
export function newSlab(k: u32): i64 {
  const head = allocClass(SLAB_CLASS);
  if (head < 0) return head;
  const base = chunkOffset(<u32>head);
  const meta = slabMeta(k);
  for (let off: u32 = 0; off < meta; off += 4096) writeFrom(base + off, zeros, min(4096, meta - off));
  if (!adoptBlock(<u32>head, SLAB_CLASS, 0, slabEntry(k, false, clientId, clientGen))) return E_CORRUPT;
  return head;
}

/**
 * Gives up ownership of the slab at `head` (this client's, entry `e`). An
 * empty slab goes back to the chunk allocator; one with no free object is
 * marked full. Returns true when the slab was freed.
 */
export function releaseSlab(head: u32, e: u64): bool {
  const k = slabClassOf(logSections(e));
  const words = bitmapWords(k);
  const base = chunkOffset(head);
  let any: u64 = 0;
  let full = true;
  const n = objectCount(k);
  for (let i: u32 = 0; i < words; i++) {
    const w = load64(base + (<u64>i << 3));
    any |= w;
    if (w != validMask(n, i)) full = false;
  }
  if (any == 0) return freeChunk(head, true) == 0;
  let cur = e;
  while (true) {
    const old = cas64(logOff(head), cur, slabEntry(k, full, 0, 0));
    if (old == cur || !isSlabEntry(old) || slabOwner(logSections(old)) != clientId) return false;
    cur = old;
  }
}

/** Free objects one bitmap word of a full-hinted slab of class `k` needs before a free clears the hint: 8, or an eighth of a small slab's objects (at least 1). */
@inline function refillMin(k: u32): u32 {
  return max<u32>(1, min<u32>(8, objectCount(k) >> 3));
}

/** Bits of bitmap word `i` that are objects (the last word may be partial). */
@inline export function validMask(n: u32, i: u32): u64 {
  const left = n - (i << 6);
  return left >= 64 ? 0xFFFFFFFFFFFFFFFF : ((<u64>1 << left) - 1);
}

/**
 * Frees object `idx` of the slab at `head` (entry `e`, or 0 when the caller
 * owns the slab): one CAS clearing its bit, and if the slab was marked
 * full, a CAS clearing the hint. With `handedOut` the object's tag must say
 * it was handed out: an object still in some client's cache (requested 0)
 * was never allocated, and freeing it would let that cache hand out a free
 * object. Returns OK or E_DOUBLE_FREE.
 */
export function freeObject(head: u32, e: u64, idx: u32, handedOut: bool): i32 {
  const base = chunkOffset(head);
  if (handedOut) {
    // In a cache (never handed out), or queued for a delayed free (the ring
    // owns it): either way not the caller's to free.
    const k = slabClassOf(logSections(e != 0 ? e : load64(logOff(head))));
    if (!tagHandedOut(loadTag(base, k, idx))) return E_DOUBLE_FREE;
  }
  const off = base + (<u64>(idx >> 6) << 3);
  const bit = <u64>1 << (idx & 63);
  let w = load64(off);
  while (true) {
    if ((w & bit) == 0) return E_DOUBLE_FREE;
    const old = cas64(off, w, w & ~bit);
    if (old == w) break;
    w = old;
  }
  // The full hint is cleared only once this bitmap word has REFILL_MIN(k)
  // free objects (issue 10): a slab made a candidate again by a single free
  // would be acquired for one object and released at once, a log search
  // per allocation. Until then its few free objects wait (at most
  // REFILL_MIN - 1 per word); a slab whose objects all come free is always
  // a candidate again, so nothing is stranded for good.
  if (e != 0 && slabFull(logSections(e))) {
    const k = slabClassOf(logSections(e));
    const freeHere = <u32>popcnt(~(w & ~bit) & validMask(objectCount(k), idx >> 6));
    if (freeHere < refillMin(k)) return 0;
  }
  clearFull(head, e);
  return 0;
}

/**
 * Clears the full hint of the slab at `head`, whose entry was `e`, by CAS
 * from the exact word (retrying with the word a failed CAS returns), for as
 * long as the entry is a slab marked full. A free that made the slab a
 * candidate again calls it (freeObject; the host's fast path through
 * `heapClearFull`, src/heapcache.ts).
 */
export function clearFull(head: u32, e: u64): void {
  let cur = e;
  while (isSlabEntry(cur) && slabFull(logSections(cur))) {
    const st = logSections(cur) & ~S_FULL;
    const old = cas64(logOff(head), cur, logEntry(OWNER_HEAP, 0, SLAB_CLASS, LOG_HELD, st));
    if (old == cur) break;
    cur = old;
  }
}

/** Free objects one bitmap word of a full-hinted slab of object class `k` needs before a free clears the hint (the host's fast path asks). */
export function refillMinOf(k: u32): u32 { return refillMin(k); }

/** Byte offset of the aligned word holding object `idx`'s tag (tags are u32, two per word). */
@inline export function tagWordOff(base: u64, k: u32, idx: u32): u64 {
  return base + (<u64>bitmapWords(k) << 3) + (<u64>(idx & ~1) << 2);
}

/** Object `idx`'s tag, read with one load of its word. */
@inline export function loadTag(base: u64, k: u32, idx: u32): u32 {
  return <u32>(load64(tagWordOff(base, k, idx)) >> ((idx & 1) ? 32 : 0));
}

// ---------------------------------------------------------------- recovery

const bits = memory.data(8 * 16);
const tags = memory.data(4 * 1024);

/**
 * Frees every taken object of the slab at `head` (entry `e`) whose tag
 * names (x, gen), except those queued for a delayed free (the ring owns
 * them), releases the slab if x owned it, and frees it when it is then
 * empty and unowned. Returns how many objects were freed. The caller holds
 * the ring's lock (assembly/recover.ts), so no object is retired between
 * the tag read here and the bitmap CAS.
 */
export function reclaimSlab(head: u32, e: u64, x: u32, gen: u32): u32 {
  const st = logSections(e);
  const k = slabClassOf(st);
  const n = objectCount(k);
  const words = bitmapWords(k);
  const base = chunkOffset(head);
  readInto(base, bits, words << 3);
  readInto(base + (<u64>words << 3), tags, n << 2);
  const who = tagTaker(tagOf(x, gen, 0));
  let freed: u32 = 0;
  for (let i: u32 = 0; i < words; i++) {
    const w = load<u64>(bits + (i << 3));
    if (w == 0) continue;
    let mask: u64 = 0;
    let rest = w;
    while (rest != 0) {
      const b = <u32>ctz(rest);
      rest &= rest - 1;
      const t = load<u32>(tags + (((i << 6) + b) << 2));
      if (tagTaker(t) != who || tagRequested(t) == RETIRED) continue;
      mask |= <u64>1 << b;
      // An object in x's cache gets the tag 0 (nobody's) before its bit is
      // cleared: x's pop CASes its tag from exactly "cached by x" (heap.ts,
      // heapAllocObject; src/heapcache.ts), so a pop x resumes from a stale
      // cache loses, whether or not another client has claimed the object
      // since. A failed CAS means x popped it meanwhile (only x writes that
      // half while the bit is set): handed out by x, it is freed as x's.
      if (tagRequested(t) == 0) clearTag(base, k, (i << 6) + b, t);
    }
    if (mask == 0) continue;
    const off = base + (<u64>i << 3);
    let cur = w;
    while (true) {
      const old = cas64(off, cur, cur & ~(mask & cur));
      if (old == cur) { freed += <u32>popcnt(mask & cur); break; }
      cur = old;
    }
  }
  // Release x's ownership, then give an empty unowned slab back.
  let cur = load64(logOff(head));
  while (isSlabEntry(cur) && slabOwner(logSections(cur)) == x && slabOwnerGen(logSections(cur)) == (gen & 0x3FFF)) {
    const old = cas64(logOff(head), cur, slabEntry(k, false, 0, 0));
    if (old == cur) { cur = slabEntry(k, false, 0, 0); break; }
    cur = old;
  }
  trimSlab(head, cur);
  return freed;
}

/** Sets object `idx`'s tag half from exactly `t` to 0 by a CAS of its word (the other half kept, retried); false when the half is not `t`. */
function clearTag(base: u64, k: u32, idx: u32, t: u32): bool {
  const off = tagWordOff(base, k, idx);
  const shift: u64 = (idx & 1) ? 32 : 0;
  let w = load64(off);
  while (<u32>(w >> shift) == t) {
    const old = cas64(off, w, w & ~(<u64>0xFFFFFFFF << shift));
    if (old == w) return true;
    w = old;
  }
  return false;
}

/**
 * Frees the slab at `head` (entry `e`) if it is unowned and empty: takes
 * ownership first (CAS), so nobody claims from it meanwhile, then checks the
 * bitmap; gives ownership back if it is not empty. Returns true when freed.
 */
export function trimSlab(head: u32, e: u64): bool {
  if (!isSlabEntry(e) || slabOwner(logSections(e)) != 0) return false;
  const k = slabClassOf(logSections(e));
  const mine = slabEntry(k, slabFull(logSections(e)), clientId, clientGen);
  if (cas64(logOff(head), e, mine) != e) return false;
  return releaseSlab(head, mine);
}
