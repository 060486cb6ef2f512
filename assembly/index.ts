/**
 * The core's exports (docs/abi.md is the contract for hosts). Offsets and
 * byte counts cross the boundary as f64 holding exact integers; negative
 * results are status codes (assembly/layout.ts: E_*).
 *
 * Lifecycle: init(seed) -> format(...) or attach(...) -> register(...) ->
 * alloc/free/... -> unregister(). One instance serves one client.
 */
import {
  allocClass, allocCount, allocLarge, allocOps, allocRetries, allocRetryMax, chunkOffset, classAllocCount,
  classFreeCount, clientGen, clientId, freeChunk, freeCount, freeOps, setClient,
} from './alloc';
import {
  SLOT_LIVE, acknowledgeRevocation, claimSlot, releaseSlot, renewSlot, revokeSlot, slotGen, slotOff,
} from './client';
import { armCrash } from './crash';
import { inOneBlock } from './bounds';
import {
  fsckPool, orphanRecords as orphanRecordsImpl, reclaimOrphan as reclaimOrphanImpl, scanOrphans as scanOrphansImpl,
} from './audit';
import { reclaimClient, recoverClient, slotInfo } from './recover';
import { casCount, load64, nowMs, store64, transportOps, writeFrom } from './imports';
import {
  CHUNK_BYTES, CHUNK_SHIFT, E_EXHAUSTED, E_INVALID_ADDRESS, classOfBytes, E_INVALID_ARGUMENT, E_NOT_A_POOL, E_NOT_ATTACHED, HEADER_BYTES,
  MAGIC, MAX_CLASS, MAX_CLIENTS, OK, SECTION_BYTES, SECTION_SPANS, attached, clientTableOff, dataOff,
  corruptValue, corruptWord, layoutVersion, leaseMs, maxClients, setLeaseMs, nSections, ownerLogOff, planLayout, poolBytes, readSuperblock, sectionHdrOff,
  spanHdrOff, writeMagic, writeSuperblockBody,
} from './layout';
import { heapAllocObject, heapCached, heapFlush, heapFreeAt, heapScan, heapTrim, planGranules, resetHeap } from './heap';
export { heapAllocDirect, heapCacheLayout, heapClearFull, heapDirectOps, heapFreeDirect } from './heap';
import { enterEpoch, epochNow, exitEpoch, freeDelayed, pendingDelayed, reclaimDelayed } from './epoch';
import { nextU64, seedPrng } from './prng';
import { setLockWaitCap } from './lock';
import { MAX_SLAB_OBJECT, OBJECT_CLASSES, objectClassOf, objectCount, objectSize, planSlabs } from './slab';
import { scanPool } from './scan';
import { OP_SEAL, spanWord } from './span';

export { classOfBytes, layoutVersion, scanPool, slotInfo };
export { scanCached } from './scan';
export { setDirectWindow } from './imports';
export { blockCacheCount, blockCacheDrop, blockCacheFlush, blockCacheLayout, blockCacheWord, setBlockCache } from './cache';
export * from './region';

const zeros = memory.data(4096);
const statsOut = memory.data(8 * 32);

/** Seeds the PRNG; call before format/attach for reproducible runs. */
export function init(seed: u64): void {
  seedPrng(seed);
  planSlabs();
  planGranules();
}

/**
 * Formats the (zeroed or garbage) medium as an empty pool of `bytes` with
 * `clients` client slots. Refuses (E_INVALID_ARGUMENT) a medium that already
 * holds a pool, and a size too small for one section. The magic is written
 * last.
 */
export function format(bytes: f64, clients: u32): i32 {
  if (clients == 0 || clients > MAX_CLIENTS) return E_INVALID_ARGUMENT;
  if (load64(0) == MAGIC) return E_INVALID_ARGUMENT;
  if (planLayout(<u64>bytes, clients) == 0) return E_INVALID_ARGUMENT;
  // Client table, headers and owner log start zeroed: slots FREE, sections
  // FREE with no hints, owner log NONE.
  zeroRange(clientTableOff, dataOff - clientTableOff);
  // The superblock's later words (epoch, ring and directory offsets, locks).
  zeroRange(112, HEADER_BYTES - 112);
  // Spans of FREE sections are sealed (assembly/section.ts).
  const sealed = spanWord(0xFFFFFFFF, 0, OP_SEAL, 0, 0, 0);
  const spans = nSections * SECTION_SPANS;
  for (let s: u32 = 0; s < spans; s++) store64(spanHdrOff + (<u64>s << 3), sealed);
  writeSuperblockBody(<u64>nowMs(), nextU64());
  writeMagic();
  return readSuperblock(<u64>bytes);
}

