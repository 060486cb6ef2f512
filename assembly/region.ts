/**
 * Named regions (HPE NVMM / gull "Regions"): a name that maps to a range of
 * pool memory which outlives the client that made it. Any client can create,
 * open, list and destroy regions by name; the memory belongs to the pool
 * (owner OWNER_REGION, assembly/ownerlog.ts, "Pool owners"), so neither
 * `close` nor the recovery of a dead client ever frees it, and the public
 * `free` refuses it.
 *
 * The directory is one pool-owned block of 64 KiB (size class 4), made on
 * the first create; superblock word SB_REGION_DIR holds its byte offset:
 *
 *   SB_REGION_DIR  0                 no directory yet
 *                  offset | PENDING  being made (only ever seen by the lock
 *                                    holder, or by whoever steals its lock)
 *                  offset            the directory (4 KiB aligned)
 *
 * It is an array of REGION_ENTRIES entries of 64 B:
 *
 *   +0   state word (below)
 *   +8   u64 byte offset of the region's memory (0 while FREE or not yet allocated)
 *   +16  u64 region size in bytes, as asked for (the block may be larger)
 *   +24  name: 1..40 bytes of UTF-8 without NUL, NUL padded to 40
 *
 * State word:
 *
 *    63                              32 31                14 13          2 1    0
 *   +----------------------------------+--------------------+-------------+------+
 *   |  seq:32                          |  gen:18            |  client:12  | st:2 |
 *   +----------------------------------+--------------------+-------------+------+
 *    st      FREE, CREATING, LIVE, DESTROYING
 *    client  the client that made the last transition, in slot generation gen
 *            (for post-mortems: the lock tells who may act, not this field)
 *    seq     bumped on every transition, so a reader that sees the same word
 *            before and after copying an entry knows the copy is whole
 *
 * Concurrency. Only the holder of the metadata lock at SB_REGION_LOCK
 * (assembly/lock.ts) writes SB_REGION_DIR or any entry, so every write here
 * is a plain store. Readers (open, list) take no lock: they read the state
 * word, copy the entry, and read the state word again; LIVE and unchanged
 * means the copy is the entry as published, because a create writes the
 * offset, size and name while the entry is still CREATING and stores LIVE
 * last, and a destroy stores DESTROYING before it touches anything else.
 * A reader that opened a region just before someone destroyed it holds a
 * stale address, as with any freed block: regions are not reference counted.
 *
 * Crash argument. A holder that dies mid-operation leaves the lock naming
 * it; the next client takes the lock over only once the holder's slot shows
 * it can no longer act (lock.ts), and then `repair` runs before anything
 * else. At that point the only entries that are not FREE or LIVE are the
 * dead holder's, and a data block at their offset whose owner-log head is
 * HELD(OWNER_REGION) can only be the block that entry adopted (no other
 * region is made or destroyed without the lock, and the directory is never
 * freed). So:
 *   create   lock; name not in use (E_EXISTS); a FREE entry -> CREATING;
 *            allocate as this client; zero it; write name, size, offset;
 *            adoptBlock -> HELD(OWNER_REGION); LIVE; unlock.
 *            Dead before the adoption: the block is HELD by the dead client,
 *            whose recovery frees it; repair only sets the entry FREE.
 *            Dead after it: repair frees the block (freeChunk as pool) and
 *            sets the entry FREE. Either way nothing leaks, nothing is freed
 *            twice, and no half-made region was ever LIVE.
 *   destroy  lock; the LIVE entry (E_NOT_FOUND) -> DESTROYING; freeChunk as
 *            pool; offset 0; FREE; unlock.
 *            The entry leaves LIVE before the free starts, so no LIVE entry
 *            ever names freed memory. Dead before the free's first write (the
 *            owner-log head still HELD(OWNER_REGION)): repair frees it. Dead
 *            after it (head FREED): the free is cut short like any client's,
 *            and its leftovers are reclaimed the same way (recovery and the
 *            orphan sweep, docs/recovery.md); repair only sets the entry FREE.
 *   directory  allocate as this client; zero; SB_REGION_DIR = offset|PENDING;
 *            adoptBlock; SB_REGION_DIR = offset. Repair of a PENDING word
 *            keeps the directory when its head is HELD(OWNER_REGION), else
 *            clears the word (the dead client's recovery frees the block).
 *            Publishing PENDING before the adoption is what keeps a crash
 *            from leaking an adopted block that nothing points to.
 */
