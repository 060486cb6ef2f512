/**
 * The object heap (issue 5; HPE NVMM's Heap, on every transport): objects
 * from 1 byte up. Up to MAX_SLAB_OBJECT bytes they come from slabs
 * (assembly/slab.ts), above that they are chunk blocks of this client.
 *
 * Per-client cache: for each object class this client owns at most one
 * slab (its active slab, where refills claim objects, a bitmap word's free
 * objects with one CAS) and keeps up to 64 objects it took, in core memory.
 * The common alloc pops the cache and CASes the object's tag half from
 * "cached" to its requested size. A free of an object this client took
 * CASes its tag half back to "cached" and pushes it, whichever slab it is
 * in (issue 10: a pattern that frees and allocates its own objects never
 * goes back to the bitmaps); any other free is one CAS on the object's
 * bitmap word, from any client. A host that maps the pool runs both
 * common cases without calling the core (src/heapcache.ts).
 *
 * Finding a slab to own: a per-class cursor walks the owner log of CHUNK
 * sections (one bulk read per section) for an unowned, not-full slab of the
 * class, at most SEARCH_SECTIONS sections per search; if none is found a
 * new slab is allocated. Slabs left partly free by a client that released
 * them are found again by later searches.
 */
import { chunkOffset, clientGen, clientId, freeChunk } from './alloc';
import { slotIsLive } from './client';
import { CP_HEAP_FREE, CP_HEAP_POP, crashPoint } from './crash';
import { cas64, countDirect, directBase, directBytes, directLimit, load64, readInto, store64, writeFrom } from './imports';
import { CHUNK_SHIFT, E_DOUBLE_FREE, E_EXHAUSTED, E_INVALID_ADDRESS, E_LEASE_EXPIRED, E_NOT_ATTACHED, SECTION_CHUNKS, dataOff, logOff, nSections, sectionHdr } from './layout';
import { logSections } from './ownerlog';
import { MODE_CHUNK, sectionMode } from './section';
import {
  MAX_SLAB_OBJECT, OBJECT_CLASSES, RETIRED, SLAB_CHUNKS, bitmapWords, clearFull, freeObject, refillMinOf, slabOwnerGen, isSlabEntry, newSlab, objectCount, objectSize, releaseSlab,
  loadTag, objectIndex, slabClassOf, slabEntry, slabFull, slabHeadOf, slabMeta, slabOwner, tagHandedOut, tagOf, tagRequested, tagTaker, trimSlab, validMask,
} from './slab';

/** Objects a cache holds per class (one bitmap word's worth). */
const CACHE_CAP: u32 = 64;
/** Sections a slab search reads before it allocates a new slab. */
const SEARCH_SECTIONS: u32 = 64;

const cache = memory.data(8 * 64 * 11);
const cacheLen = memory.data(4 * 11);
/** Active slab per class: its first chunk, or -1. */
const active = memory.data(4 * 11);
/** Next bitmap word to try in the active slab, per class. */
const nextWord = memory.data(4 * 11);
/** Where the next slab search starts, per class (a section index). */
const searchFrom = memory.data(4 * 11);
const logs = memory.data(8 * 512);
const tagBuf = memory.data(4 * 64);

/*
 * Tag words, written by CAS (issue 10). A tag is one u32 half of a 64-bit
 * word; the other half is a neighbour's tag, which the delayed-free ring may
 * retag at any moment by a CAS of the whole word (assembly/epoch.ts). So the
 * owner may never store a whole word built from an older read, but it may
 * CAS it: the CAS succeeds only if the neighbour half is still what it
 * expected, and otherwise returns the true word, whose neighbour half the
 * retry keeps. Each such CAS changes only this client's own half, exactly
 * as the 4-byte writes it replaces did, and costs one word operation
 * instead of a bulk `write` (three times a word operation: docs/performance.md).
 *
 * The expected word is a guess from `shadow`: for each class, the tag words
 * of the active slab as this client last read or wrote them, with one valid
 * bit per word. The shadow is never trusted: a stale guess costs one failed
 * CAS, which returns the true word. It is tied to one slab (`shadowHead`)
 * and forgotten when the active slab changes.
 */
/** Tag words per slab that the shadow covers (ceil(1024 objects / 2)). */
const SHADOW_WORDS: u32 = 512;
const shadow = memory.data(8 * SHADOW_WORDS * 11);
const shadowValid = memory.data(8 * (SHADOW_WORDS / 64) * 11);
const shadowHead = memory.data(4 * 11);

@inline function activeOf(k: u32): i32 { return load<i32>(active + (k << 2)); }
@inline function setActive(k: u32, head: i32): void {
  store<i32>(active + (k << 2), head);
  store<u32>(nextWord + (k << 2), 0);
  store<u32>(shadowHead + (k << 2), 0);
}

