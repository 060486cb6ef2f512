/**
 * The per-client block cache (issue 10; FineMem's per-client caching, the
 * idea of glibc's tcache): blocks of classes 0..4 that this client frees go
 * into a bounded per-class stack in core memory instead of back to the
 * pool, and `allocClass` pops from it first. A cached block stays allocated
 * in pool metadata (its bits stay set) and its owner-log head names this
 * client in its generation, in the state CACHED instead of HELD
 * (assembly/ownerlog.ts; the upper half of the word stays 0):
 *
 *    63                               32 31     18 17 16 15   12 11          0
 *   +-----------------------------------+---------+-----+-------+-------------+
 *   |  0                                |  gen:14 |st:2 |class:4|  client:12  |
 *   +-----------------------------------+---------+-----+-------+-------------+
 *    st  HELD (1): the application holds the block; CACHED (3): it freed it
 *
 * What each reader of the owner log makes of CACHED:
 *   recovery, close, fsck --repair   a head of x's (heldGroups accepts it),
 *                     freed like any other (the CAS of assembly/alloc.ts
 *                     `freeChunks` from the exact word), so a dead client's
 *                     cache is reclaimed with no help from it (invariant 2)
 *   the audit, orphan sweep   owned by x, not an orphan
 *   the census        not held: "cached by x" (assembly/scan.ts)
 *   bounds (read, write, cas, faa of any client)   not HELD: refused, a
 *                     cached block is a freed block to the application
 *   free, freeDelayed of any client   not HELD: refused (E_DOUBLE_FREE
 *                     from `free`; the ring takes only HELD blocks)
 *
 * Concurrency. Only two transitions touch CACHED, both one CAS from an
 * exact word this client built itself, so neither can act on a word anyone
 * else wrote:
 *   push (free)  HELD(me, gen, cls)    -> CACHED(me, gen, cls)
 *   pop (alloc)  CACHED(me, gen, cls)  -> HELD(me, gen, cls)
 * A push that fails means the entry was not this client's live block (freed
 * already, by anyone): the free goes on with the entry the CAS returned, as
 * a plain free would with a load's answer. A pop that fails means someone
 * else took the block out of this client's cache: only a recovery of this
 * client can (it CASes the exact CACHED word to FREED). The pop then drops
 * it and tries the next one: a pop never hands out a block whose CAS it did
 * not win, so a block is never handed out from a stale cache and never has
 * two holders (invariant 3), whatever fencing decided.
 *
 * The two words differ in their lower half only, and every other
 * transition of such an entry changes the lower half too (FREED, another
 * client, a pool owner), while nobody writes a client's chunk-path entry
 * with a non-zero upper half. So a 32-bit CAS of the lower half acts
 * exactly as the 64-bit CAS of the whole word would: the host's fast path
 * (src/blockcache.ts) uses one, on an Int32Array, with no BigInt.
 *
 * Fencing (docs/design.md, "Fencing"; src/fencing.ts). A client that learns
 * of its revocation drops its cache (`dropCache`: core memory only, no pool
 * write: a fenced client never writes pool metadata again) and every later
 * call fails before reaching the core (src/pool.ts, `guard`). Its cached
 * blocks stay CACHED in its generation, and its recovery frees them like
 * its live blocks. A client paused between its lease check and a pop, and
 * recovered while paused (possible only once it is fenced: acknowledged,
 * gone, cut off, or forced by an operator), loses the pop's CAS to the
 * recovery's and hands nothing out (test/blockcache.test.ts freezes a
 * client at the crash point `cache.pop` to check exactly that).
 *
 * Bounds. A free into a full class is a plain free. A flush gives cached
 * blocks back by the plain free's two steps (CACHED -> FREED, then the
 * span bits). Before `allocClass` or `allocLarge` reports the pool
 * exhausted, it flushes this client's whole cache and tries again, then
 * steals every other client's cached blocks (below) and tries again: memory
 * in any cache never makes an allocation fail.
 *
 * Stealing (`stealCached`). One pass of the block walker (assembly/walk.ts)
 * over the pool; every owner-log head it finds CACHED(x, gen, cls) over set
 * bits is freed by the same two steps as a flush's or a recovery's free of
 * a cached block:
 *   1. CAS the exact word observed, CACHED(x, gen, cls) -> FREED(me, gen',
 *      cls) with STOLEN in the upper half (`stolenEntry`);
 *   2. only if that CAS won: the plain free's second step, `clearChunks`
 *      (the span-header CAS clearing the block's bits).
 * Why this is safe, case by case:
 *   x pops concurrently (core or host fast path): both CAS the same word
 *      from CACHED; one wins. If x wins it holds the block and the steal's
 *      CAS fails and touches nothing. If the steal wins, x's pop fails and
 *      drops the entry. Entries left in x's stack (stolen, or pushed twice
 *      after the block came back to x) are harmless: every hand-out is a CAS
 *      from CACHED(x, gen, cls), which only x's own push writes, from HELD,
 *      i.e. after x's application freed it; so a pop wins only while nobody
 *      holds the block, and a stale entry either loses or pops a block that
 *      really is in x's cache now.
 *   two stealers, or a stealer and x's flush or x's recovery (each a CAS
 *      from the same CACHED word to a FREED word): exactly one wins step 1;
 *      the losers change nothing, so only the winner clears bits (as of
 *      two racing frees, assembly/alloc.ts `writeFreed`).
 *   a stealer paused or dead between steps 1 and 2 (crash point
 *      `cache.stolen`): the block is FREED with its bits set. No pop can
 *      win it (not CACHED), no allocation can take it (bits set). The
 *      census and the audit count it as an orphan, as any free cut short
 *      after its FREED write whose span commit log names someone else:
 *      here the commit log names x (its allocation of that block, often
 *      still the span's last CAS), not the stealer, so the stealer's own
 *      recovery leaves it alone and the orphan sweep frees it once fencing
 *      says everyone moved on (a resumed stealer changes the header word,
 *      which voids the sweep's record); fsck --repair frees it offline.
 *      What the handling of crash point free.chunk.logged does not cover
 *      by itself: recovery (and x's own close) completes an allocation of
 *      x's that was committed and not logged, recognised by a commit log
 *      naming x's ALLOC of exactly that group over set bits that no HELD
 *      head covers: the very picture a stolen block shows in the window.
 *      Completing it would be a second winner of "step 1", and the paused
 *      stealer, resumed, would clear the bits of whoever took the block
 *      next (two holders). Hence the STOLEN mark: recovery never completes
 *      "x's unlogged allocation" over a STOLEN entry (assembly/recover.ts).
 *      The mark stays after the steal completed, until the next allocation
 *      of the block writes HELD; a client that allocates it and dies
 *      before that write leaves an orphan for the sweep, not a leak.
 * Every word whose lower half is HELD or CACHED still has an upper half of
 * 0 (STOLEN rides on FREED only, and every HELD write is a whole word), so
 * the host's 32-bit CAS argument above holds unchanged.
 */