import { adoptBlock, allocClass, allocLarge, chunkOffset, clientGen, clientId, freeChunk } from './alloc';
import { load64, readInto, store64, writeFrom } from './imports';
import {
  CHUNK_BYTES, CHUNK_SHIFT, E_BUSY, classOfBytes, E_CORRUPT, E_EXHAUSTED, E_EXISTS, E_INVALID_ARGUMENT, E_NOT_ATTACHED, E_NOT_FOUND, OK,
  SB_REGION_DIR, SB_REGION_LOCK, SECTION_BYTES, attached, dataOff, leaseMs, logOff, nSections,
} from './layout';
import { acquireLock, lockFailure, lockStolen, releaseLock } from './lock';
import { CLASS_LARGE, LOG_HELD, OWNER_REGION, logEntry } from './ownerlog';

const DEBUG = !ASC_NO_ASSERT;

/** Entries in the directory. */
const REGION_ENTRIES: u32 = 1024;
/** Bytes per entry. */
const REGION_ENTRY_BYTES: u32 = 64;
/** Longest name in bytes of UTF-8. */
const REGION_NAME_MAX: u32 = 40;
/** The directory's size: 64 KiB, size class 4. */
const DIR_BYTES: u64 = <u64>REGION_ENTRIES * REGION_ENTRY_BYTES;
/** Low bit of SB_REGION_DIR: the directory is being made (offsets are 4 KiB aligned). */
const DIR_PENDING: u64 = 1;
/** A lock held by a live client is waited for this many leases before E_BUSY. */
const LOCK_WAIT_LEASES: f64 = 2;

const RS_FREE: u32 = 0;
const RS_CREATING: u32 = 1;
const RS_LIVE: u32 = 2;
const RS_DESTROYING: u32 = 3;

// Field offsets within an entry.
const F_DATA: u64 = 8;
const F_BYTES: u64 = 16;
const F_NAME: u64 = 24;

@inline function entryState(w: u64): u32 { return <u32>w & 3; }
@inline function entrySeq(w: u64): u32 { return <u32>(w >> 32); }
@inline function entryWord(state: u32, client: u32, gen: u32, seq: u32): u64 {
  return <u64>((state & 3) | ((client & 0xFFF) << 2) | ((gen & 0x3FFFF) << 14)) | (<u64>seq << 32);
}
/** The state word that follows `w` when this client moves the entry to `state`. */
@inline function nextEntryWord(w: u64, state: u32): u64 { return entryWord(state, clientId, clientGen, entrySeq(w) + 1); }
/** Byte offset of entry `i` of the directory at `dir`. */
@inline function entryOff(dir: u64, i: u32): u64 { return dir + <u64>i * REGION_ENTRY_BYTES; }
/** Bit mask of entry states, for `scan`. */
@inline function states(a: u32, b: u32 = a, c: u32 = a): u32 { return (1 << a) | (1 << b) | (1 << c); }

/** Size class of a region's block: classOfBytes up to 2 MiB, CLASS_LARGE above. */
@inline function blockClass(bytes: u64): u32 { return bytes > SECTION_BYTES ? CLASS_LARGE : classOfBytes(bytes); }
/** Sections of a CLASS_LARGE block (0 for the other classes, as the owner log keeps them). */
@inline function blockSections(bytes: u64): u32 {
  return bytes > SECTION_BYTES ? <u32>((bytes + SECTION_BYTES - 1) / SECTION_BYTES) : 0;
}
/** Owner-log entry of a block of `bytes` held by the region owner. */
@inline function ownerEntry(bytes: u64): u64 {
  return logEntry(OWNER_REGION, 0, blockClass(bytes), LOG_HELD, blockSections(bytes));
}
/** Global chunk index of data offset `off`, or -1 when it is not a chunk of the data area. */
function chunkAt(off: u64): i64 {
  if (off < dataOff || off >= dataOff + <u64>nSections * SECTION_BYTES || ((off - dataOff) & (CHUNK_BYTES - 1)) != 0) return -1;
  return <i64>((off - dataOff) >> CHUNK_SHIFT);
}
/** True when the block at data offset `off` is HELD by the region owner as a block of `bytes`. */
function regionOwns(off: u64, bytes: u64): bool {
  const chunk = chunkAt(off);
  return chunk >= 0 && load64(logOff(<u32>chunk)) == ownerEntry(bytes);
}