/** Ties class `k`'s shadow to the slab at `head`, forgetting it if it was another slab's. */
@inline function shadowFor(k: u32, head: u32): void {
  if (load<u32>(shadowHead + (k << 2)) == head + 1) return;
  store<u32>(shadowHead + (k << 2), head + 1);
  memory.fill(shadowValid + k * (SHADOW_WORDS / 8), 0, SHADOW_WORDS / 8);
}

@inline function shadowValidAt(k: u32, wi: u32): usize { return shadowValid + k * (SHADOW_WORDS / 8) + ((wi >> 6) << 3); }
@inline function shadowAt(k: u32, wi: u32): usize { return shadow + ((k * SHADOW_WORDS + wi) << 3); }
@inline function shadowSet(k: u32, wi: u32, w: u64): void {
  store<u64>(shadowAt(k, wi), w);
  const v = shadowValidAt(k, wi);
  store<u64>(v, load<u64>(v) | (<u64>1 << (wi & 63)));
}

@inline function shadowForget(k: u32, wi: u32): void {
  const v = shadowValidAt(k, wi);
  store<u64>(v, load<u64>(v) & ~(<u64>1 << (wi & 63)));
}

/** tagCas results: written, refused (not handed out), refused (handed out by another client), refused (not cached by this client). */
const TAG_WRITTEN: i32 = 0;
const TAG_NOT_HANDED_OUT: i32 = 1;
const TAG_NOT_MINE: i32 = 2;
const TAG_NOT_CACHED: i32 = 3;

/** tagCas conditions on the half it replaces: none, handed out by this client, cached by this client. */
const IF_ANY: u32 = 0;
const IF_HANDED_OUT_BY_ME: u32 = 1;
const IF_CACHED_BY_ME: u32 = 2;

/**
 * Sets object `idx`'s tag (class `k`, slab at `head` = byte `base`) to
 * `tag`, with a CAS of its 64-bit tag word that changes only that half (see
 * above). Under a condition (IF_HANDED_OUT_BY_ME: the half holds a tag
 * handed out by this client; IF_CACHED_BY_ME: exactly this client's cached
 * tag), only if the half meets it: the check and the write are then one
 * atomic step, so a retag by the ring, or a claim by another client after a
 * recovery of this one, in between fails the CAS and is seen. A guess that
 * fails a check is re-read before refusing.
 */
function tagCas(k: u32, head: u32, base: u64, idx: u32, tag: u32, condition: u32): i32 {
  // The shadow covers the active slab only; an object of another slab
  // (one this client took and freed into its cache) starts from a load.
  const shadowed = activeOf(k) == <i32>head;
  if (shadowed) shadowFor(k, head);
  const wi = idx >> 1;
  const off = base + (<u64>bitmapWords(k) << 3) + (<u64>wi << 3);
  const shift: u64 = (idx & 1) ? 32 : 0;
  let fresh = !shadowed || (load<u64>(shadowValidAt(k, wi)) & (<u64>1 << (wi & 63))) == 0;
  let w = fresh ? load64(off) : load<u64>(shadowAt(k, wi));
  const cached = tagOf(clientId, clientGen, 0);
  const me = tagTaker(cached);
  while (true) {
    if (condition != IF_ANY) {
      const t = <u32>(w >> shift);
      const refusal = condition == IF_CACHED_BY_ME ? (t != cached ? TAG_NOT_CACHED : TAG_WRITTEN)
        : !tagHandedOut(t) ? TAG_NOT_HANDED_OUT : tagTaker(t) != me ? TAG_NOT_MINE : TAG_WRITTEN;
      if (refusal != TAG_WRITTEN) {
        if (fresh) { if (shadowed) shadowSet(k, wi, w); return refusal; }
        w = load64(off);
        fresh = true;
        continue;
      }
    }
    const nw = (w & ~(<u64>0xFFFFFFFF << shift)) | (<u64>tag << shift);
    const old = cas64(off, w, nw);
    if (old == w) { if (shadowed) shadowSet(k, wi, nw); return TAG_WRITTEN; }
    w = old;
    fresh = true;
  }
}

/**
 * Where a host's fast path (src/heapcache.ts) finds this client's object
 * caches, by `field`: 0 the cache slots (u64 byte offsets, CACHE_CAP per
 * class), 1 their lengths (u32 per class), 2 the active slab per class
 * (i32 first chunk, -1 none), 3 CACHE_CAP, 4 this client's tag of a cached
 * object (requested 0), 5 the lower half of every slab's owner-log entry,
 * 6 the next bitmap word a refill tries in the active slab (u32 per class),
 * 7 the owner bits (OWNER_BITS of the entry's upper half) of a slab this
 * client owns,
 * 16 + k the metadata bytes of a slab of object class k (objects start
 * there), 32 + k the free objects a bitmap word of a full-hinted slab of
 * class k needs before a free clears the hint. 0 for any other field.
 */