import { clearChunks as releaseCachedBits, clientGen, clientId, guessChunks, guessTable } from './alloc';
import { CP_CACHE_POP, CP_CACHE_STOLEN, crashPoint } from './crash';
import { cas64 } from './imports';
import { logOff } from './layout';
import { LOG_CACHED, LOG_FREED, LOG_HELD, groupChunk, heldGroups, logClass, logEntry, logSections, logState } from './ownerlog';
import { bitmapOf } from './span';
import { W_CHUNKS, W_END, walkLogBase, walkNext, walkSpan, walkStart, walkWord } from './walk';

const DEBUG = !ASC_NO_ASSERT;

/** True when owner-log entry `e` is a block its client cached (freed by the application, kept for reuse). */
@inline export function isCachedEntry(e: u64): bool { return logState(e) == LOG_CACHED; }

/**
 * Upper half of the FREED entry a steal writes (a chunk-path entry's upper
 * half is otherwise 0), and a free of a pool-owned block too (a slab, a
 * region, the ring: assembly/alloc.ts `freeChunk` with `asPool`): either
 * way the freer is not the block's allocator, whose span commit log may
 * still name its ALLOC of the block, so recovery of that allocator must
 * not take the half-done free for its unlogged allocation and finish it
 * too (assembly/recover.ts).
 */
export const STOLEN: u32 = 1;

/** The FREED entry client (me, gen) writes over a cached block of class `cls` it steals. */
@inline function stolenEntry(me: u32, gen: u32, cls: u32): u64 { return logEntry(me, gen, cls, LOG_FREED, STOLEN); }

