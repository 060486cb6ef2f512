/**
 * Memory for the paging state: carved once from the core's heap at setup
 * (a space owns its core instance and never frees it). The core module's
 * memory has a fixed maximum (asconfig.json), so a request is checked by
 * growing memory first: it fails with 0 instead of trapping in the runtime.
 */

/** `bytes` of zeroed memory (16-aligned), or 0 when the module's memory cannot hold them. */
export function arenaAlloc(bytes: usize): usize {
  const probe = heap.alloc(8);
  heap.free(probe);
  const end = probe + bytes + 64;
  const have = <usize>memory.size() << 16;
  if (end > have) {
    const pages = <i32>((end - have + 0xFFFF) >> 16);
    if (memory.grow(pages) < 0) return 0;
  }
  const p = heap.alloc(bytes);
  memory.fill(p, 0, bytes);
  return p;
}
