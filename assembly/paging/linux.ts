/**
 * Linux's two-list page reclaim (mm/vmscan.c, mm/swap.c), ExtMem's default
 * policy (ExtMem, USENIX ATC '24): pages enter the inactive
 * list; a referenced inactive page that is used again is activated
 * (mark_page_accessed). Reclaim keeps the active list no longer than the
 * inactive one by moving active tails down (clearing their reference bit, a
 * referenced one is rotated instead, once), then takes the inactive tail:
 * referenced -> bit cleared and one more round on the inactive list, else
 * evicted. Pages used once (a scan) thus leave through the inactive list
 * and never displace the active one.
 *
 * Termination: each step of `linuxVictim` either evicts, or clears a
 * reference bit, or moves a slot whose bit is clear; after at most
 * 2 * slots steps every bit is clear and the inactive tail is evicted.
 */
import { F_ACTIVE, F_REF, addFlag, clearFlag, hasFlag } from './slots';
import { NIL, SlotList, setupLinks } from './list';

const DEBUG = !ASC_NO_ASSERT;

const active = new SlotList();
const inactive = new SlotList();

export function linuxSetup(slots: u32): bool {
  active.clear();
  inactive.clear();
  return setupLinks(slots);
}

export function linuxInsert(s: u32, used: bool): void {
  inactive.pushHead(s);
  if (used) addFlag(s, F_REF);
}

export function linuxTouch(s: u32): void {
  if (hasFlag(s, F_ACTIVE)) {
    addFlag(s, F_REF);
  } else if (hasFlag(s, F_REF)) {
    activate(s);
  } else {
    addFlag(s, F_REF);
  }
}

function activate(s: u32): void {
  inactive.unlink(s);
  clearFlag(s, F_REF);
  addFlag(s, F_ACTIVE);
  active.pushHead(s);
}

function deactivate(s: u32): void {
  active.unlink(s);
  clearFlag(s, F_ACTIVE);
  inactive.pushHead(s);
}

export function linuxVictim(): u32 {
  while (true) {
    // Refill: keep |active| <= |inactive| (shrink_active_list).
    while (active.count > inactive.count || (inactive.count == 0 && active.count > 0)) {
      const a = active.tail;
      if (hasFlag(a, F_REF) && inactive.count > 0) {
        clearFlag(a, F_REF);
        active.toHead(a);
      } else {
        clearFlag(a, F_REF);
        deactivate(a);
      }
    }
    const s = inactive.tail;
    if (DEBUG) assert(s != NIL);
    if (!hasFlag(s, F_REF)) return s;
    // Referenced once on the inactive list: one more round there
    // (page_check_references' PAGEREF_KEEP), not activation, so a page used
    // once by a scan never displaces the active list.
    clearFlag(s, F_REF);
    inactive.toHead(s);
  }
}

export function linuxRemove(s: u32): void {
  if (hasFlag(s, F_ACTIVE)) active.unlink(s);
  else inactive.unlink(s);
}
