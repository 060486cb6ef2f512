/**
 * Pool geometry and the superblock (docs/design.md, "The pool").
 *
 * FineMem's units (OSDI '25, section 4.1): a chunk is 4 KiB, a span is 32
 * chunks (128 KiB), a section is 16 spans (2 MiB). Size class c is a block of
 * 4 KiB * 2^c, c = 0..9. Everything the allocator knows lives in the pool
 * itself, in this order:
 *
 *   offset 0           superblock (4 KiB)
 *   clientTableOff     client table: maxClients slots of 64 B (assembly/client.ts)
 *   sectionHdrOff      one 64-bit section header per section (assembly/section.ts)
 *   spanHdrOff         one 64-bit span header per span (assembly/span.ts)
 *   ownerLogOff        one 64-bit owner-log entry per chunk (assembly/ownerlog.ts)
 *   dataOff            the sections themselves, 4 KiB aligned
 *
 * Superblock, little-endian, byte offsets:
 *
 *     0  u64 magic        "DMEMPOOL"
 *     8  u32 version      LAYOUT_VERSION; any other value is refused
 *    12  u32 headerBytes  4096
 *    16  u64 poolBytes    size of the whole pool
 *    24  u32 nSections    number of data sections
 *    28  u32 maxClients   client-table slots (client ids 1..maxClients)
 *    32  u64 clientTableOff
 *    40  u64 sectionHdrOff
 *    48  u64 spanHdrOff
 *    56  u64 ownerLogOff
 *    64  u64 dataOff
 *    72  u32 chunkShift   12
 *    76  u32 spanChunks   32
 *    80  u32 sectionSpans 16
 *    84  u32 reserved
 *    88  u64 createdMs    wall clock at format (ms since the Unix epoch)
 *    96  u64 poolId       random id, chosen at format from the seed
 *   104  u64 leaseMs      client lease: a heartbeat older than this revokes
 *                         the client (assembly/client.ts); set at format,
 *                         changed by the server's --lease-ms
 *   112  u64 epoch        global epoch of delayed free (assembly/epoch.ts)
 *   120  u64 limboOff     delayed-free ring, 0 until first used (epoch.ts)
 *   128  u64 limboLock    lock of that ring (assembly/lock.ts)
 *   136  u64 regionDirOff region directory, 0 until first used (region.ts)
 *   144  u64 regionLock   lock of the region directory (assembly/lock.ts)
 *   152  .. 4095          zero
 *
 * The magic is written last by `format`, so a half-formatted pool reads as
 * "not a pool" rather than as a pool with garbage metadata.
 */
import { load64, readInto, store64 } from './imports';

export const CHUNK_SHIFT: u32 = 12;
export const CHUNK_BYTES: u64 = 1 << CHUNK_SHIFT;
export const SPAN_CHUNKS: u32 = 32;
export const SECTION_SPANS: u32 = 16;
export const SECTION_CHUNKS: u32 = SPAN_CHUNKS * SECTION_SPANS;
export const SECTION_BYTES: u64 = <u64>SECTION_CHUNKS << CHUNK_SHIFT;
/** Largest size class: 4 KiB * 2^9 = 2 MiB, one section. */
export const MAX_CLASS: u32 = 9;
/** Client slot size in bytes. */
export const CLIENT_SLOT_BYTES: u64 = 64;
/**
 * Client ids are 12 bits in every packed word; 0 means "nobody", and 4094,
 * 4095 are pool owners (assembly/ownerlog.ts), never clients.
 */
export const MAX_CLIENTS: u32 = 4093;
export const HEADER_BYTES: u64 = 4096;
/** Lease written by format (ms). */
export const DEFAULT_LEASE_MS: u64 = 1000;

/** "DMEMPOOL" read as a little-endian u64. */
export const MAGIC: u64 = 0x4C4F4F504D454D44;
/** Bumped on any change to the meaning of a byte of pool metadata. */
export const LAYOUT_VERSION: u32 = 5;

/** Superblock words used after format (see the table above). */
export const SB_EPOCH: u64 = 112;
export const SB_LIMBO: u64 = 120;
export const SB_LIMBO_LOCK: u64 = 128;
export const SB_REGION_DIR: u64 = 136;
export const SB_REGION_LOCK: u64 = 144;