export function heapCacheLayout(field: u32): u32 {
  if (field >= 32) return field - 32 < OBJECT_CLASSES ? refillMinOf(field - 32) : 0;
  if (field >= 16) return field - 16 < OBJECT_CLASSES ? slabMeta(field - 16) : 0;
  switch (field) {
    case 0: return <u32>cache;
    case 1: return <u32>cacheLen;
    case 2: return <u32>active;
    case 3: return CACHE_CAP;
    case 4: return tagOf(clientId, clientGen, 0);
    case 5: return <u32>slabEntry(0, false, 0, 0);
    case 6: return <u32>nextWord;
    case 7: return <u32>(slabEntry(0, false, clientId, clientGen) >> 32) & OWNER_BITS;
    default: return 0;
  }
}

/**
 * Clears the full hint of the slab at first chunk `head` (from its entry as
 * read now), for a host's fast path whose free made it a candidate again
 * (src/heapcache.ts). A hint only: a slab freed or re-made meanwhile is
 * left as the CAS finds it.
 */
export function heapClearFull(head: u32): void {
  clearFull(head, load64(logOff(head)));
}

/** The owner and owner-generation bits of a slab entry's upper half (assembly/slab.ts). */
const OWNER_BITS: u32 = 0x3FFFFFF;

/** Forgets every cache and active slab (after recovery or close freed them, or at register). */
export function resetHeap(): void {
  memory.fill(cacheLen, 0, 4 * 11);
  for (let k: u32 = 0; k < OBJECT_CLASSES; k++) {
    setActive(k, -1);
    store<u32>(searchFrom + (k << 2), nSections > 0 ? (clientId * 7 + k) % nSections : 0);
  }
}

/**
 * Allocates an object of object class `k` for `requested` bytes. Returns its
 * byte offset, or a negative status.
 */
export function heapAllocObject(k: u32, requested: u32): f64 {
  // The core path's pop, paused (see heapAllocDirect).
  crashPoint(CP_HEAP_POP);
  return popObject(k, requested);
}

/** heapAllocObject past its crash point (heapAllocDirect goes on here after its own). */
function popObject(k: u32, requested: u32): f64 {
  while (true) {
    let len = load<u32>(cacheLen + (k << 2));
    if (len == 0) {
      const r = refill(k);
      if (r < 0) return <f64>r;
      len = <u32>r;
    }
    len--;
    store<u32>(cacheLen + (k << 2), len);
    const off = load<u64>(cache + ((k * CACHE_CAP + len) << 3));
    // The tag is at a fixed place in the object's slab: recompute it. A
    // cached object is this client's (taken, tag "cached"): the tag CAS
    // changes only its half, and only from that exact tag. Any other tag
    // means the object is no longer this client's (only a recovery of this
    // client frees it, and then another client may have claimed it): the
    // entry is dropped, as a block cache's pop drops a block whose CAS it
    // lost (assembly/cache.ts), so no pop hands out what it did not win.
    const head = slabHeadOf(off);
    const idx = <u32>objectIndex(head, k, off);
    if (tagCas(k, head, chunkOffset(head), idx, tagOf(clientId, clientGen, requested), IF_CACHED_BY_ME) == TAG_WRITTEN) return <f64>off;
  }
}

// ------------------------------------------------ direct window (issue 10)
//
// Where the host mapped the pool into this instance's memory (imports.ts,
// "Direct window"), the common alloc and free of a cached object are one
// Wasm call each, with one 32-bit atomic CAS on the tag half and plain
// loads: the same steps as heapAllocObject's pop and freeOwn, on the same
// words, without the import calls. Its reads are plain loads (one mov each,
// as an atomic load is on the hosts we run on, without Wasm's alignment
// check): every decision they feed is checked again by the CAS that acts on
// the word read, or is the same unchecked read the general path makes with
// load64. A 32-bit CAS of the half is the 64-bit
// CAS of its word that keeps the other half (tagCas), restricted to the
// half: a change of the neighbour half in between cannot make it fail, and
// it never undoes one. The shadow of the active slab's tag words (tagCas)
// is not updated: it is a guess that tagCas checks with its own CAS and
// re-reads when it fails. Anything else (an empty cache, an object outside
// the window, a failed check or CAS) goes to the general path, with
// nothing changed here first, which decides and reports the error.

