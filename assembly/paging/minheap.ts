/**
 * A binary min-heap of ids 0..capacity-1 ordered by an f64 key array that
 * the owner keeps (heat.ts: slot keys; tier.ts: near-page keys). `pos`
 * records each id's index in the heap (-1: absent), so an id can be removed
 * or re-sifted after its key changed in O(log n). Ties keep the order of the
 * operations, which are deterministic, so the heap is too.
 */
import { arenaAlloc } from './arena';

const DEBUG = !ASC_NO_ASSERT;

export class MinHeap {
  size: u32 = 0;
  private items: usize = 0;
  private pos: usize = 0;
  private keys: usize = 0;

  /** Arrays for `capacity` ids keyed by the f64 array at `keys`; false when memory is short. */
  setup(capacity: u32, keys: usize): bool {
    const p = arenaAlloc(<usize>capacity * 8);
    if (p == 0) return false;
    this.items = p;
    this.pos = p + (<usize>capacity << 2);
    this.keys = keys;
    this.size = 0;
    for (let i: u32 = 0; i < capacity; i++) store<i32>(this.pos + (<usize>i << 2), -1);
    return true;
  }

  @inline private key(id: u32): f64 { return load<f64>(this.keys + (<usize>id << 3)); }
  @inline private at(i: u32): u32 { return load<u32>(this.items + (<usize>i << 2)); }
  @inline private put(i: u32, id: u32): void {
    store<u32>(this.items + (<usize>i << 2), id);
    store<i32>(this.pos + (<usize>id << 2), <i32>i);
  }

  /** True when `id` is in the heap. */
  has(id: u32): bool { return load<i32>(this.pos + (<usize>id << 2)) >= 0; }

  /** The id of least key; the heap must not be empty. */
  min(): u32 { return this.at(0); }

  push(id: u32): void {
    if (DEBUG) assert(!this.has(id));
    this.put(this.size, id);
    this.size++;
    this.up(this.size - 1);
  }

  /** Removes `id` (present). */
  remove(id: u32): void {
    const i = <u32>load<i32>(this.pos + (<usize>id << 2));
    this.size--;
    store<i32>(this.pos + (<usize>id << 2), -1);
    if (i == this.size) return;
    this.put(i, this.at(this.size));
    this.fix(i);
  }

  /** Restores order after `id`'s key changed. */
  update(id: u32): void {
    this.fix(<u32>load<i32>(this.pos + (<usize>id << 2)));
  }

  private fix(i: u32): void {
    if (i > 0 && this.key(this.at(i)) < this.key(this.at((i - 1) >> 1))) this.up(i);
    else this.down(i);
  }

  private up(i: u32): void {
    const id = this.at(i);
    const k = this.key(id);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = this.at(parent);
      if (this.key(p) <= k) break;
      this.put(i, p);
      i = parent;
    }
    this.put(i, id);
  }

  private down(i: u32): void {
    const id = this.at(i);
    const k = this.key(id);
    for (;;) {
      let c: u32 = 2 * i + 1;
      if (c >= this.size) break;
      if (c + 1 < this.size && this.key(this.at(c + 1)) < this.key(this.at(c))) c++;
      const child = this.at(c);
      if (this.key(child) >= k) break;
      this.put(i, child);
      i = c;
    }
    this.put(i, id);
  }
}