/** Status codes shared by every export (docs/abi.md). */
export const OK: i32 = 0;
export const E_NOT_A_POOL: i32 = -1;
export const E_VERSION: i32 = -2;
export const E_CORRUPT: i32 = -3;
export const E_EXHAUSTED: i32 = -4;
export const E_INVALID_ADDRESS: i32 = -5;
export const E_DOUBLE_FREE: i32 = -6;
export const E_INVALID_ARGUMENT: i32 = -7;
export const E_CLIENT_TABLE_FULL: i32 = -8;
export const E_NOT_ATTACHED: i32 = -9;
/** A region of that name exists already. */
export const E_EXISTS: i32 = -10;
/** No region of that name. */
export const E_NOT_FOUND: i32 = -11;
/** A pool metadata lock stayed held by a live client past the wait limit. */
export const E_BUSY: i32 = -12;
/** This client's own lease was revoked: its host must fence it (LeaseExpiredError). */
export const E_LEASE_EXPIRED: i32 = -13;

// Geometry of the attached pool (set by format/attach, read everywhere).
export let poolBytes: u64 = 0;
export let nSections: u32 = 0;
export let maxClients: u32 = 0;
export let clientTableOff: u64 = 0;
export let sectionHdrOff: u64 = 0;
export let spanHdrOff: u64 = 0;
export let ownerLogOff: u64 = 0;
export let dataOff: u64 = 0;
export let attached: bool = false;

/** Byte offset of section `sec`'s header. */
@inline export function sectionHdr(sec: u32): u64 { return sectionHdrOff + (<u64>sec << 3); }
/** Byte offset of global span `span`'s header. */
@inline export function spanHdr(span: u32): u64 { return spanHdrOff + (<u64>span << 3); }
/** Byte offset of global chunk `chunk`'s owner-log entry. */
@inline export function logOff(chunk: u32): u64 { return ownerLogOff + (<u64>chunk << 3); }

@inline function alignUp(x: u64, a: u64): u64 {
  return (x + a - 1) & ~(a - 1);
}

/** Metadata bytes per section: its header, 16 span headers, 512 owner-log words. */
const META_PER_SECTION: u64 = 8 + <u64>SECTION_SPANS * 8 + <u64>SECTION_CHUNKS * 8;

/**
 * Computes the layout for a pool of `bytes` with `clients` slots into the
 * geometry globals. Returns the number of sections (0 if the pool is too
 * small to hold one section).
 */
export function planLayout(bytes: u64, clients: u32): u32 {
  const fixed = HEADER_BYTES + <u64>clients * CLIENT_SLOT_BYTES;
  if (bytes < fixed + META_PER_SECTION + SECTION_BYTES + CHUNK_BYTES) return 0;
  // Largest n with fixed + n * meta (aligned) + n * SECTION_BYTES <= bytes.
  let n = <u32>((bytes - fixed - CHUNK_BYTES) / (META_PER_SECTION + SECTION_BYTES));
  while (n > 0 && layoutEnd(fixed, n) > bytes) n--;
  if (n == 0) return 0;
  poolBytes = bytes;
  nSections = n;
  maxClients = clients;
  clientTableOff = HEADER_BYTES;
  sectionHdrOff = fixed;
  spanHdrOff = sectionHdrOff + <u64>n * 8;
  ownerLogOff = spanHdrOff + <u64>n * SECTION_SPANS * 8;
  dataOff = alignUp(ownerLogOff + <u64>n * SECTION_CHUNKS * 8, CHUNK_BYTES);
  return n;
}

function layoutEnd(fixed: u64, n: u32): u64 {
  const meta = alignUp(fixed + <u64>n * META_PER_SECTION, CHUNK_BYTES);
  return meta + <u64>n * SECTION_BYTES;
}

/** Writes every superblock field but the magic (written last by format). */
export function writeSuperblockBody(createdMs: u64, poolId: u64): void {
  store64(8, <u64>LAYOUT_VERSION | (HEADER_BYTES << 32));
  store64(16, poolBytes);
  store64(24, <u64>nSections | (<u64>maxClients << 32));
  store64(32, clientTableOff);
  store64(40, sectionHdrOff);
  store64(48, spanHdrOff);
  store64(56, ownerLogOff);
  store64(64, dataOff);
  store64(72, <u64>CHUNK_SHIFT | (<u64>SPAN_CHUNKS << 32));
  store64(80, <u64>SECTION_SPANS);
  store64(88, createdMs);
  store64(96, poolId);
  store64(104, DEFAULT_LEASE_MS);
}

/** Lease duration in ms (superblock offset 104). */
export function leaseMs(): u64 {
  return load64(104);
}

/** Sets the lease duration (ms >= 1). */
export function setLeaseMs(ms: u64): void {
  store64(104, ms);
}

export function writeMagic(): void {
  store64(0, MAGIC);
}

/** The superblock word that made the last `readSuperblock` return E_CORRUPT: its byte offset, and its value. */
export let corruptWord: u32 = 0;
export let corruptValue: u64 = 0;

