/**
 * The "one-sided array" baseline allocator of the allocator study (issue 14):
 * FineMem's "cxl" baseline, in the style of CXL-SHM. Every 4 KiB chunk of
 * the pool has one 8 B header word; a block of 2^c chunks is taken by
 * reading the 2^c headers of a candidate range (one bulk read) and, when all
 * are free, claiming them with one CAS per chunk, rolling the claimed ones
 * back when a CAS loses. There is no bitmap, no span or section summary: the
 * cost of a search grows with the occupied part of the pool and with the
 * block size, which is what the study measures against dmem.
 *
 * It lives in the same Wasm module as dmem's core and reaches the pool only
 * through the same transport imports (assembly/imports.ts), so transport
 * operations are counted the same way. Its pool has its own superblock
 * magic ("DMEMOA01"), so dmem never reads an onesided pool as its own and
 * `oaAttach` refuses a dmem pool (E_NOT_A_POOL).
 *
 * Pool layout (byte offsets):
 *
 *   0      superblock: magic u64 | version u64 | chunks u64 | data offset u64
 *   4096   headers: one u64 per chunk, chunk i at 4096 + 8 i
 *   data   chunks: chunk i at data + 4096 i (data is 4 KiB aligned)
 *
 * Header word (0 = free):
 *
 *   63  62  61..52  51..48  47..32     31..0
 *   U   H   0       class   client id  sequence of this client's allocation
 *
 *   U: used; H: head (the first chunk of a block; the others are tails).
 *
 * Concurrency argument: a chunk belongs to whoever moved its header from 0
 * to a non-zero word by CAS; nobody else writes a non-zero header, so a
 * rollback (CAS own word -> 0) and a free's tail release cannot clobber a
 * rival's claim. A block is whole once every one of its headers carries the
 * allocator's word; a rival whose range overlaps loses at least one CAS and
 * rolls back. A free first CASes the head from its observed word to 0, so of
 * two racing frees of one block exactly one wins (the other sees
 * DOUBLE_FREE); only the winner then releases the tails. Between the head
 * release and the tail release an allocator may read the range as partly
 * used and move on, or CAS the head and then lose on a tail and roll back:
 * a retry, never a double allocation.
 */
import { load64, cas64, store64, readInto, transportOps } from '../imports';
import { E_DOUBLE_FREE, E_EXHAUSTED, E_INVALID_ADDRESS, E_INVALID_ARGUMENT, E_NOT_A_POOL, E_NOT_ATTACHED, OK } from '../layout';

/** "DMEMOA01", little-endian. */
const OA_MAGIC: u64 = 0x3130414F4D454D44;
const OA_VERSION: u64 = 1;
const OA_CHUNK: u64 = 4096;
const OA_HEADERS: u64 = 4096;
/** Largest class: 2^13 chunks = 32 MiB (the scratch buffer holds its headers). */
const OA_MAX_CLASS: i32 = 13;
const USED: u64 = 1 << 63;
const HEAD: u64 = 1 << 62;

/** Headers of one candidate range, read in one bulk read. */
const scratch: usize = memory.data(8 << OA_MAX_CLASS);

let chunks: u64 = 0;
let dataOff: u64 = 0;
let client: u64 = 0;
let seq: u64 = 0;
let cursor: u64 = 0;
let rng: u64 = 0x9E3779B97F4A7C15;

// Counters (since attach): allocations, frees, transport operations spent in
// each, CAS issued, CAS lost (retries) and the most retries of one allocation.
let nAllocs: u64 = 0;
let nFrees: u64 = 0;
let opsAlloc: u64 = 0;
let opsFree: u64 = 0;
let nRetries: u64 = 0;
let maxRetries: u64 = 0;
let nCas: u64 = 0;

