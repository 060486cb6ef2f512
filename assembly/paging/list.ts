/**
 * Intrusive doubly linked lists of cache slots (lru.ts uses one, linux.ts
 * two). Every slot is on at most one list at a time; `prev`/`next` are
 * shared arrays of u32 with NIL as the end marker. Head = most recently
 * inserted, tail = oldest.
 */
import { arenaAlloc } from './arena';

export const NIL: u32 = 0xFFFFFFFF;

let prevArr: usize = 0;
let nextArr: usize = 0;

/** Link arrays for `slots` slots; false when memory is short. */
export function setupLinks(slots: u32): bool {
  const p = arenaAlloc(<usize>slots * 8);
  if (p == 0) return false;
  prevArr = p;
  nextArr = p + (<usize>slots << 2);
  return true;
}

@inline function prev(s: u32): u32 { return load<u32>(prevArr + (<usize>s << 2)); }
@inline function next(s: u32): u32 { return load<u32>(nextArr + (<usize>s << 2)); }
@inline function setPrev(s: u32, v: u32): void { store<u32>(prevArr + (<usize>s << 2), v); }
@inline function setNext(s: u32, v: u32): void { store<u32>(nextArr + (<usize>s << 2), v); }

export class SlotList {
  head: u32 = NIL;
  tail: u32 = NIL;
  count: u32 = 0;

  clear(): void {
    this.head = NIL;
    this.tail = NIL;
    this.count = 0;
  }

  /** Inserts slot `s` (on no list) at the head. */
  pushHead(s: u32): void {
    setPrev(s, NIL);
    setNext(s, this.head);
    if (this.head != NIL) setPrev(this.head, s);
    else this.tail = s;
    this.head = s;
    this.count++;
  }

  /** Unlinks slot `s`, which is on this list. */
  unlink(s: u32): void {
    const p = prev(s);
    const n = next(s);
    if (p != NIL) setNext(p, n);
    else this.head = n;
    if (n != NIL) setPrev(n, p);
    else this.tail = p;
    this.count--;
  }

  /** Moves slot `s` (on this list) to the head. */
  toHead(s: u32): void {
    if (this.head == s) return;
    this.unlink(s);
    this.pushHead(s);
  }
}