/** Allocations and frees heapAllocDirect and heapFreeDirect completed themselves (the general path counts as neither). */
let directAllocs: u64 = 0;
let directFrees: u64 = 0;

/** `which` 0: directAllocs, 1: directFrees. */
export function heapDirectOps(which: u32): f64 {
  return <f64>(which == 0 ? directAllocs : directFrees);
}

/** Object index by class and 64-byte granule of a slab (i16, 1024 granules per class): -1 where no object of the class starts. */
const granuleIndex = memory.data(2 * 1024 * 11);
/** Object class by a request's 64-byte granule count (u8, 1 .. MAX_SLAB_OBJECT / 64). */
const granuleClass = memory.data(64);

/** Fills granuleIndex and granuleClass (object sizes and metadata bytes are multiples of 64); at init, after planSlabs. */
export function planGranules(): void {
  memory.fill(granuleIndex, 0xFF, 2 * 1024 * 11);
  for (let k: u32 = 0; k < OBJECT_CLASSES; k++) {
    for (let i: u32 = 0; i < objectCount(k); i++) {
      store<i16>(granuleIndex + (((k << 10) | ((slabMeta(k) + i * objectSize(k)) >> 6)) << 1), <i16>i);
    }
  }
  let k: u32 = 0;
  for (let g: u32 = 1; g <= MAX_SLAB_OBJECT >> 6; g++) {
    while (objectSize(k) < g << 6) k++;
    store<u8>(granuleClass + g, <u8>k);
  }
}

/**
 * heap.alloc of `bytes` (an integer 1 .. MAX_SLAB_OBJECT; the host checks)
 * on its common path where the pool is mapped into this instance: the top
 * of the class's cache, its tag half CASed from exactly "cached by me" to
 * (me, bytes) in the mapping. Everything else is heapAllocObject's.
 * Returns the object's byte offset or a negative status (E_NOT_ATTACHED,
 * and heapAllocObject's).
 */
export function heapAllocDirect(bytes: u32): f64 {
  if (clientId == 0) return <f64>E_NOT_ATTACHED;
  const k = <u32>load<u8>(granuleClass + ((bytes + 63) >> 6));
  let len = load<u32>(cacheLen + (k << 2));
  if (len == 0) return heapAllocObject(k, bytes);
  // A client paused here with a cache, recovered meanwhile, must win no CAS
  // below (test/heapcache.test.ts freezes one here).
  crashPoint(CP_HEAP_POP);
  const cached = tagOf(clientId, clientGen, 0);
  while (len != 0) {
    const off = load<u64>(cache + ((k * CACHE_CAP + len - 1) << 3));
    if (off >= directBytes) break;
    const rel = <u32>(off - dataOff);
    const idx = <i32>load<i16>(granuleIndex + (((k << 10) | ((rel & 0xFFFF) >> 6)) << 1));
    if (idx < 0) break;
    const at = directBase + <usize>(dataOff + <u64>(rel & ~0xFFFF)) + (bitmapWords(k) << 3) + (<usize>idx << 2);
    countDirect(1, 1);
    len--;
    store<u32>(cacheLen + (k << 2), len);
    if (atomic.cmpxchg<u32>(at, cached, tagOf(clientId, clientGen, bytes)) == cached) {
      directAllocs++;
      return <f64>off;
    }
    // Lost: no longer this client's (see heapAllocObject); the entry is dropped.
  }
  return popObject(k, bytes);
}

/**
 * heap.free of byte offset `offset` on its common path where the pool is
 * mapped into this instance: an object of a slab, handed out by this
 * client, its bit set: its tag half CASed from the tag read back to
 * "cached by me", then pushed, a full cache spilled first (freeOwn's steps).
 * Everything else is heapFreeAt's. `offset` may be any f64 (not an
 * integer below 2^53: E_INVALID_ADDRESS). Returns OK or a negative status
 * (E_NOT_ATTACHED, E_INVALID_ADDRESS, and heapFreeAt's).
 */
export function heapFreeDirect(offset: f64): i32 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (freeToCacheDirect(offset)) return 0;
  if (!(offset >= 0 && offset < 9007199254740992) || offset != Math.floor(offset)) return E_INVALID_ADDRESS;
  return heapFreeAt(<u64>offset);
}

/**
 * heapFreeDirect's common case: true when `offset` (any f64: the host
 * passes gaddr - base unchecked; inside the window it is below 2^32) was
 * an object of a slab in the window, handed out by this client, its bit
 * set, and is now back in this client's cache. False, with nothing changed
 * but a full cache spilled (complete in itself, as in freeOwn), otherwise.
 */