/**
 * True when owner-log entry `e` was written by a steal (the block may be
 * half freed: see "Stealing" in the file comment), so it is nobody's
 * unlogged allocation.
 */
@inline export function isStolenEntry(e: u64): bool { return logState(e) == LOG_FREED && logSections(e) == STOLEN; }

/** CACHED(me, gen, cls) from HELD(me, gen, cls): the state bits 01 -> 11. */
@inline function cachedOf(held: u64): u64 { return held | (<u64>LOG_CACHED << 16); }

/** Classes with a cache: the chunk path, 0..4. */
export const CACHE_CLASSES: u32 = 5;
/** Most blocks per class a cache can be set to hold. */
export const CACHE_MAX: u32 = 256;

/** Per class: CACHE_MAX global chunk indexes (u32), oldest first. */
const stack = memory.data(<i32>(4 * CACHE_CLASSES * CACHE_MAX));
/** Per class: how many are cached. */
const depth = memory.data(<i32>(4 * CACHE_CLASSES));
/** Blocks per class this client may cache (0: the cache is off). */
let limit: u32 = 0;

@inline function depthOf(cls: u32): u32 { return load<u32>(depth + (cls << 2)); }
@inline function setDepth(cls: u32, n: u32): void { store<u32>(depth + (cls << 2), n); }
@inline function slot(cls: u32, i: u32): usize { return stack + ((cls * CACHE_MAX + i) << 2); }

/** Sets how many blocks per class this client caches (0 turns it off; at most CACHE_MAX). Returns the limit set. */
export function setCacheLimit(n: u32): u32 {
  limit = min(n, CACHE_MAX);
  return limit;
}

/** Blocks per class this client may cache. */
export function cacheLimit(): u32 { return limit; }

/** Blocks cached of class `cls` (0..4). */
export function cachedBlocks(cls: u32): u32 { return cls < CACHE_CLASSES ? depthOf(cls) : 0; }

/**
 * Forgets every cached block without touching the pool: for a client whose
 * blocks were (or are about to be) freed by someone else, its recovery or
 * its own `releaseHeld`, and for a fenced client, which must not write.
 */
export function dropCache(): void {
  memory.fill(depth, 0, 4 * CACHE_CLASSES);
}

/** True when class `cls` (0..4) may cache one more block. */
@inline export function cacheHasRoom(cls: u32): bool { return depthOf(cls) < limit; }

/**
 * Puts the block at global chunk `chunk` (class `cls` <= 4, this client's,
 * owner-log head `held` = HELD(me, gen, cls) exactly) into the cache: one
 * CAS HELD -> CACHED. Returns the word the CAS found: `held` when the
 * block is now cached, anything else when it was not this client's live
 * block (nothing was changed; the caller treats the word as a load's).
 * The class must have room (`cacheHasRoom`): a free into a full class is
 * a plain free (as glibc's tcache does), so a pattern that frees more than
 * it reuses pays what it paid without a cache, not a spill on top.
 */
export function pushCached(chunk: u32, cls: u32, held: u64): u64 {
  const n = depthOf(cls);
  if (DEBUG) assert(n < limit, 'pushCached into a full class');
  const old = cas64(logOff(chunk), held, cachedOf(held));
  if (old == held) {
    store<u32>(slot(cls, n), chunk);
    setDepth(cls, n + 1);
  }
  return old;
}

/**
 * Takes the most recently cached block of class `cls` back: one CAS of its
 * owner-log head from CACHED(me, gen, cls) to HELD(me, gen, cls). Returns
 * its global chunk index, or -1 when the class has none left. A block whose
 * CAS fails was taken by someone else (see the file comment) and is
 * dropped.
 */
export function popCached(cls: u32, me: u32, gen: u32): i64 {
  let n = depthOf(cls);
  if (n == 0) return -1;
  // A client paused here, with blocks in its cache, is the fencing test's
  // (test/blockcache.test.ts): recovered meanwhile, it must win no CAS below.
  crashPoint(CP_CACHE_POP);
  const held = logEntry(me, gen, cls, LOG_HELD, 0);
  const cached = cachedOf(held);
  while (n > 0) {
    n--;
    const chunk = load<u32>(slot(cls, n));
    if (cas64(logOff(chunk), cached, held) == cached) {
      setDepth(cls, n);
      return <i64>chunk;
    }
  }
  setDepth(cls, 0);
  return -1;
}