function zeroRange(off: u64, len: u64): void {
  while (len > 0) {
    const n = <u32>min(len, 4096);
    writeFrom(off, zeros, n);
    off += n;
    len -= n;
  }
}

/** Reads and checks the superblock of a medium of `transportBytes`; writes nothing. */
export function attach(transportBytes: f64): i32 {
  return readSuperblock(<u64>transportBytes);
}

/** After attach/format returned CORRUPT: the byte offset of the superblock word at fault. */
export function corruptOffset(): u32 { return corruptWord; }

/** After attach/format returned CORRUPT: the value that word held. */
export function corruptWordValue(): u64 { return corruptValue; }

/**
 * Claims a client slot for this instance; pid, host id, the process start
 * time (clock ticks since boot, 0 if unknown), the PID namespace (inode of
 * /proc/self/ns/pid, 0 if unknown) and the boot id (52-bit hash, 0 if
 * unknown) are recorded so a monitor can tell a dead owner from a live one
 * (assembly/client.ts). Returns the client id or a status.
 */
export function register(pid: u32, hostId: u64, startTime: u64, pidNs: f64, bootId: f64): i32 {
  if (!attached) return E_NOT_ATTACHED;
  const id = claimSlot(<u32>(nextU64() % maxClients), pid, hostId, startTime, <u64>pidNs, <u64>bootId, <u64>nowMs());
  if (id > 0) {
    setClient(<u32>id, slotGen(load64(slotOff(<u32>id))));
    resetHeap();
  }
  return id;
}

/** Renews this client's lease heartbeat. */
export function renew(): void {
  if (clientId != 0) renewSlot(clientId, <u64>nowMs());
}

/**
 * Frees every block this client still holds (the same scan as recovery).
 * Returns a pointer to the reclaim counters (docs/abi.md).
 */
export function releaseHeld(): usize {
  const r = reclaimClient(clientId, clientGen);
  resetHeap();
  return r;
}

/** Releases this client's slot (LIVE -> FREE). Returns OK or E_NOT_ATTACHED. */
export function unregister(): i32 {
  if (clientId == 0) return E_NOT_ATTACHED;
  releaseSlot(clientId, SLOT_LIVE);
  setClient(0, 0);
  return OK;
}

/** Writes this client's fence acknowledgement (it saw its lease revoked and stops). */
export function acknowledgeRevoked(): void {
  if (clientId != 0) acknowledgeRevocation(clientId, clientGen);
}

/**
 * Revokes client `id`'s lease if its slot is still LIVE in generation `gen`
 * (LIVE -> REVOKED). Returns OK or E_INVALID_ARGUMENT.
 */
export function revoke(id: u32, gen: u32): i32 {
  if (!attached) return E_NOT_ATTACHED;
  return revokeSlot(id, gen);
}

/**
 * Recovers client `id` (its slot REVOKED, or RECOVERING by dead recoverer
 * `deadRecoverer`) as this client. Returns a pointer to the counters.
 */
export function recover(id: u32, deadRecoverer: u32): usize {
  return recoverClient(id, deadRecoverer);
}

/** The pool's client lease in ms. */
export function lease(): f64 {
  return <f64>leaseMs();
}

/** Sets the pool's client lease (ms, >= 10). Returns OK or E_INVALID_ARGUMENT. */
export function setLease(ms: f64): i32 {
  if (!attached) return E_NOT_ATTACHED;
  if (!(ms >= 10) || ms > 86400000) return E_INVALID_ARGUMENT;
  setLeaseMs(<u64>ms);
  return OK;
}

/** Lists the pool's orphans (assembly/audit.ts); returns how many, records at `orphanRecords()`. */
export function scanOrphans(): u32 {
  return scanOrphansImpl();
}

/** Pointer to the orphan records: u64 kind, u64 index, u64 header word, u64 orphan chunk bits, 32 bytes each. */
export function orphanRecords(): usize {
  return orphanRecordsImpl();
}

/**
 * Frees one orphan if its header is still `word` and it is still not owned;
 * of chunk bits (kind 1), only those in `bits` (the record's). Returns 1 when freed.
 */