function freeToCacheDirect(offset: f64): bool {
  if (!(offset >= <f64>dataOff && offset < directLimit)) return false;
  const o = <u64>offset;
  if (<f64>o != offset || ((o - dataOff) & 63) != 0) return false;
  const head = slabHeadOf(o);
  const e = load<u64>(directBase + <usize>logOff(head));
  countDirect(1, 0);
  if (!isSlabEntry(e)) return false;
  const k = slabClassOf(logSections(e));
  const idx = <i32>load<i16>(granuleIndex + (((k << 10) | ((<u32>(o - dataOff) & 0xFFFF) >> 6)) << 1));
  if (idx < 0) return false;
  const base = directBase + <usize>chunkOffset(head);
  const tagAt = base + (bitmapWords(k) << 3) + (<usize>idx << 2);
  const t = load<u32>(tagAt);
  const cached = tagOf(clientId, clientGen, 0);
  countDirect(2, 0);
  if (!tagHandedOut(t) || tagTaker(t) != tagTaker(cached)) return false;
  if ((load<u32>(base + (<usize>(idx >> 5) << 2)) & (<u32>1 << (<u32>idx & 31))) == 0) return false;
  // Paused here and recovered meanwhile, the CAS below finds the tag
  // changed once another client claimed the object (its refill writes its
  // own tag) and goes to heapFreeAt, which refuses.
  crashPoint(CP_HEAP_FREE);
  let len = load<u32>(cacheLen + (k << 2));
  if (len == CACHE_CAP) len = spill(k);
  countDirect(1, 1);
  if (atomic.cmpxchg<u32>(tagAt, t, cached) != t) return false;
  store<u64>(cache + ((k * CACHE_CAP + len) << 3), o);
  store<u32>(cacheLen + (k << 2), len + 1);
  directFrees++;
  return true;
}

/**
 * Fills class `k`'s empty cache from the active slab, moving to another
 * slab when it has no free object. Returns the new cache length or a
 * negative status.
 */
function refill(k: u32): i32 {
  for (let attempt: u32 = 0; attempt < 1000000; attempt++) {
    let head = activeOf(k);
    // Only a slab this client owns in its generation is claimed from: a
    // recovery of this client (possible only once it is fenced) released
    // it, and a client that resumes must not claim in another's slab.
    if (head >= 0 && !ownedByMe(load64(logOff(<u32>head)))) {
      setActive(k, -1);
      head = -1;
    }
    if (head < 0) {
      const h = acquireSlab(k);
      if (h < 0) return <i32>h;
      setActive(k, <i32>h);
      head = <i32>h;
    }
    const got = claimFrom(<u32>head, k);
    if (got > 0) return <i32>got;
    releaseSlab(<u32>head, load64(logOff(<u32>head)));
    setActive(k, -1);
  }
  return E_EXHAUSTED;
}

/** True when owner-log entry `e` is a slab this client owns in its generation. */
@inline function ownedByMe(e: u64): bool {
  return isSlabEntry(e) && slabOwner(logSections(e)) == clientId && slabOwnerGen(logSections(e)) == (clientGen & 0x3FFF);
}

/**
 * Claims every free object of the first bitmap word that has one, from the
 * active slab `head` of class `k`: tags first (read, patch the free ones,
 * write back: only the owner writes tags), then one CAS setting the bits.
 * Returns how many objects went into the cache (0: the slab is exhausted).
 */
function claimFrom(head: u32, k: u32): u32 {
  const base = chunkOffset(head);
  const n = objectCount(k);
  const words = bitmapWords(k);
  const tagBase = base + (<u64>words << 3);
  const size = <u64>objectSize(k);
  const first = base + <u64>slabMeta(k);
  const mine = tagOf(clientId, clientGen, 0);
  let i = load<u32>(nextWord + (k << 2));
  for (; i < words; i++) {
    const off = base + (<u64>i << 3);
    const valid = validMask(n, i);
    let w = load64(off);
    while ((~w & valid) != 0) {
      const free = ~w & valid;
      const count = min<u32>(64, n - (i << 6));
      const tagOff = tagBase + (<u64>(i << 6) << 2);
      // Only the free objects' tags are written, one run of consecutive
      // free objects at a time: a taken neighbour's tag may be retagged by
      // the ring meanwhile, and a whole-range write would undo that. A run
      // of one is a tag CAS (a word operation, changing only its half);
      // longer runs are one 4-byte-granular bulk write each, after which
      // the shadow knows every tag word the run covers whole.
      shadowFor(k, head);
      for (let b: u32 = 0; b < count; b++) store<u32>(tagBuf + (b << 2), mine);
      let rest = free;
      while (rest != 0) {
        const b = <u32>ctz(rest);
        const len = <u32>ctz(~(rest >> b));
        const idx0 = (i << 6) + b;
        if (len == 1) {
          tagCas(k, head, base, idx0, mine, IF_ANY);
        } else {
          writeFrom(tagOff + (<u64>b << 2), tagBuf, len << 2);
          for (let j: u32 = idx0; j < idx0 + len; j++) {
            const wi = j >> 1;
            const whole = (j & 1) == 0 && j + 1 < idx0 + len;
            if (whole) { shadowSet(k, wi, (<u64>mine << 32) | <u64>mine); j++; continue; }
            shadowForget(k, wi);
          }
        }
        rest = len >= 64 - b ? 0 : rest & ~(((<u64>1 << len) - 1) << b);
      }
      const old = cas64(off, w, w | free);
      if (old != w) { w = old; continue; }
      // Pushed highest first so pops hand out low addresses first.
      const slot = cache + ((k * CACHE_CAP) << 3);
      let order = free;
      const len = <u32>popcnt(order);
      let p = len;
      while (order != 0) {
        const b = <u32>ctz(order);
        order &= order - 1;
        p--;
        store<u64>(slot + (p << 3), first + (<u64>((i << 6) + b)) * size);
      }
      store<u32>(cacheLen + (k << 2), len);
      store<u32>(nextWord + (k << 2), i);
      return len;
    }
  }
  store<u32>(nextWord + (k << 2), words);
  return 0;
}

