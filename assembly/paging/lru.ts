/**
 * Least recently used: one list, hits move to the head, the tail is evicted.
 * The stack algorithm of Mattson et al. (IBM Systems Journal, 1970).
 */
import { SlotList, setupLinks } from './list';

const order = new SlotList();

export function lruSetup(slots: u32): bool {
  order.clear();
  return setupLinks(slots);
}
export function lruInsert(s: u32, used: bool): void { order.pushHead(s); }
export function lruTouch(s: u32): void { order.toHead(s); }
export function lruVictim(): u32 { return order.tail; }
export function lruRemove(s: u32): void { order.unlink(s); }