// ------------------------------------------------------------------ buffers

/** Name argument of every call: written by the host, NUL padded here. */
const nameIn = memory.data(40);
/** Result of open/next: f64 data offset, f64 bytes, 40 name bytes. */
const out = memory.data(56);
/** One consistent copy of an entry (`readLive`). */
const entryCopy = memory.data(64);
/** 64 entries (4 KiB) of the directory, read in bulk by `scan`. */
const PAGE_ENTRIES: u32 = 64;
const page = memory.data(<i32>(PAGE_ENTRIES * REGION_ENTRY_BYTES));
/** Zeros for clearing new regions and the directory (16 KiB per host write). */
const ZERO_BYTES: u64 = 16384;
const zeros = memory.data(<i32>ZERO_BYTES);

/** Checks the `len`-byte name in `nameIn` (1..40 bytes, no NUL) and NUL pads it to 40. */
function takeName(len: u32): bool {
  if (len == 0 || len > REGION_NAME_MAX) return false;
  for (let k: u32 = 0; k < len; k++) if (load<u8>(nameIn + k) == 0) return false;
  memory.fill(nameIn + len, 0, REGION_NAME_MAX - len);
  return true;
}

/** True when the 40 name bytes at `p` are `nameIn`'s. */
@inline function nameIs(p: usize): bool {
  for (let k: u32 = 0; k < REGION_NAME_MAX; k += 8) if (load<u64>(p + k) != load<u64>(nameIn + k)) return false;
  return true;
}

/** Writes `len` zero bytes at pool offset `off`. */
function zeroPool(off: u64, len: u64): void {
  for (let done: u64 = 0; done < len; done += ZERO_BYTES) writeFrom(off + done, zeros, <u32>min(ZERO_BYTES, len - done));
}

// ------------------------------------------------------------ directory walk

/** The directory's offset for readers: 0 when there is none, or it is not finished. */
@inline function publishedDirectory(): u64 {
  const w = load64(SB_REGION_DIR);
  return (w & DIR_PENDING) != 0 ? 0 : w;
}

/**
 * First entry index >= `from` whose state is in the mask `want` (and, with
 * `byName`, whose name is `nameIn`), from bulk reads of the directory; -1
 * when there is none. Exact under the lock (nobody else writes entries); a
 * hint without it, which `findLive` then checks entry by entry.
 */
function scan(dir: u64, from: u32, want: u32, byName: bool): i32 {
  let i = from;
  while (i < REGION_ENTRIES) {
    const first = i & ~(PAGE_ENTRIES - 1);
    readInto(entryOff(dir, first), page, PAGE_ENTRIES * REGION_ENTRY_BYTES);
    for (; i < first + PAGE_ENTRIES; i++) {
      const p = page + <usize>((i - first) * REGION_ENTRY_BYTES);
      if (((1 << entryState(load<u64>(p))) & want) == 0) continue;
      if (byName && !nameIs(p + <usize>F_NAME)) continue;
      return <i32>i;
    }
  }
  return -1;
}

/**
 * Copies entry `i` into `entryCopy` if it is LIVE, without the lock: the
 * state word read before and after the copy must be the same LIVE word
 * (see the file comment). Returns false when the entry is not LIVE.
 */
function readLive(dir: u64, i: u32): bool {
  const off = entryOff(dir, i);
  let w = load64(off);
  while (entryState(w) == RS_LIVE) {
    readInto(off, entryCopy, REGION_ENTRY_BYTES);
    const again = load64(off);
    if (again == w) return true;
    w = again;
  }
  return false;
}

