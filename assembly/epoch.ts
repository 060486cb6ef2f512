/**
 * Epoch-based delayed free (Fraser, "Practical lock-freedom", 2004, section
 * 5.2.3; as in HPE NVMM's EpochManager): an object unlinked from a shared
 * structure may still be read by operations that found it before; it is
 * queued with the epoch of its retirement and freed only once every
 * operation in progress at that moment has ended.
 *
 *   global epoch E      superblock word SB_EPOCH, only ever incremented
 *   client epoch        client slot +24: (e << 1) | 1 while the client has an
 *                       operation in progress that began at epoch e, 0 when
 *                       it has none
 *   ring                a pool-owned block (OWNER_HEAP, class 5, 128 KiB):
 *                       +0 u64 head, +8 u64 tail (entries ever popped and
 *                       pushed), +64 RING_ENTRIES entries of 32 B: u64 byte
 *                       offset, u64 epoch of retirement, u64 identity (what
 *                       the object's tag word half or owner-log head reads
 *                       once it is retired, below); created on first use,
 *                       its offset CASed into SB_LIMBO
 *
 * Ownership (issue 9, finding 4). Queuing an object *retires* it: one CAS
 * hands it from its taker to the ring, so that from then on nothing but the
 * ring's pop can free it, and the pop's check and its free cannot be told
 * apart by anyone:
 *   heap object   its tag's `requested` becomes RETIRED (assembly/slab.ts),
 *                 by a CAS of the tag's 64-bit word from the word read;
 *                 public frees refuse it (DoubleFreeError) and its taker's
 *                 recovery and close skip it
 *   chunk block   its owner-log head goes from HELD(x, gen) to
 *                 HELD(OWNER_HEAP, gen RETIRED_GEN, same class and size), as
 *                 adoptBlock does: a pool-owned block, skipped by recovery,
 *                 close and the public free
 * A retired object stays allocated, so nobody can reallocate it, and a
 * retired state is only ever created by a push. The pop frees an entry's
 * object only while it is still retired with that identity; under the lock
 * nothing else changes a retired object, so the check and the free act on
 * the same object. Identities therefore never need to be unique over time:
 * the 4-bit tag generation can wrap without a stale entry ever matching a
 * new object, because an object can only match while the ring owns it, and
 * at most one entry ([head, tail)) names an object the ring owns.
 *
 * The ring's head and tail change only under the lock at SB_LIMBO_LOCK
 * (assembly/lock.ts), and so do retired states: a push writes its entry,
 * then retires the object (CAS), then advances the tail; a pop frees the
 * object, then advances the head. Recovery and close take the same lock
 * while they free a client's heap objects (assembly/recover.ts), so no
 * object is retired between their tag read and their bitmap CAS. A holder
 * that dies mid-way is repaired by the next holder, which steals its lock
 * (`repairRing`): an entry at the tail whose object is retired and named by
 * no queued entry was a push cut short after its retire, and is completed;
 * an entry at the head whose object is no longer retired was a pop cut
 * short after its free, and is dropped. Nothing is freed twice, and a
 * retired object is never lost.
 */
import { adoptBlock, allocClass, chunkOffset, clientGen, clientId, freeChunk, isChunkAllocated } from './alloc';
import { SLOT_LIVE, SLOT_REVOKED, slotOff, slotState } from './client';
import { freeRetired } from './heap';
import { CP_RING_ENTRY_WRITTEN, CP_RING_POPPED, CP_RING_RETIRED, crashPoint } from './crash';
import { cas64, load64, store64, writeFrom } from './imports';
import { acquireLock, lockFailure, lockStolen, releaseLock } from './lock';
import {
  CHUNK_SHIFT, E_EXHAUSTED, E_INVALID_ADDRESS, SB_EPOCH, SB_LIMBO, SB_LIMBO_LOCK, dataOff, leaseMs,
  logOff, maxClients, nSections,
} from './layout';
import { LOG_HELD, OWNER_HEAP, isPoolOwner, logClass, logClient, logEntry, logSections, logState } from './ownerlog';
import {
  RETIRED, isSlabEntry, loadTag, objectIndex, slabClassOf, slabHeadOf, tagHandedOut, tagWordOff,
} from './slab';