/**
 * Finds an unowned, not-full slab of class `k` and takes it (CAS), reading
 * at most SEARCH_SECTIONS CHUNK sections from this class's cursor; else
 * allocates a new slab. Returns its first chunk or a negative status.
 */
function acquireSlab(k: u32): i64 {
  if (nSections == 0) return E_EXHAUSTED;
  // A slab is taken only while this client's lease is live: a call that
  // passed its lease check, was paused and resumes after its revocation
  // (and maybe its recovery) must not take a slab in a generation that
  // nobody will recover again.
  if (!slotIsLive(clientId, clientGen)) return E_LEASE_EXPIRED;
  let sec = load<u32>(searchFrom + (k << 2)) % nSections;
  for (let seen: u32 = 0; seen < min(SEARCH_SECTIONS, nSections); seen++) {
    if (sectionMode(load64(sectionHdr(sec))) == MODE_CHUNK) {
      readInto(logOff(sec * SECTION_CHUNKS), logs, SECTION_CHUNKS << 3);
      for (let c: u32 = 0; c < SECTION_CHUNKS; c += SLAB_CHUNKS) {
        const e = load<u64>(logs + (c << 3));
        if (!isSlabEntry(e)) continue;
        const st = logSections(e);
        if (slabClassOf(st) != k || slabOwner(st) != 0 || slabFull(st)) continue;
        const head = sec * SECTION_CHUNKS + c;
        if (cas64(logOff(head), e, slabEntry(k, false, clientId, clientGen)) == e) {
          store<u32>(searchFrom + (k << 2), sec);
          return <i64>head;
        }
      }
    }
    sec = sec + 1 == nSections ? 0 : sec + 1;
  }
  store<u32>(searchFrom + (k << 2), sec);
  return newSlab(k);
}

/**
 * Frees the object or chunk block at byte offset `off` (heap.free). An
 * offset inside a slab must be an object's start; any other must be a chunk
 * block's start. Returns OK, E_DOUBLE_FREE or E_INVALID_ADDRESS.
 */
export function heapFreeAt(off: u64): i32 {
  const end = dataOff + (<u64>nSections << 21);
  if (off < dataOff || off >= end) return E_INVALID_ADDRESS;
  const head = slabHeadOf(off);
  for (let k: u32 = 0; k < OBJECT_CLASSES; k++) {
    if (activeOf(k) == <i32>head) return freeOwn(head, k, off, 0);
  }
  const e = load64(logOff(head));
  if (isSlabEntry(e)) return freeOwn(head, slabClassOf(logSections(e)), off, e);
  if ((off - dataOff) & ((1 << CHUNK_SHIFT) - 1)) return E_INVALID_ADDRESS;
  return freeChunk(<u32>((off - dataOff) >> CHUNK_SHIFT));
}

/**
 * Frees object `off` of the slab at `head` (class `k`; entry `e`, or 0 for
 * this client's active slab). If this client took it, it goes back to the
 * cache (LIFO: the next alloc of the class reuses it) with its tag
 * rewritten to "cached" by the CAS below, whichever slab it is in; a full
 * cache spills half first. An object another client took has its bit
 * cleared with a CAS (freeObject).
 */
