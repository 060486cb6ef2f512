/**
 * Pool metadata locks: one 64-bit word in the superblock per structure that
 * changes rarely and in several words at once (the region directory, the
 * delayed-free ring). Allocation never takes a lock; these guard only
 * create/destroy of regions and the ring's head and tail.
 *
 *    63          50 49                    32 31                  12 11        0
 *   +--------------+------------------------+----------------------+----------+
 *   |  zero        |  seq:18                |  gen:18 (holder)     | holder:12|
 *   +--------------+------------------------+----------------------+----------+
 *     holder 0 = free. seq counts acquisitions, so a stale word never
 *     passes for the current one in a CAS.
 *
 * Acquire is a CAS from a free word. A held lock is stolen (CAS on the very
 * word seen) only when its holder can no longer act: its slot is FREE, or
 * RECOVERING, or holds a later generation, the same test as a recovery
 * takeover (src/monitor.ts). A holder that is LIVE or only REVOKED (maybe
 * stopped, maybe about to write) is waited for, up to `waitMs` of wall
 * clock, then the caller gets E_BUSY. Whoever steals a lock must repair what
 * a dead holder may have left half done; each structure's comment says how.
 */
import { SLOT_LIVE, SLOT_REVOKED, slotGen, slotOff, slotState, validClient } from './client';
import { cas64, load64, nowMs, store64 } from './imports';

@inline function holderOf(w: u64): u32 { return <u32>w & 0xFFF; }
@inline function genOf(w: u64): u32 { return (<u32>w >> 12) & 0x3FFFF; }
@inline function seqOf(w: u64): u32 { return <u32>(w >> 32) & 0x3FFFF; }
@inline function lockWord(holder: u32, gen: u32, seq: u32): u64 {
  return <u64>(holder & 0xFFF) | (<u64>(gen & 0x3FFFF) << 12) | (<u64>(seq & 0x3FFFF) << 32);
}

/** True when the holder named by lock word `w` can no longer act. */
function holderGone(w: u64): bool {
  const id = holderOf(w);
  if (!validClient(id)) return true;
  const s = load64(slotOff(id));
  if (slotGen(s) != genOf(w)) return true;
  const st = slotState(s);
  return st != SLOT_LIVE && st != SLOT_REVOKED;
}

/** Set by `acquireLock` when it stole the lock from a dead holder. */
export let lockStolen = false;

/**
 * Takes the lock at `off` for client (`id`, `gen`), waiting at most `waitMs`.
 * Returns true when held; `lockStolen` tells whether a dead holder's lock was
 * taken over (the caller then repairs its structure).
 */
export function acquireLock(off: u64, id: u32, gen: u32, waitMs: f64): bool {
  const deadline = nowMs() + waitMs;
  let w = load64(off);
  lockStolen = false;
  while (true) {
    const free = holderOf(w) == 0;
    if (free || holderGone(w)) {
      const old = cas64(off, w, lockWord(id, gen, seqOf(w) + 1));
      if (old == w) { lockStolen = !free; return true; }
      w = old;
      continue;
    }
    if (nowMs() > deadline) return false;
    w = load64(off);
  }
}

/** Releases the lock at `off` held by this caller (a plain store: only the holder writes a held lock). */
export function releaseLock(off: u64): void {
  store64(off, lockWord(0, 0, seqOf(load64(off))));
}