export function reclaimOrphan(kind: u32, index: u32, word: u64, bits: u32): i32 {
  return reclaimOrphanImpl(kind, index, word, bits) ? 1 : 0;
}

/** Checks every invariant; with `repair` != 0 fixes what it finds. Returns a pointer to 10 counts. */
export function fsck(repair: i32): usize {
  return fsckPool(repair != 0);
}

/** Arms crash point `point` (0 disarms) to fire after `skip` passes (assembly/crash.ts). */
export function crashAt(point: u32, skip: u32): void {
  armCrash(point, skip);
}

/** Allocates one block of size class `cls` (0..9); returns its byte offset or a status. */
export function alloc(cls: u32): f64 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (cls > MAX_CLASS) return E_INVALID_ARGUMENT;
  const r = allocClass(cls);
  return r < 0 ? <f64>r : <f64>chunkOffset(<u32>r);
}

/**
 * Allocates at least `bytes` (>= 1): the smallest size class that fits up to
 * 2 MiB, whole contiguous sections above. Returns the byte offset or a status.
 */
export function allocBytes(bytes: f64): f64 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (!(bytes >= 1) || bytes > <f64>(<u64>nSections * SECTION_BYTES)) return bytes >= 1 ? E_EXHAUSTED : E_INVALID_ARGUMENT;
  const b = <u64>Math.ceil(bytes);
  if (b > SECTION_BYTES) {
    const r = allocLarge(<u32>((b + SECTION_BYTES - 1) / SECTION_BYTES));
    return r < 0 ? <f64>r : <f64>chunkOffset(<u32>r);
  }
  return alloc(classOfBytes(b));
}


/**
 * Frees the block starting at byte `offset`. Returns OK, E_INVALID_ADDRESS
 * (not the start of an allocated block) or E_DOUBLE_FREE.
 */
export function free(offset: f64): i32 {
  if (clientId == 0) return E_NOT_ATTACHED;
  const chunk = chunkOf(offset);
  if (chunk < 0) return E_INVALID_ADDRESS;
  return freeChunk(<u32>chunk);
}

/** Global chunk index of a chunk-aligned data offset, or -1. */
function chunkOf(offset: f64): i64 {
  if (!(offset >= <f64>dataOff) || offset != Math.floor(offset)) return -1;
  const off = <u64>offset;
  if (off >= dataOff + <u64>nSections * SECTION_BYTES || ((off - dataOff) & (CHUNK_BYTES - 1)) != 0) return -1;
  return <i64>((off - dataOff) >> CHUNK_SHIFT);
}

/**
 * OK when every byte of [offset, offset + len) (len >= 1; 0 checks the byte
 * at offset) lies inside ONE allocated block, heap object or region
 * (assembly/bounds.ts), else E_INVALID_ADDRESS.
 */
export function check(offset: f64, len: f64): i32 {
  if (!attached) return E_NOT_ATTACHED;
  if (!(offset >= 0) || !(len >= 0) || offset != Math.floor(offset) || len != Math.floor(len)) return E_INVALID_ADDRESS;
  return inOneBlock(<u64>offset, len == 0 ? 1 : <u64>len) ? OK : E_INVALID_ADDRESS;
}

/**
 * Geometry of the attached pool, by index: 0 pool bytes, 1 sections,
 * 2 max clients, 3 data offset, 4 client table offset, 5 section headers,
 * 6 span headers, 7 owner log, 8 this client's id, 9 superblock bytes,
 * 10 this client's slot offset (-1 before register), 11 its slot generation.
 */
export function geometry(field: u32): f64 {
  switch (field) {
    case 0: return <f64>poolBytes;
    case 1: return <f64>nSections;
    case 2: return <f64>maxClients;
    case 3: return <f64>dataOff;
    case 4: return <f64>clientTableOff;
    case 5: return <f64>sectionHdrOff;
    case 6: return <f64>spanHdrOff;
    case 7: return <f64>ownerLogOff;
    case 8: return <f64>clientId;
    case 9: return <f64>HEADER_BYTES;
    case 10: return clientId == 0 ? -1 : <f64>slotOff(clientId);
    case 11: return <f64>clientGen;
    default: return -1;
  }
}