function freeOwn(head: u32, k: u32, off: u64, e: u64): i32 {
  const at = objectIndex(head, k, off);
  if (at < 0) return E_INVALID_ADDRESS;
  const idx = <u32>at;
  const base = chunkOffset(head);
  const w = load64(base + (<u64>(idx >> 6) << 3));
  if ((w & (<u64>1 << (idx & 63))) == 0) return E_DOUBLE_FREE;
  // Tags are u32, two to a word; this client (the owner) changes only its
  // own half, by a CAS of the word, so a retag of the other half by the
  // ring survives (tagCas). The CAS also checks that the object is still
  // handed out by this client: one in a cache or queued for a delayed free
  // is refused, one another client took has its bit cleared instead.
  crashPoint(CP_HEAP_FREE);
  const r = tagCas(k, head, base, idx, tagOf(clientId, clientGen, 0), IF_HANDED_OUT_BY_ME);
  if (r == TAG_NOT_HANDED_OUT) return E_DOUBLE_FREE;
  if (r == TAG_NOT_MINE) return freeObject(head, e, idx, false);
  let len = load<u32>(cacheLen + (k << 2));
  if (len == CACHE_CAP) len = spill(k);
  store<u64>(cache + ((k * CACHE_CAP + len) << 3), off);
  store<u32>(cacheLen + (k << 2), len + 1);
  return 0;
}

/**
 * Frees object `idx` (byte offset `off`) of the slab at `head` for the
 * delayed-free ring, which owns it (its tag RETIRED; the ring's lock is
 * held). When this client took it from its own active slab it goes back to
 * the cache, so the next alloc of its size reuses it (as `freeOwn`); else
 * its bit is cleared with a CAS. Returns OK or E_DOUBLE_FREE.
 */
export function freeRetired(head: u32, idx: u32, off: u64): i32 {
  const e = load64(logOff(head));
  if (!isSlabEntry(e)) return E_DOUBLE_FREE;
  const k = slabClassOf(logSections(e));
  const base = chunkOffset(head);
  const mine = tagTaker(loadTag(base, k, idx)) == tagTaker(tagOf(clientId, clientGen, 0));
  if (activeOf(k) != <i32>head || !mine) return freeObject(head, e, idx, false);
  let len = load<u32>(cacheLen + (k << 2));
  if (len == CACHE_CAP) len = spill(k);
  tagCas(k, head, base, idx, tagOf(clientId, clientGen, 0), IF_ANY);
  store<u64>(cache + ((k * CACHE_CAP + len) << 3), off);
  store<u32>(cacheLen + (k << 2), len + 1);
  return 0;
}

/**
 * A full cache of class `k` gives its older half back to the bitmap (one
 * CAS each) so frees keep going to the cache. Returns the new length.
 */
function spill(k: u32): u32 {
  const half = CACHE_CAP >> 1;
  const slot = cache + ((k * CACHE_CAP) << 3);
  // Each object is first taken out of this client's hands (`uncache`: its
  // tag CASed from exactly "cached by me" to 0); one whose tag is not that
  // any more is left alone. The oldest cached object's slab is most often
  // the other entries' slab too (the active one, or a slab this client's
  // frees keep returning to): gather their bits per bitmap word and clear
  // each word's with one CAS loop, instead of one load and one CAS per
  // object; objects of other slabs are freed one by one. A bit found clear
  // already is left so, as freeObject would (it answers E_DOUBLE_FREE and
  // spill ignores that).
  const head = slabHeadOf(load<u64>(slot));
  memory.fill(spillMasks, 0, 8 * 16);
  for (let j: u32 = 0; j < half; j++) {
    const off = load<u64>(slot + (j << 3));
    if (!uncache(k, off)) continue;
    const h = slabHeadOf(off);
    const idx = <u32>objectIndex(h, k, off);
    if (h != head) { freeObject(h, activeOf(k) == <i32>h ? 0 : load64(logOff(h)), idx, false); continue; }
    const p = spillMasks + ((idx >> 6) << 3);
    store<u64>(p, load<u64>(p) | (<u64>1 << (idx & 63)));
  }
  const base = chunkOffset(head);
  const words = bitmapWords(k);
  for (let i: u32 = 0; i < words; i++) {
    const m = load<u64>(spillMasks + (i << 3));
    if (m == 0) continue;
    const off = base + (<u64>i << 3);
    let w = load64(off);
    while (true) {
      const old = cas64(off, w, w & ~m);
      if (old == w) break;
      w = old;
    }
  }
  // Objects of a slab that is not the active one may be spilled into a
  // slab released as full: it is a candidate again (a hint, as freeObject's).
  if (activeOf(k) != <i32>head) clearFull(head, load64(logOff(head)));
  memory.copy(slot, slot + (half << 3), half << 3);
  return half;
}
const spillMasks = memory.data(8 * 16);