const RING_CLASS: u32 = 5;
const RING_HEADER: u64 = 64;
const ENTRY_BYTES: u64 = 32;
export const RING_ENTRIES: u64 = ((<u64>4096 << RING_CLASS) - RING_HEADER) / ENTRY_BYTES;

const zeros = memory.data(64);

/** The global epoch. */
export function epochNow(): u64 {
  return load64(SB_EPOCH);
}

/** Publishes that this client has an operation in progress from the current epoch; returns it. */
export function enterEpoch(): u64 {
  const e = load64(SB_EPOCH);
  store64(slotOff(clientId) + 24, (e << 1) | 1);
  return e;
}

/** Publishes that this client has no operation in progress. */
export function exitEpoch(): void {
  store64(slotOff(clientId) + 24, 0);
}

/**
 * Advances the global epoch by one if every LIVE or REVOKED client is idle
 * or has published the current epoch. Returns the epoch after the attempt.
 */
export function tryAdvance(): u64 {
  const e = load64(SB_EPOCH);
  for (let id: u32 = 1; id <= maxClients; id++) {
    const st = slotState(load64(slotOff(id)));
    if (st != SLOT_LIVE && st != SLOT_REVOKED) continue;
    const w = load64(slotOff(id) + 24);
    if ((w & 1) != 0 && (w >> 1) != e) return e;
  }
  const old = cas64(SB_EPOCH, e, e + 1);
  return old == e ? e + 1 : old;
}

/** Owner-log gen of a chunk block the ring owns (the other pool-owned blocks carry gen 0). */
const RETIRED_GEN: u32 = 1;
/** Identity bit of a heap object (its low 32 bits are the retired tag); chunk blocks' identities are owner-log words, whose bit 63 is 0. */
const SLAB_IDENTITY: u64 = <u64>1 << 63;

/** Where `off`'s retire-state lives, filled by `retirable` / `stateOf`. */
let idSlab = false;
let idHead: u32 = 0;
let idIndex: u32 = 0;
let idWordOff: u64 = 0;

/** Chunk index of data offset `off`, or -1 outside the data area. */
@inline function dataChunk(off: u64): i64 {
  if (off < dataOff || off >= dataOff + (<u64>nSections << 21)) return -1;
  return <i64>((off - dataOff) >> CHUNK_SHIFT);
}

/**
 * The identity `off` would have once retired, if a delayed free may queue it
 * now, else 0: a heap object handed out (bit set, tag naming a requested
 * size, not already retired) or the start of a chunk block a client holds.
 * Also sets idSlab/idHead/idIndex/idWordOff for `retire`.
 */
function retirable(off: u64): u64 {
  const chunk = dataChunk(off);
  if (chunk < 0) return 0;
  const head = slabHeadOf(off);
  const e = load64(logOff(head));
  if (isSlabEntry(e)) {
    const k = slabClassOf(logSections(e));
    const at = objectIndex(head, k, off);
    if (at < 0) return 0;
    const idx = <u32>at;
    const base = chunkOffset(head);
    if ((load64(base + (<u64>(idx >> 6) << 3)) & (<u64>1 << (idx & 63))) == 0) return 0;
    const tag = loadTag(base, k, idx);
    if (!tagHandedOut(tag)) return 0;
    idSlab = true;
    idHead = head;
    idIndex = idx;
    idWordOff = tagWordOff(base, k, idx);
    return SLAB_IDENTITY | <u64>((tag & 0xFFFF) | (RETIRED << 16));
  }
  if (((off - dataOff) & 4095) != 0) return 0;
  const h = load64(logOff(<u32>chunk));
  if (logState(h) != LOG_HELD || isPoolOwner(logClient(h))) return 0;
  idSlab = false;
  idHead = <u32>chunk;
  idWordOff = logOff(<u32>chunk);
  return logEntry(OWNER_HEAP, RETIRED_GEN, logClass(h), LOG_HELD, logSections(h));
}

