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
 * clock, then the caller gets E_BUSY; the waiter renews its own lease
 * meanwhile (see acquireLock). Whoever steals a lock must repair what
 * a dead holder may have left half done; each structure's comment says how.
 */
import { SLOT_LIVE, SLOT_REVOKED, renewSlot, slotGen, slotOff, slotState, validClient } from './client';
import { cas64, load64, nowMs, store64 } from './imports';
import { E_BUSY, E_LEASE_EXPIRED } from './layout';

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
/** Why the last `acquireLock` failed: E_BUSY, or E_LEASE_EXPIRED when the waiter itself was revoked. */
export let lockFailure: i32 = E_BUSY;
/** Upper bound on every wait (ms), or -1 for none: a lease monitor sets a short one so a stuck lock never stalls its sweeps. */
let waitCap: f64 = -1;

/** Caps every later lock wait of this instance at `ms` (< 0: no cap). */
export function setLockWaitCap(ms: f64): void {
  waitCap = ms;
}

/** Renewals of the waiter's own lease while it waits: at most one per this many ms. */
const RENEW_EVERY_MS: f64 = 1;

/**
 * Takes the lock at `off` for client (`id`, `gen`), waiting at most `waitMs`.
 * Returns true when held; `lockStolen` tells whether a dead holder's lock was
 * taken over (the caller then repairs its structure).
 *
 * While it waits the caller renews its own lease (at most once a ms), so a
 * holder that is paused past its lease gets the holder revoked, never its
 * waiters (issue 9, finding 5); and it stops at once, with `lockFailure` =
 * E_LEASE_EXPIRED, if its own slot is no longer LIVE in `gen` (it was
 * revoked before it started waiting: its host then fences it).
 */
export function acquireLock(off: u64, id: u32, gen: u32, waitMs: f64): bool {
  const start = nowMs();
  const deadline = start + (waitCap >= 0 ? min(waitMs, waitCap) : waitMs);
  let renewed = start;
  let w = load64(off);
  lockStolen = false;
  lockFailure = E_BUSY;
  while (true) {
    const free = holderOf(w) == 0;
    if (free || holderGone(w)) {
      const old = cas64(off, w, lockWord(id, gen, seqOf(w) + 1));
      if (old == w) { lockStolen = !free; return true; }
      w = old;
      continue;
    }
    const now = nowMs();
    if (now > deadline) return false;
    if (now - renewed >= RENEW_EVERY_MS) {
      const s = load64(slotOff(id));
      if (slotState(s) != SLOT_LIVE || slotGen(s) != (gen & 0x3FFFF)) { lockFailure = E_LEASE_EXPIRED; return false; }
      renewSlot(id, <u64>now);
      renewed = now;
    }
    w = load64(off);
  }
}

/** Releases the lock at `off` held by this caller (a plain store: only the holder writes a held lock). */
export function releaseLock(off: u64): void {
  store64(off, lockWord(0, 0, seqOf(load64(off))));
}