function nextRandom(): u64 {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/** Data offset for a pool of `bytes`: headers for every chunk that fits after them. */
function layoutFor(bytes: u64): void {
  // chunks * (4096 + 8) + 4096 (superblock) + up to 4095 (alignment) <= bytes
  const usable = bytes > OA_HEADERS + OA_CHUNK ? bytes - OA_HEADERS - OA_CHUNK : 0;
  chunks = usable / (OA_CHUNK + 8);
  dataOff = (OA_HEADERS + chunks * 8 + OA_CHUNK - 1) & ~(OA_CHUNK - 1);
}

/**
 * Formats a pool of `bytes` bytes (headers must read as zero: a fresh sparse
 * file or zeroed memory). Returns the number of chunks, or E_INVALID_ARGUMENT
 * when the pool holds none.
 */
export function oaFormat(bytes: f64): f64 {
  layoutFor(<u64>bytes);
  if (chunks == 0) return E_INVALID_ARGUMENT;
  store64(8, OA_VERSION);
  store64(16, chunks);
  store64(24, dataOff);
  store64(0, OA_MAGIC);
  return <f64>chunks;
}

/**
 * Attaches to a formatted pool as client `id` (1..65535; identifies the
 * owner in headers) with PRNG `seed` (the starting cursor). Returns OK,
 * E_NOT_A_POOL (no onesided magic, e.g. a dmem pool) or E_INVALID_ARGUMENT.
 */
export function oaAttach(bytes: f64, id: i32, seed: i64): i32 {
  if (id < 1 || id > 0xFFFF) return E_INVALID_ARGUMENT;
  if (bytes < <f64>(OA_HEADERS + OA_CHUNK)) return E_NOT_A_POOL;
  if (load64(0) != OA_MAGIC || load64(8) != OA_VERSION) return E_NOT_A_POOL;
  layoutFor(<u64>bytes);
  if (load64(16) != chunks || load64(24) != dataOff) return E_NOT_A_POOL;
  client = <u64>id;
  rng = <u64>seed | 1;
  cursor = nextRandom() % chunks;
  seq = 0;
  nAllocs = 0; nFrees = 0; opsAlloc = 0; opsFree = 0; nRetries = 0; maxRetries = 0; nCas = 0;
  return OK;
}

/** Releases `n` headers from `base` that carry `word` (our own rollback). */
function release(base: u64, n: u64, word: u64): void {
  for (let j: u64 = 0; j < n; j++) {
    nCas++;
    cas64(OA_HEADERS + (base + j) * 8, word, 0);
  }
}

/**
 * Allocates 2^c chunks (c 0..13). Returns the block's byte offset in the
 * pool, E_EXHAUSTED after one whole pass over the candidate ranges found
 * none free, E_INVALID_ARGUMENT for a bad class, E_NOT_ATTACHED.
 */
export function oaAlloc(c: i32): f64 {
  if (client == 0) return E_NOT_ATTACHED;
  if (c < 0 || c > OA_MAX_CLASS) return E_INVALID_ARGUMENT;
  const ops0 = transportOps;
  const n: u64 = (<u64>1) << c;
  const candidates = chunks >> c;
  if (candidates == 0) return E_EXHAUSTED;
  const word = USED | (<u64>c << 48) | (client << 32) | (++seq & 0xFFFFFFFF);
  let retries: u64 = 0;
  let idx = (cursor >> c) % candidates;
  for (let k: u64 = 0; k < candidates; k++, idx = idx + 1 == candidates ? 0 : idx + 1) {
    const base = idx << c;
    readInto(OA_HEADERS + base * 8, scratch, <u32>(n * 8));
    let free = true;
    for (let j: u64 = 0; j < n; j++) {
      if (load<u64>(scratch + <usize>(j * 8)) != 0) { free = false; break; }
    }
    if (!free) continue;
    let taken: u64 = 0;
    while (taken < n) {
      nCas++;
      const w = taken == 0 ? word | HEAD : word;
      if (cas64(OA_HEADERS + (base + taken) * 8, 0, w) != 0) break;
      taken++;
    }
    if (taken == n) {
      cursor = (base + n) % chunks;
      nAllocs++;
      if (retries > maxRetries) maxRetries = retries;
      opsAlloc += transportOps - ops0;
      return <f64>(dataOff + base * OA_CHUNK);
    }
    // Lost a CAS: give back what we took (head first, it carries HEAD).
    retries++;
    nRetries++;
    if (taken > 0) {
      nCas++;
      cas64(OA_HEADERS + base * 8, word | HEAD, 0);
      release(base + 1, taken - 1, word);
    }
  }
  if (retries > maxRetries) maxRetries = retries;
  opsAlloc += transportOps - ops0;
  return E_EXHAUSTED;
}

/** Allocates at least `bytes` (1 .. 32 MiB): 2^c chunks, c the smallest that fits. */
export function oaAllocBytes(bytes: f64): f64 {
  if (!(bytes >= 1) || bytes > <f64>(OA_CHUNK << OA_MAX_CLASS) || bytes != Math.floor(bytes)) return E_INVALID_ARGUMENT;
  const n = (<u64>bytes + OA_CHUNK - 1) / OA_CHUNK;
  const c = n <= 1 ? 0 : 64 - <i32>clz(n - 1);
  return oaAlloc(c);
}

/**
 * Frees the block at byte offset `offset`. Returns OK, E_INVALID_ADDRESS
 * (not a chunk of the data area, or a tail chunk), E_DOUBLE_FREE (the head
 * is free, or a racing free won it), E_NOT_ATTACHED.
 */
export function oaFree(offset: f64): i32 {
  if (client == 0) return E_NOT_ATTACHED;
  if (!(offset >= <f64>dataOff) || offset != Math.floor(offset)) return E_INVALID_ADDRESS;
  const rel = <u64>offset - dataOff;
  if (rel % OA_CHUNK != 0 || rel / OA_CHUNK >= chunks) return E_INVALID_ADDRESS;
  const ops0 = transportOps;
  const index = rel / OA_CHUNK;
  const h = load64(OA_HEADERS + index * 8);
  let status: i32 = OK;
  if (h == 0) status = E_DOUBLE_FREE;
  else if ((h & HEAD) == 0) status = E_INVALID_ADDRESS;
  else {
    nCas++;
    if (cas64(OA_HEADERS + index * 8, h, 0) != h) status = E_DOUBLE_FREE;
    else {
      const c = <i32>((h >> 48) & 0xF);
      release(index + 1, ((<u64>1) << c) - 1, h & ~HEAD);
      nFrees++;
    }
  }
  opsFree += transportOps - ops0;
  return status;
}

/**
 * Checks that [offset, offset + len) lies inside one allocated block.
 * Returns OK or E_INVALID_ADDRESS (the bench's read/write guard).
 */
export function oaCheck(offset: f64, len: f64): i32 {
  if (client == 0) return E_NOT_ATTACHED;
  if (!(offset >= <f64>dataOff) || offset != Math.floor(offset) || !(len >= 0)) return E_INVALID_ADDRESS;
  const rel = <u64>offset - dataOff;
  const index = rel / OA_CHUNK;
  if (index >= chunks) return E_INVALID_ADDRESS;
  // Walk back to the head: tails carry the class, the head sits at the class alignment.
  const h = load64(OA_HEADERS + index * 8);
  if (h == 0) return E_INVALID_ADDRESS;
  const c = <i32>((h >> 48) & 0xF);
  const head = (index >> c) << c;
  const hw = head == index ? h : load64(OA_HEADERS + head * 8);
  if ((hw & HEAD) == 0 || (hw & ~HEAD) != (h & ~HEAD)) return E_INVALID_ADDRESS;
  const end = dataOff + (head + ((<u64>1) << c)) * OA_CHUNK;
  return <u64>offset + <u64>len <= end ? OK : E_INVALID_ADDRESS;
}

/**
 * Counter `i` of this client: 0 allocs, 1 frees, 2 transport ops in allocs,
 * 3 in frees, 4 CAS retries, 5 most retries of one allocation, 6 CAS issued,
 * 7 chunks of the pool, 8 data offset.
 */
export function oaStat(i: i32): f64 {
  switch (i) {
    case 0: return <f64>nAllocs;
    case 1: return <f64>nFrees;
    case 2: return <f64>opsAlloc;
    case 3: return <f64>opsFree;
    case 4: return <f64>nRetries;
    case 5: return <f64>maxRetries;
    case 6: return <f64>nCas;
    case 7: return <f64>chunks;
    case 8: return <f64>dataOff;
    default: return -1;
  }
}

/** Chunks whose header is non-zero (a census: one bulk read per 8192 headers). */
export function oaHeldChunks(): f64 {
  let held: u64 = 0;
  const per: u64 = (<u64>1) << OA_MAX_CLASS;
  for (let base: u64 = 0; base < chunks; base += per) {
    const n = chunks - base < per ? chunks - base : per;
    readInto(OA_HEADERS + base * 8, scratch, <u32>(n * 8));
    for (let j: u64 = 0; j < n; j++) if (load<u64>(scratch + <usize>(j * 8)) != 0) held++;
  }
  return <f64>held;
}

/** Detaches (the core keeps no per-client state in the pool). */
export function oaDetach(): void {
  client = 0;
}
