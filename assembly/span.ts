/**
 * Span header: one 64-bit word per span that holds the span's 32-chunk
 * allocation bitmap AND the commit log of the last operation on it, so one
 * CAS both allocates and records who did it (FineMem, OSDI '25, section 4.2;
 * docs/design.md invariant 1).
 *
 *    63       55 54    51 50    46 45 44 43          32 31                  0
 *   +-----------+--------+--------+-----+--------------+---------------------+
 *   |  seq:9    | class:4| chunk:5| op:2|  client:12   |  bitmap (chunk i =  |
 *   |           |        |        |     |              |  bit i, 1 = taken)  |
 *   +-----------+--------+--------+-----+--------------+---------------------+
 *
 *   op     NONE (fresh), ALLOC, FREE, SEAL
 *   client who made the last successful CAS (1..4095)
 *   chunk  first chunk of the block that op allocated or freed; for a block
 *          of whole spans (class 5..8), this span's index inside the block
 *   class  size class of that block
 *   seq    bumped by every CAS, so a word never repeats within 512 changes
 *
 * A SEALED span has bitmap = all ones and op = SEAL: to a chunk allocator it
 * looks full, so it is skipped with no special case. Spans are sealed while
 * their section is not in CHUNK mode (assembly/section.ts explains why), and
 * only the sealer (or a claimant that owns the section) unseals them.
 *
 * A span holding one block of whole spans (class 5..8) has bitmap = all ones,
 * op = ALLOC and class >= 5; nobody CASes it until it is freed, so its commit
 * log keeps naming the holder for the whole life of the block.
 */

export const OP_NONE: u32 = 0;
export const OP_ALLOC: u32 = 1;
export const OP_FREE: u32 = 2;
export const OP_SEAL: u32 = 3;

export const FULL_BITMAP: u32 = 0xFFFFFFFF;

@inline export function bitmapOf(w: u64): u32 { return <u32>w; }
@inline export function spanClient(w: u64): u32 { return <u32>(w >> 32) & 0xFFF; }
@inline export function spanOp(w: u64): u32 { return <u32>(w >> 44) & 3; }
@inline export function spanChunk(w: u64): u32 { return <u32>(w >> 46) & 31; }
@inline export function spanClass(w: u64): u32 { return <u32>(w >> 51) & 15; }
@inline export function spanSeq(w: u64): u32 { return <u32>(w >> 55); }

/** Packs a span header; `seq` is taken modulo 512. */
@inline export function spanWord(bitmap: u32, client: u32, op: u32, chunk: u32, cls: u32, seq: u32): u64 {
  return <u64>bitmap | (<u64>(client & 0xFFF) << 32) | (<u64>(op & 3) << 44)
    | (<u64>(chunk & 31) << 46) | (<u64>(cls & 15) << 51) | (<u64>(seq & 511) << 55);
}

/** The word after `w` with a new bitmap and commit log (seq bumped). */
@inline export function nextSpanWord(w: u64, bitmap: u32, client: u32, op: u32, chunk: u32, cls: u32): u64 {
  return spanWord(bitmap, client, op, chunk, cls, spanSeq(w) + 1);
}

@inline export function isSealed(w: u64): bool { return spanOp(w) == OP_SEAL; }

/** True when the span is unsealed and entirely free. */
@inline export function isEmptySpan(w: u64): bool { return bitmapOf(w) == 0 && !isSealed(w); }

/** True when the span holds (part of) a block of whole spans. */
@inline export function isWholeSpanBlock(w: u64): bool {
  return spanOp(w) == OP_ALLOC && spanClass(w) >= 5 && bitmapOf(w) == FULL_BITMAP;
}

/**
 * Finds a free, naturally aligned group of 2^cls chunks (cls 0..4) in
 * `bitmap`; returns the first chunk's index, or -1 when none is free.
 * Folding: after the loop, bit i of `m` is set iff chunks i..i+2^cls-1 are
 * all free; `ALIGN[cls]` keeps only multiples of 2^cls.
 */
export function findFreeGroup(bitmap: u32, cls: u32): i32 {
  let m = ~bitmap;
  for (let k: u32 = 0; k < cls; k++) m &= m >> (1 << k);
  m &= alignMask(cls);
  return m == 0 ? -1 : <i32>ctz(m);
}

/** Bits at multiples of 2^cls, cls 0..4. */
@inline function alignMask(cls: u32): u32 {
  switch (cls) {
    case 0: return 0xFFFFFFFF;
    case 1: return 0x55555555;
    case 2: return 0x11111111;
    case 3: return 0x01010101;
    default: return 0x00010001;
  }
}

export { groupMaskOf as groupMask } from './ownerlog';
