/**
 * CLOCK (second chance; Corbató, 1968): slots on a circle with a hand and a
 * reference bit each. A hit sets the bit; the hand clears set bits as it
 * passes and stops at the first clear one, which is evicted. The hand goes
 * round at most once plus one slot, since it clears what it passes.
 */
import { F_REF, addFlag, clearFlag, hasFlag, nSlots } from './slots';

let hand: u32 = 0;

export function clockSetup(slots: u32): bool {
  hand = 0;
  return true;
}
export function clockInsert(s: u32, used: bool): void {
  if (used) addFlag(s, F_REF);
}
export function clockTouch(s: u32): void { addFlag(s, F_REF); }
export function clockVictim(): u32 {
  while (true) {
    const s = hand;
    hand = hand + 1 == nSlots ? 0 : hand + 1;
    if (!hasFlag(s, F_REF)) return s;
    clearFlag(s, F_REF);
  }
}
export function clockRemove(s: u32): void {}
