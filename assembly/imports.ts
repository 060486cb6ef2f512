/**
 * The core's only window on the world (docs/abi.md). Every access to pool
 * memory is one of these calls, answered by the host's transport; the core
 * has no other source of input but its arguments and the seed, which makes
 * it deterministic (docs/design.md, invariant 4).
 *
 * Offsets are byte offsets into the pool, passed as f64 holding an exact
 * integer below 2^53 (so a JS host needs no BigInt for addressing); 64-bit
 * words are i64. Each call is counted in `transportOps` so benchmarks can
 * report remote operations per allocation (the MIND study's metric).
 *
 * Direct window: a host that can map pool bytes [0, directBytes) into this
 * instance's own linear memory (at byte `directBase`, the cxl-shm plugin
 * does it with mmap MAP_FIXED over the memory's pages: docs/abi.md, "Direct
 * window") says so with `setDirectWindow`; accesses inside that range are
 * then Wasm loads, stores and atomics on the mapping, with no import call.
 * The words read are the same ones the imports would have answered, and
 * the atomics are the same single locked instructions on the same physical
 * memory, so results and the protocol are unchanged; only the path is.
 */

/** Atomic 64-bit load of the 8-aligned word at `offset`. */
@external("dmem", "load64")
declare function host_load64(offset: f64): u64;
/** Plain 64-bit store. */
@external("dmem", "store64")
declare function host_store64(offset: f64, value: u64): void;
/** Atomic compare-and-swap; returns the word found (== expected on success). */
@external("dmem", "cas64")
declare function host_cas64(offset: f64, expected: u64, desired: u64): u64;
/** Atomic fetch-and-add; returns the word before the add. */
@external("dmem", "faa64")
declare function host_faa64(offset: f64, delta: u64): u64;
/** Copies `len` pool bytes at `offset` into core memory at `ptr`. */
@external("dmem", "read")
declare function host_read(offset: f64, ptr: usize, len: u32): void;
/** Copies `len` bytes of core memory at `ptr` into the pool at `offset`. */
@external("dmem", "write")
declare function host_write(offset: f64, ptr: usize, len: u32): void;
/** Wall-clock time in milliseconds since the Unix epoch (for leases). */
@external("dmem", "now")
declare function host_now(): f64;

/** Where pool byte 0 lies in this instance's memory, and how many pool bytes from 0 lie there (0: none, every access is an import). */
export let directBase: usize = 0;
export let directBytes: u64 = 0;
/** directBytes as an f64, for callers that compare an f64 offset. */
export let directLimit: f64 = 0;

/**
 * The host mapped pool bytes [0, bytes) at byte `base` of this instance's
 * memory (`bytes` 0: it unmapped them; every access is an import again).
 * `base` and `bytes` are multiples of 8 and base + bytes fits the memory.
 */
export function setDirectWindow(base: usize, bytes: u64): void {
  directBase = base;
  directBytes = bytes;
  directLimit = <f64>bytes;
}

/** Transport operations issued since the last `resetOps()`. */
export let transportOps: u64 = 0;
/** CAS operations issued (successful or not) since start. */
export let casCount: u64 = 0;

/** Counts `ops` pool accesses, `cas` of them CASes, made directly on the direct window by a caller (heap.ts). */
@inline export function countDirect(ops: u64, cas: u64): void {
  transportOps += ops;
  casCount += cas;
}

@inline export function load64(offset: u64): u64 {
  transportOps++;
  if (offset < directBytes) return atomic.load<u64>(directBase + <usize>offset);
  return host_load64(<f64>offset);
}

@inline export function store64(offset: u64, value: u64): void {
  transportOps++;
  if (offset < directBytes) { atomic.store<u64>(directBase + <usize>offset, value); return; }
  host_store64(<f64>offset, value);
}

@inline export function cas64(offset: u64, expected: u64, desired: u64): u64 {
  transportOps++;
  casCount++;
  if (offset < directBytes) return atomic.cmpxchg<u64>(directBase + <usize>offset, expected, desired);
  return host_cas64(<f64>offset, expected, desired);
}

@inline export function faa64(offset: u64, delta: u64): u64 {
  transportOps++;
  if (offset < directBytes) return atomic.add<u64>(directBase + <usize>offset, delta);
  return host_faa64(<f64>offset, delta);
}

/** Bulk copy of pool bytes into core memory (metadata scans only). */
@inline export function readInto(offset: u64, ptr: usize, len: u32): void {
  transportOps++;
  if (offset + <u64>len <= directBytes) { memory.copy(ptr, directBase + <usize>offset, len); return; }
  host_read(<f64>offset, ptr, len);
}

/** Bulk copy of core memory into the pool (formatting, zeroing new slabs, rings and regions, slab tags). */
@inline export function writeFrom(offset: u64, ptr: usize, len: u32): void {
  transportOps++;
  if (offset + <u64>len <= directBytes) { memory.copy(directBase + <usize>offset, ptr, len); return; }
  host_write(<f64>offset, ptr, len);
}

@inline export function nowMs(): f64 {
  return host_now();
}