/**
 * Retires the object `retirable` just described: one CAS from the word read
 * to the word with its retired identity `id` (for a tag, only its own half
 * changes; a change of the other half is retried). Returns false when the
 * object changed meanwhile (freed by someone else): nothing was done.
 */
function retire(id: u64): bool {
  if (!idSlab) {
    const h = load64(idWordOff);
    if (logState(h) != LOG_HELD || isPoolOwner(logClient(h)) || logClass(h) != logClass(id) || logSections(h) != logSections(id)) return false;
    return cas64(idWordOff, h, id) == h;
  }
  const shift: u64 = (idIndex & 1) ? 32 : 0;
  let w = load64(idWordOff);
  while (true) {
    const tag = <u32>(w >> shift);
    if (!tagHandedOut(tag) || (tag & 0xFFFF) != (<u32>id & 0xFFFF)) return false;
    const nw = (w & ~(<u64>0xFFFFFFFF << shift)) | (<u64><u32>id << shift);
    const old = cas64(idWordOff, w, nw);
    if (old == w) return true;
    w = old;
  }
}

/**
 * True when the object at `off` is retired with identity `id` and still
 * allocated, i.e. the ring owns it (sets idSlab/idHead/idIndex).
 */
function ownedByRing(off: u64, id: u64): bool {
  const chunk = dataChunk(off);
  if (chunk < 0) return false;
  if ((id & SLAB_IDENTITY) == 0) {
    idSlab = false;
    idHead = <u32>chunk;
    return load64(logOff(<u32>chunk)) == id && isChunkAllocated(<u32>chunk);
  }
  const head = slabHeadOf(off);
  const e = load64(logOff(head));
  if (!isSlabEntry(e)) return false;
  const k = slabClassOf(logSections(e));
  const at = objectIndex(head, k, off);
  if (at < 0) return false;
  const base = chunkOffset(head);
  if (loadTag(base, k, <u32>at) != <u32>id) return false;
  idSlab = true;
  idHead = head;
  idIndex = <u32>at;
  return (load64(base + (<u64>(<u32>at >> 6) << 3)) & (<u64>1 << (<u32>at & 63))) != 0;
}

/** Frees the object at `off` that `ownedByRing` just confirmed (lock held). */
function freeOwned(off: u64): bool {
  if (!idSlab) return freeChunk(idHead, true) == 0;
  return freeRetired(idHead, idIndex, off) == 0;
}

/** The ring's byte offset, creating it if needed; 0 when the pool is full. */
function ring(): u64 {
  const have = load64(SB_LIMBO);
  if (have != 0) return have;
  const head = allocClass(RING_CLASS);
  if (head < 0) return 0;
  const base = chunkOffset(<u32>head);
  // Header and every entry start zeroed (repairRing reads entries past the tail).
  const bytes = <u64>4096 << RING_CLASS;
  for (let o: u64 = 0; o < bytes; o += 64) writeFrom(base + o, zeros, 64);
  if (!adoptBlock(<u32>head, RING_CLASS, 0, logEntry(OWNER_HEAP, 0, RING_CLASS, LOG_HELD, 0))) return 0;
  const old = cas64(SB_LIMBO, 0, base);
  if (old == 0) return base;
  freeChunk(<u32>head, true);
  return old;
}

@inline function waitMs(): f64 { return <f64>(leaseMs() * 2); }

/** Byte offset of ring entry number `n` (modulo the ring). */
@inline function entryAt(r: u64, n: u64): u64 { return r + RING_HEADER + (n % RING_ENTRIES) * ENTRY_BYTES; }

/**
 * Takes the ring's lock (waiting at most `waitMs()`, renewing this client's
 * lease meanwhile); repairs the ring when the lock was stolen from a dead
 * holder. Returns OK or the lock's failure status.
 */