/** Records superblock word `off` (value `v`) as the reason for E_CORRUPT; returns E_CORRUPT. */
function corrupt(off: u32, v: u64): i32 {
  corruptWord = off;
  corruptValue = v;
  return E_CORRUPT;
}

/** True when `off` is 0 or a 4 KiB aligned offset of the data area (with `lowBits` allowed set). */
@inline function dataOffsetOk(off: u64, lowBits: u64): bool {
  const o = off & ~lowBits;
  return off == 0 || (o >= dataOff && o < dataOff + <u64>nSections * SECTION_BYTES && (o & (CHUNK_BYTES - 1)) == 0);
}

/** True when `w` can be a metadata lock word (assembly/lock.ts): zero top bits, holder 0..maxClients. */
@inline function lockWordOk(w: u64): bool {
  return (w >> 50) == 0 && (<u32>w & 0xFFF) <= maxClients;
}

/**
 * Reads and checks the superblock of a pool of `transportBytes`, filling the
 * geometry globals. Returns OK, E_NOT_A_POOL (wrong magic), E_VERSION or
 * E_CORRUPT (a word that does not add up; `corruptWord` and `corruptValue`
 * say which and what it held: word 16 with the pool size when the medium is
 * shorter than the superblock says). Writes nothing. Every word is checked
 * (issue 9, finding 8): geometry against the layout it implies, the lease
 * against its legal range, the ring and region-directory offsets against
 * the data area, lock words against the client table, and the unused tail
 * of the superblock against zero.
 */
export function readSuperblock(transportBytes: u64): i32 {
  if (transportBytes < HEADER_BYTES) return E_NOT_A_POOL;
  if (load64(0) != MAGIC) return E_NOT_A_POOL;
  const w8 = load64(8);
  if (<u32>w8 != LAYOUT_VERSION) return E_VERSION;
  if ((w8 >> 32) != HEADER_BYTES) return corrupt(8, w8);
  const bytes = load64(16);
  const w24 = load64(24);
  const n = <u32>w24;
  const clients = <u32>(w24 >> 32);
  const geo = load64(72);
  if (<u32>geo != CHUNK_SHIFT || <u32>(geo >> 32) != SPAN_CHUNKS) return corrupt(72, geo);
  if (load64(80) != <u64>SECTION_SPANS) return corrupt(80, load64(80));
  if (bytes > transportBytes) return corrupt(16, bytes);
  if (clients == 0 || clients > MAX_CLIENTS) return corrupt(24, w24);
  if (planLayout(bytes, clients) != n || n == 0) return corrupt(24, w24);
  for (let off: u32 = 32; off <= 64; off += 8) {
    const want = off == 32 ? clientTableOff : off == 40 ? sectionHdrOff : off == 48 ? spanHdrOff : off == 56 ? ownerLogOff : dataOff;
    if (load64(off) != want) return corrupt(off, load64(off));
  }
  const lease = load64(104);
  if (lease < 10 || lease > 86400000) return corrupt(104, lease);
  if (!dataOffsetOk(load64(SB_LIMBO), 0)) return corrupt(<u32>SB_LIMBO, load64(SB_LIMBO));
  if (!lockWordOk(load64(SB_LIMBO_LOCK))) return corrupt(<u32>SB_LIMBO_LOCK, load64(SB_LIMBO_LOCK));
  if (!dataOffsetOk(load64(SB_REGION_DIR), 1)) return corrupt(<u32>SB_REGION_DIR, load64(SB_REGION_DIR));
  if (!lockWordOk(load64(SB_REGION_LOCK))) return corrupt(<u32>SB_REGION_LOCK, load64(SB_REGION_LOCK));
  readInto(SB_END, sbTail, <u32>(HEADER_BYTES - SB_END));
  for (let off: u32 = 0; off < <u32>(HEADER_BYTES - SB_END); off += 8) {
    const v = load<u64>(sbTail + off);
    if (v != 0) return corrupt(<u32>SB_END + off, v);
  }
  attached = true;
  return OK;
}

/** First byte after the last superblock word in use; the rest is zero. */
const SB_END: u64 = 152;
const sbTail = memory.data(<i32>(4096 - 152));

/** Layout version this build reads and writes. */
export function layoutVersion(): u32 {
  return LAYOUT_VERSION;
}

/** Smallest size class c with 4 KiB * 2^c >= bytes (bytes 1..2 MiB). */
export function classOfBytes(bytes: u64): u32 {
  const chunks = (bytes + CHUNK_BYTES - 1) >> CHUNK_SHIFT;
  return chunks <= 1 ? 0 : 64 - <u32>clz(chunks - 1);
}
