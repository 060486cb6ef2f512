/**
 * A page table: page number -> id (a cache slot in slots.ts, a near-tier
 * entry in tier.ts), where the owner keeps each id's page in a u32 array.
 * Open addressing with linear probing, Fibonacci hashing, load factor <= 1/2
 * (2..4 entries of i32 per id, -1 empty). Deletion shifts later entries of
 * the probe run back (Knuth, TAOCP vol. 3, 6.4, algorithm R), so there are
 * no tombstones and a lookup ends at the first empty entry.
 */
import { arenaAlloc } from './arena';

export const NO_PAGE: u32 = 0xFFFFFFFF;

export class PageTable {
  private entries: usize = 0;
  private pages: usize = 0;
  private mask: u32 = 0;
  private shift: u32 = 0;

  /** A table for `capacity` ids whose pages are at `pages` (u32 each); false when memory is short. */
  setup(capacity: u32, pages: usize): bool {
    let n: u32 = 16;
    while (n < capacity * 2) n <<= 1;
    const p = arenaAlloc(<usize>n << 2);
    if (p == 0) return false;
    this.entries = p;
    this.pages = pages;
    this.mask = n - 1;
    this.shift = 32 - ctz(n);
    for (let i: u32 = 0; i < n; i++) store<i32>(p + (<usize>i << 2), -1);
    return true;
  }

  @inline private home(page: u32): u32 { return (page * 0x9E3779B1) >> this.shift; }
  @inline private at(i: u32): i32 { return load<i32>(this.entries + (<usize>i << 2)); }
  @inline private set(i: u32, id: i32): void { store<i32>(this.entries + (<usize>i << 2), id); }
  @inline private pageOf(id: u32): u32 { return load<u32>(this.pages + (<usize>id << 2)); }

  /** The id whose page is `page`, or -1. */
  find(page: u32): i32 {
    let i = this.home(page);
    while (true) {
      const id = this.at(i);
      if (id < 0 || this.pageOf(<u32>id) == page) return id;
      i = (i + 1) & this.mask;
    }
  }

  /** Adds `id` (its page already set, not in the table). */
  insert(id: u32): void {
    let i = this.home(this.pageOf(id));
    while (this.at(i) >= 0) i = (i + 1) & this.mask;
    this.set(i, <i32>id);
  }

  /** Removes `id` (its page still set, in the table). */
  remove(id: u32): void {
    let i = this.home(this.pageOf(id));
    while (this.at(i) != <i32>id) i = (i + 1) & this.mask;
    // Algorithm R: move back every later entry of the run whose home is not
    // cyclically in (i, j].
    let j = i;
    while (true) {
      j = (j + 1) & this.mask;
      const e = this.at(j);
      if (e < 0) break;
      const h = this.home(this.pageOf(<u32>e));
      const between = i <= j ? (i < h && h <= j) : (i < h || h <= j);
      if (!between) {
        this.set(i, e);
        i = j;
      }
    }
    this.set(i, -1);
  }
}
