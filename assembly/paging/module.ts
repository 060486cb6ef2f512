/**
 * The paging module's entry (build/paging.wasm; assembly/paging/asconfig.json):
 * the page-cache exports of index.ts in a module of their own, so that a
 * space's bookkeeping is bounded by its own memory (up to 1 GiB, about
 * 2^24 slots = a 64 GiB cache) and not by the allocator core's 1 MiB
 * (asconfig.json), and a space over a pool with no transport in this
 * process (tcp) needs no allocator core at all. The allocator core
 * (assembly/index.ts) does not carry them (docs/paging.md lists them).
 */
export * from './index';
