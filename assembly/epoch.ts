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
 *                       offset, u64 epoch of retirement, u64 identity (the
 *                       object's tag, or the block's owner-log entry, when
 *                       queued); created on first use, its offset CASed
 *                       into SB_LIMBO
 *
 * An object still belongs to the client that allocated it while it waits
 * (every block does, see assembly/slab.ts): if that client closes or is
 * recovered first, the object is freed with the rest of its memory. The
 * identity makes the later pop free it only if it is still the object that
 * was queued, never a reuse of its memory by someone else.
 *
 * E may advance from e to e + 1 when every LIVE or REVOKED client is either
 * idle or published e. An object retired at epoch r is freed once E >= r + 2:
 * E reached r + 2 only through a moment when every active client had
 * published r + 1, so every operation that was in progress at retirement
 * (published <= r) had ended by then.
 *
 * The ring's head and tail change only under the lock at SB_LIMBO_LOCK
 * (assembly/lock.ts); push writes the entry before the tail, and pop
 * advances the head before it frees the entry's object, so a holder that
 * dies mid-way loses at most one queued object (still allocated, and freed
 * with its allocator's memory when that client closes or is recovered) but
 * never frees one twice. A stolen lock needs no other repair.
 */
import { adoptBlock, allocClass, chunkOffset, clientGen, clientId, freeChunk } from './alloc';
import { SLOT_LIVE, SLOT_REVOKED, slotOff, slotState } from './client';
import { heapFreeAt } from './heap';
import { cas64, load64, store64, writeFrom } from './imports';
import { acquireLock, releaseLock } from './lock';
import {
  CHUNK_SHIFT, E_BUSY, E_EXHAUSTED, E_INVALID_ADDRESS, SB_EPOCH, SB_LIMBO, SB_LIMBO_LOCK, dataOff, leaseMs,
  logOff, maxClients, nSections,
} from './layout';
import { LOG_HELD, OWNER_HEAP, isPoolOwner, logClient, logEntry, logSections, logState } from './ownerlog';
import { isSlabEntry, loadTag, objectIndex, slabClassOf, slabHeadOf, tagRequested } from './slab';

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

/**
 * The identity of what is at byte offset `off`, if a delayed free may queue
 * it, else 0: a heap object that was handed out (bit set, tag naming a
 * requested size) -> its tag; the start of a chunk block held by a client
 * -> its owner-log entry.
 */
function identityOf(off: u64): u64 {
  if (off < dataOff || off >= dataOff + (<u64>nSections << 21)) return 0;
  const chunk = <u32>((off - dataOff) >> CHUNK_SHIFT);
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
    return tagRequested(tag) != 0 ? <u64>tag : 0;
  }
  if (((off - dataOff) & 4095) != 0) return 0;
  const h = load64(logOff(chunk));
  return logState(h) == LOG_HELD && !isPoolOwner(logClient(h)) ? h : 0;
}

/** The ring's byte offset, creating it if needed; 0 when the pool is full. */
function ring(): u64 {
  const have = load64(SB_LIMBO);
  if (have != 0) return have;
  const head = allocClass(RING_CLASS);
  if (head < 0) return 0;
  const base = chunkOffset(<u32>head);
  writeFrom(base, zeros, <u32>RING_HEADER);
  if (!adoptBlock(<u32>head, RING_CLASS, 0, logEntry(OWNER_HEAP, 0, RING_CLASS, LOG_HELD, 0))) return 0;
  const old = cas64(SB_LIMBO, 0, base);
  if (old == 0) return base;
  freeChunk(<u32>head, true);
  return old;
}

@inline function waitMs(): f64 { return <f64>(leaseMs() * 2); }

/**
 * Queues the heap object or block at byte offset `off` to be freed once
 * every operation now in progress has ended. Returns OK, E_INVALID_ADDRESS
 * (not a live object or block), E_EXHAUSTED (the ring is full even after
 * reclaiming: operations stay in progress too long) or E_BUSY.
 */
export function freeDelayed(off: u64): i32 {
  const id = identityOf(off);
  if (id == 0) return E_INVALID_ADDRESS;
  const r = ring();
  if (r == 0) return E_EXHAUSTED;
  if (!acquireLock(SB_LIMBO_LOCK, clientId, clientGen, waitMs())) return E_BUSY;
  let tail = load64(r + 8);
  if (tail - load64(r) >= RING_ENTRIES) {
    tryAdvance();
    popSafe(r);
    if (tail - load64(r) >= RING_ENTRIES) { releaseLock(SB_LIMBO_LOCK); return E_EXHAUSTED; }
  }
  const slot = r + RING_HEADER + (tail % RING_ENTRIES) * ENTRY_BYTES;
  store64(slot, off);
  store64(slot + 8, load64(SB_EPOCH));
  store64(slot + 16, id);
  store64(r + 8, tail + 1);
  releaseLock(SB_LIMBO_LOCK);
  return 0;
}

/** Pops and frees every entry retired two or more epochs ago; returns how many (lock held). */
function popSafe(r: u64): u32 {
  const e = load64(SB_EPOCH);
  let head = load64(r);
  const tail = load64(r + 8);
  let freed: u32 = 0;
  while (head < tail) {
    const slot = r + RING_HEADER + (head % RING_ENTRIES) * ENTRY_BYTES;
    if (load64(slot + 8) + 2 > e) break;
    const off = load64(slot);
    const id = load64(slot + 16);
    head++;
    store64(r, head);
    if (identityOf(off) == id && heapFreeAt(off) == 0) freed++;
  }
  return freed;
}

/**
 * Tries to advance the epoch, then frees what is safe to free. Returns how
 * many objects were freed, or E_BUSY.
 */
export function reclaimDelayed(): i64 {
  tryAdvance();
  const r = load64(SB_LIMBO);
  if (r == 0) return 0;
  if (!acquireLock(SB_LIMBO_LOCK, clientId, clientGen, waitMs())) return E_BUSY;
  const freed = popSafe(r);
  releaseLock(SB_LIMBO_LOCK);
  return freed;
}

/** Entries waiting in the ring. */
export function pendingDelayed(): u64 {
  const r = load64(SB_LIMBO);
  return r == 0 ? 0 : load64(r + 8) - load64(r);
}