/**
 * Gives every cached block back to the pool. Each block: its CACHED word ->
 * FREED by CAS (a loser was taken by someone else, a recovery of this
 * client, and is only dropped), then its bits cleared (assembly/alloc.ts
 * `clearChunks`, the second step of every free). Returns how many blocks
 * went back.
 */
export function flushCache(me: u32, gen: u32): u32 {
  let back: u32 = 0;
  for (let cls: u32 = 0; cls < CACHE_CLASSES; cls++) {
    const n = depthOf(cls);
    const cached = logEntry(me, gen, cls, LOG_CACHED, 0);
    const freed = logEntry(me, gen, cls, LOG_FREED, 0);
    for (let i: u32 = 0; i < n; i++) {
      const chunk = load<u32>(slot(cls, i));
      if (cas64(logOff(chunk), cached, freed) == cached && releaseCachedBits(chunk, cls) == 0) back++;
    }
    setDepth(cls, 0);
  }
  return back;
}

/**
 * Frees every block in every client's cache (see "Stealing" in the file
 * comment), as client (me, gen): for an allocation that found the pool
 * exhausted after flushing its own cache, which holds none of these any
 * more. Each block: CAS of the exact CACHED word seen to a STOLEN FREED
 * entry, then, only if that won, its bits cleared. Returns how many blocks
 * went back. Costs one bulk read of each CHUNK section's span headers and
 * owner log (the exhausted path only).
 */
export function stealCached(me: u32, gen: u32): u32 {
  let back: u32 = 0;
  walkStart();
  for (let kind = walkNext(); kind != W_END; kind = walkNext()) {
    if (kind != W_CHUNKS) continue;
    const logBase = walkLogBase;
    const groups = heldGroups(bitmapOf(walkWord), logBase);
    for (let g: u32 = 0; g < groups; g++) {
      const k = <u32>load<u8>(groupChunk + g);
      const e = load<u64>(logBase + (k << 3));
      if (!isCachedEntry(e)) continue;
      const chunk = (walkSpan << 5) + k;
      const cls = logClass(e);
      if (cas64(logOff(chunk), e, stolenEntry(me, gen, cls)) != e) continue;
      crashPoint(CP_CACHE_STOLEN);
      if (releaseCachedBits(chunk, cls) == 0) back++;
    }
  }
  return back;
}

/** True when any class holds a cached block. */
export function anyCached(): bool {
  for (let c: u32 = 0; c < CACHE_CLASSES; c++) if (depthOf(c) > 0) return true;
  return false;
}

// ------------------------------------------------------------------ exports

/** Sets how many blocks per class 0..4 this client caches (0: off, at most 256); returns the limit set. */
export function setBlockCache(n: u32): u32 { return setCacheLimit(n); }

/** Blocks of class `cls` (0..4) in this client's cache. */
export function blockCacheCount(cls: u32): u32 { return cachedBlocks(cls); }

/** Forgets this client's cache without writing the pool (a fenced client; its recovery frees the blocks). */
export function blockCacheDrop(): void { dropCache(); }

/** Gives every cached block back to the pool; returns how many. */
export function blockCacheFlush(): u32 { return clientId == 0 ? 0 : flushCache(clientId, clientGen); }

/**
 * Where a host's fast path (src/blockcache.ts) finds the cache in core
 * memory: 0 the stacks (u32 chunk indexes, CACHE_MAX per class), 1 the
 * depths (u32 per class), 2 the per-chunk class guesses (u8, 1 + class,
 * direct-mapped on the low bits of the chunk index), 3 the guess table's
 * length (a power of two), 4 CACHE_MAX.
 */
export function blockCacheLayout(field: u32): u32 {
  switch (field) {
    case 0: return <u32>stack;
    case 1: return <u32>depth;
    case 2: return <u32>guessTable();
    case 3: return guessChunks();
    case 4: return CACHE_MAX;
    default: return 0;
  }
}

/** The owner-log word of this client's block of class `cls` held (cached 0) or cached (1), for a host's fast path. */
export function blockCacheWord(cls: u32, cached: u32): u64 {
  return logEntry(clientId, clientGen, cls, cached != 0 ? LOG_CACHED : LOG_HELD, 0);
}