/** First LIVE entry >= `from` (named `nameIn` with `byName`), copied to `out`; its index, or -1. */
function findLive(dir: u64, from: u32, byName: bool): i32 {
  let i = from;
  while (i < REGION_ENTRIES) {
    const j = scan(dir, i, states(RS_LIVE), byName);
    if (j < 0) return -1;
    if (readLive(dir, <u32>j) && (!byName || nameIs(entryCopy + <usize>F_NAME))) {
      store<f64>(out, <f64>load<u64>(entryCopy + <usize>F_DATA));
      store<f64>(out + 8, <f64>load<u64>(entryCopy + <usize>F_BYTES));
      memory.copy(out + 16, entryCopy + <usize>F_NAME, REGION_NAME_MAX);
      return j;
    }
    i = <u32>j + 1;
  }
  return -1;
}

// ------------------------------------------------------ under the lock only

/**
 * Takes the directory lock for this client, waiting up to LOCK_WAIT_LEASES
 * leases for a live holder; repairs what a dead holder left. False: E_BUSY.
 */
function lockDirectory(): bool {
  if (!acquireLock(SB_REGION_LOCK, clientId, clientGen, LOCK_WAIT_LEASES * <f64>leaseMs())) return false;
  if (lockStolen) repair();
  return true;
}

/**
 * Undoes what a dead lock holder left half done (file comment, "Crash
 * argument"): finishes or forgets a PENDING directory, and sets every
 * CREATING or DESTROYING entry FREE, freeing its block if the region owner
 * holds it. Idempotent, so a repairer that dies is simply repaired after.
 */
function repair(): void {
  const w = load64(SB_REGION_DIR);
  if ((w & DIR_PENDING) != 0) {
    const dir = w & ~DIR_PENDING;
    store64(SB_REGION_DIR, regionOwns(dir, DIR_BYTES) ? dir : 0);
  }
  const dir = load64(SB_REGION_DIR);
  if (dir == 0) return;
  let i = scan(dir, 0, states(RS_CREATING, RS_DESTROYING), false);
  while (i >= 0) {
    releaseEntry(entryOff(dir, <u32>i));
    i = scan(dir, <u32>i + 1, states(RS_CREATING, RS_DESTROYING), false);
  }
}

/**
 * Entry at `off` (CREATING or DESTROYING) -> FREE: frees its block first
 * when the region owner holds it. Returns true when it freed one.
 */
function releaseEntry(off: u64): bool {
  const data = load64(off + F_DATA);
  let freed = false;
  if (data != 0 && regionOwns(data, load64(off + F_BYTES))) freed = freeChunk(<u32>chunkAt(data), true) == OK;
  store64(off + F_DATA, 0);
  store64(off, nextEntryWord(load64(off), RS_FREE));
  return freed;
}

/** Makes the directory (file comment); returns its offset or a negative status. */
function makeDirectory(): i64 {
  const chunk = allocClass(blockClass(DIR_BYTES));
  if (chunk < 0) return chunk;
  const dir = chunkOffset(<u32>chunk);
  zeroPool(dir, DIR_BYTES);
  store64(SB_REGION_DIR, dir | DIR_PENDING);
  if (!adoptBlock(<u32>chunk, blockClass(DIR_BYTES), 0, ownerEntry(DIR_BYTES))) {
    store64(SB_REGION_DIR, 0);
    return E_CORRUPT;
  }
  store64(SB_REGION_DIR, dir);
  return <i64>dir;
}

function createLocked(bytes: u64): f64 {
  let dir = <i64>load64(SB_REGION_DIR);
  if (DEBUG) assert((dir & <i64>DIR_PENDING) == 0, 'a PENDING directory word under a lock that was not stolen');
  if (dir == 0) dir = makeDirectory();
  if (dir < 0) return <f64>dir;
  if (scan(<u64>dir, 0, states(RS_CREATING, RS_LIVE, RS_DESTROYING), true) >= 0) return E_EXISTS;
  const i = scan(<u64>dir, 0, states(RS_FREE), false);
  if (i < 0) return E_EXHAUSTED;
  const off = entryOff(<u64>dir, <u32>i);
  store64(off + F_DATA, 0);
  const creating = nextEntryWord(load64(off), RS_CREATING);
  store64(off, creating);
  const cls = blockClass(bytes);
  const chunk = cls == CLASS_LARGE ? allocLarge(blockSections(bytes)) : allocClass(cls);
  if (chunk < 0) {
    store64(off, nextEntryWord(creating, RS_FREE));
    return <f64>chunk;
  }
  const data = chunkOffset(<u32>chunk);
  zeroPool(data, bytes);
  writeFrom(off + F_NAME, nameIn, REGION_NAME_MAX);
  store64(off + F_BYTES, bytes);
  store64(off + F_DATA, data);
  if (!adoptBlock(<u32>chunk, cls, blockSections(bytes), ownerEntry(bytes))) {
    // The block stopped being ours (someone freed it by its address): not a region.
    store64(off + F_DATA, 0);
    store64(off, nextEntryWord(creating, RS_FREE));
    return E_CORRUPT;
  }
  store64(off, nextEntryWord(creating, RS_LIVE));
  return <f64>data;
}