/**
 * This client's counters, f64 each, at the returned pointer:
 *   [0] allocs  [1] frees  [2] CAS issued  [3] alloc CAS retries
 *   [4] max retries in one alloc  [5] transport ops in allocs
 *   [6] transport ops in frees    [7] transport ops in all
 *   [8..18] blocks allocated per class 0..9, 10 = above 2 MiB
 *   [19..29] blocks freed per class
 */
export function stats(): usize {
  store<f64>(statsOut, <f64>allocCount);
  store<f64>(statsOut + 8, <f64>freeCount);
  store<f64>(statsOut + 16, <f64>casCount);
  store<f64>(statsOut + 24, <f64>allocRetries);
  store<f64>(statsOut + 32, <f64>allocRetryMax);
  store<f64>(statsOut + 40, <f64>allocOps);
  store<f64>(statsOut + 48, <f64>freeOps);
  store<f64>(statsOut + 56, <f64>transportOps);
  for (let c: u32 = 0; c <= 10; c++) {
    store<f64>(statsOut + ((8 + c) << 3), <f64>classAllocCount(c));
    store<f64>(statsOut + ((19 + c) << 3), <f64>classFreeCount(c));
  }
  return statsOut;
}

// ------------------------------------------------------------------- heap

/**
 * Allocates a heap object of at least `bytes` (>= 1): from a slab up to
 * 3 KiB (assembly/heap.ts), a chunk block above. Returns the byte offset or
 * a status.
 */
export function heapAlloc(bytes: f64): f64 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (!(bytes >= 1)) return E_INVALID_ARGUMENT;
  if (bytes <= <f64>MAX_SLAB_OBJECT) {
    const b = <u32>Math.ceil(bytes);
    return heapAllocObject(objectClassOf(b), b);
  }
  return allocBytes(bytes);
}

/** Frees a heap object or chunk block by byte offset. Returns OK, E_DOUBLE_FREE or E_INVALID_ADDRESS. */
export function heapFree(offset: f64): i32 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (!(offset >= 0) || offset != Math.floor(offset)) return E_INVALID_ADDRESS;
  return heapFreeAt(<u64>offset);
}

/** Caps every later metadata-lock wait of this instance at `ms` (< 0: no cap); a lease monitor's sweeps use a short one. */
export function setLockWait(ms: f64): void { setLockWaitCap(ms); }

/** Returns this client's cached objects and releases its slabs; returns how many objects. */
export function heapRelease(): u32 { return heapFlush(); }

/** Frees every empty unowned slab; returns how many. */
export function heapTrimSlabs(): u32 { return heapTrim(); }

/** Pool-wide heap census: pointer to 4 f64 per object class (assembly/heap.ts, heapScan). */
export function heapCensus(): usize { return heapScan(); }

/** Objects in this client's caches. */
export function heapCachedObjects(): u32 { return heapCached(); }

/** Object size (bytes) of object class `k`, 0 past the last class. */
export function heapClassSize(k: u32): u32 { return k < OBJECT_CLASSES ? objectSize(k) : 0; }

/** Objects per slab of object class `k`. */
export function heapClassObjects(k: u32): u32 { return k < OBJECT_CLASSES ? objectCount(k) : 0; }

// ----------------------------------------------------------------- epochs

/** Publishes an operation in progress of this client (assembly/epoch.ts); returns the epoch. */
export function epochEnter(): f64 {
  if (clientId == 0) return E_NOT_ATTACHED;
  return <f64>enterEpoch();
}

/** Publishes that this client has no operation in progress. */
export function epochExit(): void {
  if (clientId != 0) exitEpoch();
}

/** The global epoch. */
export function epochGlobal(): f64 { return <f64>epochNow(); }

/**
 * Queues the heap object or block at byte offset `offset` for a free once
 * every operation in progress now has ended. Returns OK or a status.
 */
export function heapFreeDelayed(offset: f64): i32 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (!(offset >= 0) || offset != Math.floor(offset)) return E_INVALID_ADDRESS;
  return freeDelayed(<u64>offset);
}

/** Advances the epoch if it can and frees what is safe; returns how many, or a status. */
export function reclaim(): f64 {
  if (clientId == 0) return E_NOT_ATTACHED;
  return <f64>reclaimDelayed();
}

/** Delayed frees waiting. */
export function delayedPending(): f64 { return <f64>pendingDelayed(); }

// Host ABI numbers as Wasm globals (assembly/abi.ts).
export * from './abi';
export * from './baselines/onesided';
