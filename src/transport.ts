/**
 * The transport interface (../shared/DESIGN.md, "Layers"): the only way the
 * Wasm core and the public API reach pool memory. One implementation per
 * medium: in-process memory (src/transports/memory.ts), CXL-style shared
 * memory (plugins/cxl-shm/), RDMA (plugins/rdma/), TCP (src/transports/).
 *
 * Offsets are byte offsets from the start of the pool, exact integers below
 * 2^53 (JS numbers, no BigInt on the addressing path). 64-bit words are
 * 8-byte aligned; their values are BigInt because that is what 64-bit
 * `Atomics` take and what Wasm i64 imports pass.
 *
 * Atomicity: `cas64` and `faa64` are atomic with respect to each other across
 * every process and host that reaches the same pool. `load64` never returns a
 * torn word on transports that can read 8 aligned bytes at once (shared
 * memory, RDMA); `store64` is a plain store, used only on words that no other
 * client may CAS concurrently (the concurrency argument is in
 * assembly/alloc.ts).
 */
export interface Transport {
  /** Short name of the medium, such as `'memory'` or `'cxl-shm'`. */
  readonly kind: string;
  /** Pool size in bytes. */
  readonly size: number;
  /** Atomic 64-bit load of the word at `offset` (bytes, 8-aligned). */
  load64(offset: number): bigint;
  /** Plain 64-bit store of `value` at `offset` (bytes, 8-aligned). */
  store64(offset: number, value: bigint): void;
  /** Atomic compare-and-swap; returns the word found (== `expected` on success). */
  cas64(offset: number, expected: bigint, desired: bigint): bigint;
  /** Atomic fetch-and-add (wrapping, 64-bit); returns the word before the add. */
  faa64(offset: number, delta: bigint): bigint;
  /** Copies `dst.length` bytes starting at `offset` into `dst`. */
  read(offset: number, dst: Uint8Array): void;
  /** Copies `src` into pool memory starting at `offset`. */
  write(offset: number, src: Uint8Array): void;
  /** Releases the medium (unmap, disconnect). Idempotent. */
  close(): void;
}