export function lockRing(r: u64): i32 {
  if (!acquireLock(SB_LIMBO_LOCK, clientId, clientGen, waitMs())) return lockFailure;
  if (lockStolen && r != 0) repairRing(r);
  return 0;
}

/** Releases the ring's lock. */
export function unlockRing(): void {
  releaseLock(SB_LIMBO_LOCK);
}

/** True when no queued entry in [head, tail) names byte offset `off`. */
function unqueued(r: u64, head: u64, tail: u64, off: u64): bool {
  for (let n = head; n < tail; n++) if (load64(entryAt(r, n)) == off) return false;
  return true;
}

/** Completes what a dead lock holder left half done (see the file comment). */
function repairRing(r: u64): void {
  let head = load64(r);
  const tail = load64(r + 8);
  if (head < tail) {
    const at = entryAt(r, head);
    if (!ownedByRing(load64(at), load64(at + 16))) store64(r, ++head);
  }
  if (tail - head < RING_ENTRIES) {
    const at = entryAt(r, tail);
    const off = load64(at);
    if (off != 0 && ownedByRing(off, load64(at + 16)) && unqueued(r, head, tail, off)) store64(r + 8, tail + 1);
  }
}

/**
 * Queues the heap object or block at byte offset `off` to be freed once
 * every operation now in progress has ended; from now on the ring owns it.
 * Returns OK, E_INVALID_ADDRESS (not a live object or block, or one already
 * queued), E_EXHAUSTED (the ring is full even after reclaiming: operations
 * stay in progress too long), E_BUSY or E_LEASE_EXPIRED.
 */
export function freeDelayed(off: u64): i32 {
  if (retirable(off) == 0) return E_INVALID_ADDRESS;
  const r = ring();
  if (r == 0) return E_EXHAUSTED;
  const locked = lockRing(r);
  if (locked != 0) return locked;
  const tail = load64(r + 8);
  if (tail - load64(r) >= RING_ENTRIES) {
    tryAdvance();
    popSafe(r);
    if (tail - load64(r) >= RING_ENTRIES) { unlockRing(); return E_EXHAUSTED; }
  }
  // Read again under the lock: the object may have changed since.
  const id = retirable(off);
  if (id == 0) { unlockRing(); return E_INVALID_ADDRESS; }
  const slot = entryAt(r, tail);
  store64(slot, off);
  store64(slot + 8, load64(SB_EPOCH));
  store64(slot + 16, id);
  crashPoint(CP_RING_ENTRY_WRITTEN);
  if (!retire(id)) { unlockRing(); return E_INVALID_ADDRESS; }
  crashPoint(CP_RING_RETIRED);
  store64(r + 8, tail + 1);
  unlockRing();
  return 0;
}

/**
 * Frees every entry retired two or more epochs ago, oldest first; returns
 * how many objects it freed (lock held). Each object is freed before the
 * head moves past its entry.
 */
function popSafe(r: u64): u32 {
  const e = load64(SB_EPOCH);
  let head = load64(r);
  const tail = load64(r + 8);
  let freed: u32 = 0;
  while (head < tail) {
    const at = entryAt(r, head);
    if (load64(at + 8) + 2 > e) break;
    const off = load64(at);
    if (ownedByRing(off, load64(at + 16)) && freeOwned(off)) freed++;
    crashPoint(CP_RING_POPPED);
    head++;
    store64(r, head);
  }
  return freed;
}

/**
 * Tries to advance the epoch, then frees what is safe to free. Returns how
 * many objects were freed, or E_BUSY / E_LEASE_EXPIRED.
 */
export function reclaimDelayed(): i64 {
  tryAdvance();
  const r = load64(SB_LIMBO);
  if (r == 0) return 0;
  const locked = lockRing(r);
  if (locked != 0) return locked;
  const freed = popSafe(r);
  unlockRing();
  return freed;
}

/** Entries waiting in the ring. */
export function pendingDelayed(): u64 {
  const r = load64(SB_LIMBO);
  return r == 0 ? 0 : load64(r + 8) - load64(r);
}