/**
 * Takes cached object `off` (class `k`) out of this client's hands before
 * its bit is cleared (spill, flush): its tag half from exactly "cached by
 * me" to 0 (nobody's), by CAS. False when the tag is not that: the object
 * is no longer this client's (a recovery of this client freed it, and
 * another client may have claimed it since), so its bit is left alone. As
 * the pop's CAS, this is what keeps a client that resumes after its
 * recovery from freeing what is now someone else's.
 */
function uncache(k: u32, off: u64): bool {
  const h = slabHeadOf(off);
  return tagCas(k, h, chunkOffset(h), <u32>objectIndex(h, k, off), 0, IF_CACHED_BY_ME) == TAG_WRITTEN;
}

/**
 * Returns this client's cached objects (clears their bits) and releases its
 * active slabs, freeing empty ones. Returns how many objects it returned.
 */
export function heapFlush(): u32 {
  let returned: u32 = 0;
  for (let k: u32 = 0; k < OBJECT_CLASSES; k++) {
    const head = activeOf(k);
    const len = load<u32>(cacheLen + (k << 2));
    for (let j: u32 = 0; j < len; j++) {
      const off = load<u64>(cache + ((k * CACHE_CAP + j) << 3));
      if (uncache(k, off) && freeObject(slabHeadOf(off), 0, <u32>objectIndex(slabHeadOf(off), k, off), false) == 0) returned++;
    }
    store<u32>(cacheLen + (k << 2), 0);
    if (head >= 0) releaseSlab(<u32>head, load64(logOff(<u32>head)));
    setActive(k, -1);
  }
  return returned;
}

/**
 * Frees every empty, unowned slab of the pool (slabs emptied by frees from
 * other clients after their owner released them). Returns how many.
 */
export function heapTrim(): u32 {
  let freed: u32 = 0;
  for (let sec: u32 = 0; sec < nSections; sec++) {
    if (sectionMode(load64(sectionHdr(sec))) != MODE_CHUNK) continue;
    readInto(logOff(sec * SECTION_CHUNKS), logs, SECTION_CHUNKS << 3);
    for (let c: u32 = 0; c < SECTION_CHUNKS; c += SLAB_CHUNKS) {
      const e = load<u64>(logs + (c << 3));
      if (isSlabEntry(e) && slabOwner(logSections(e)) == 0 && trimSlab(sec * SECTION_CHUNKS + c, e)) freed++;
    }
  }
  return freed;
}

/** Objects in this client's caches, all classes. */
export function heapCached(): u32 {
  let n: u32 = 0;
  for (let k: u32 = 0; k < OBJECT_CLASSES; k++) n += load<u32>(cacheLen + (k << 2));
  return n;
}

const scanOut = memory.data(8 * 4 * 11);

/**
 * Pool-wide heap census from slab metadata (writes nothing). Per object
 * class k, four f64 at scanOut + 32k: slabs, objects handed out, objects
 * in caches, requested bytes of the handed-out ones. Returns the pointer.
 */
export function heapScan(): usize {
  memory.fill(scanOut, 0, 8 * 4 * 11);
  for (let sec: u32 = 0; sec < nSections; sec++) {
    if (sectionMode(load64(sectionHdr(sec))) != MODE_CHUNK) continue;
    readInto(logOff(sec * SECTION_CHUNKS), logs, SECTION_CHUNKS << 3);
    for (let c: u32 = 0; c < SECTION_CHUNKS; c += SLAB_CHUNKS) {
      const e = load<u64>(logs + (c << 3));
      if (!isSlabEntry(e)) continue;
      const k = slabClassOf(logSections(e));
      const p = scanOut + (k << 5);
      store<f64>(p, load<f64>(p) + 1);
      const base = chunkOffset(sec * SECTION_CHUNKS + c);
      const words = bitmapWords(k);
      readInto(base, scanBits, words << 3);
      readInto(base + (<u64>words << 3), scanTags, objectCount(k) << 2);
      for (let i: u32 = 0; i < words; i++) {
        let w = load<u64>(scanBits + (i << 3));
        while (w != 0) {
          const b = <u32>ctz(w);
          w &= w - 1;
          const req = tagRequested(load<u32>(scanTags + (((i << 6) + b) << 2)));
          if (req == 0) store<f64>(p + 16, load<f64>(p + 16) + 1);
          else {
            // Queued for a delayed free (RETIRED): still handed out until the ring frees it.
            store<f64>(p + 8, load<f64>(p + 8) + 1);
            if (req != RETIRED) store<f64>(p + 24, load<f64>(p + 24) + <f64>req);
          }
        }
      }
    }
  }
  return scanOut;
}
const scanBits = memory.data(8 * 16);
const scanTags = memory.data(4 * 1024);