function destroyLocked(): i32 {
  const dir = load64(SB_REGION_DIR);
  if (dir == 0) return E_NOT_FOUND;
  const i = scan(dir, 0, states(RS_LIVE), true);
  if (i < 0) return E_NOT_FOUND;
  const off = entryOff(dir, <u32>i);
  store64(off, nextEntryWord(load64(off), RS_DESTROYING));
  return releaseEntry(off) ? OK : E_CORRUPT;
}

// ------------------------------------------------------------------ exports

/** Pointer to the 40-byte name buffer every region call reads its name from. */
export function regionNameBuffer(): usize {
  return nameIn;
}

/** Pointer to the result of `regionOpen` / `regionNext`: f64 data offset, f64 bytes, 40 name bytes (NUL padded). */
export function regionResult(): usize {
  return out;
}

/**
 * Creates region (name: `nameLen` bytes in the name buffer) of `bytes`
 * (1 .. the pool's data bytes), zeroed. Returns its data offset, or
 * E_INVALID_ARGUMENT, E_EXISTS, E_EXHAUSTED (no memory, or 1024 regions),
 * E_BUSY (the lock stayed held by a live client for two leases), E_CORRUPT,
 * E_NOT_ATTACHED.
 */
export function regionCreate(nameLen: u32, bytes: f64): f64 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (!takeName(nameLen) || !(bytes >= 1) || bytes != Math.floor(bytes)) return E_INVALID_ARGUMENT;
  if (bytes > <f64>(<u64>nSections * SECTION_BYTES)) return E_EXHAUSTED;
  if (!lockDirectory()) return lockFailure;
  const r = createLocked(<u64>bytes);
  releaseLock(SB_REGION_LOCK);
  return r;
}

/**
 * Destroys region (name in the name buffer) and frees its memory. Returns
 * OK, E_NOT_FOUND, E_INVALID_ARGUMENT, E_BUSY, E_NOT_ATTACHED, or E_CORRUPT
 * when its memory was no longer held by the region owner (the entry is
 * removed all the same).
 */
export function regionDestroy(nameLen: u32): i32 {
  if (clientId == 0) return E_NOT_ATTACHED;
  if (!takeName(nameLen)) return E_INVALID_ARGUMENT;
  if (!lockDirectory()) return lockFailure;
  const r = destroyLocked();
  releaseLock(SB_REGION_LOCK);
  return r;
}

/**
 * Looks region (name in the name buffer) up without the lock. Returns its
 * data offset, with offset, size and name in the result block, or
 * E_NOT_FOUND, E_INVALID_ARGUMENT, E_NOT_ATTACHED.
 */
export function regionOpen(nameLen: u32): f64 {
  if (!attached) return E_NOT_ATTACHED;
  if (!takeName(nameLen)) return E_INVALID_ARGUMENT;
  const dir = publishedDirectory();
  if (dir == 0) return E_NOT_FOUND;
  const i = findLive(dir, 0, true);
  return i < 0 ? E_NOT_FOUND : load<f64>(out);
}

/**
 * The first LIVE region at directory index >= `from`, without the lock:
 * returns its index (call again with index + 1), with it in the result
 * block, or E_NOT_FOUND when there is no more.
 */
export function regionNext(from: u32): i32 {
  if (!attached) return E_NOT_ATTACHED;
  const dir = publishedDirectory();
  if (dir == 0) return E_NOT_FOUND;
  const i = findLive(dir, from, false);
  return i < 0 ? E_NOT_FOUND : i;
}
