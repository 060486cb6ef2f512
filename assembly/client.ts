/**
 * Client table: one 64-byte slot per client; a client's id is its slot index
 * + 1 (ids are 12 bits in every commit log, 0 = nobody).
 *
 *   +0  owner word, claimed and released only by CAS:
 *
 *        63                              32 31      2 1     0
 *       +----------------------------------+---------+-------+
 *       |  pid:32                          |  gen:30 |state:2|
 *       +----------------------------------+---------+-------+
 *        state  FREE, LIVE, RECOVERING (a monitor is reclaiming it)
 *        gen    bumped on every claim, so a stale CAS on a reused slot fails
 *
 *   +8  lease heartbeat: wall clock of the last renewal (ms since the epoch)
 *   +16 host id (a hash of the host name; with pid, who to ask if in doubt)
 *   +24 epoch (reserved for epoch-based delayed free)
 *   +32 .. +63 reserved, zero
 *
 * Concurrency: two clients racing for one slot both CAS the owner word from
 * the FREE value they read; one wins, the other moves on to the next slot.
 * Only the owner stores its heartbeat and host id.
 */
import { cas64, load64, store64 } from './imports';
import { CLIENT_SLOT_BYTES, E_CLIENT_TABLE_FULL, clientTableOff, maxClients } from './layout';

export const SLOT_FREE: u32 = 0;
export const SLOT_LIVE: u32 = 1;
export const SLOT_RECOVERING: u32 = 2;

@inline export function slotState(w: u64): u32 { return <u32>w & 3; }
@inline export function slotGen(w: u64): u32 { return (<u32>w) >> 2; }
@inline export function slotPid(w: u64): u32 { return <u32>(w >> 32); }
@inline export function slotWord(state: u32, gen: u32, pid: u32): u64 {
  return <u64>((state & 3) | (gen << 2)) | (<u64>pid << 32);
}

/** Byte offset of client `id`'s slot (id 1..maxClients). */
@inline export function slotOff(id: u32): u64 {
  return clientTableOff + <u64>(id - 1) * CLIENT_SLOT_BYTES;
}

/**
 * Claims a free slot, scanning from `start`; returns the client id, or
 * E_CLIENT_TABLE_FULL.
 */
export function claimSlot(start: u32, pid: u32, hostId: u64, nowMs: u64): i32 {
  for (let i: u32 = 0; i < maxClients; i++) {
    const id = (start + i) % maxClients + 1;
    const off = slotOff(id);
    let w = load64(off);
    if (slotState(w) != SLOT_FREE) continue;
    const old = cas64(off, w, slotWord(SLOT_LIVE, slotGen(w) + 1, pid));
    if (old != w) continue;
    store64(off + 8, nowMs);
    store64(off + 16, hostId);
    store64(off + 24, 0);
    return <i32>id;
  }
  return E_CLIENT_TABLE_FULL;
}

/** Renews client `id`'s lease heartbeat. */
export function renewSlot(id: u32, nowMs: u64): void {
  store64(slotOff(id) + 8, nowMs);
}

/** Releases client `id`'s slot (gen kept so a stale claim CAS fails). */
export function releaseSlot(id: u32): bool {
  const off = slotOff(id);
  const w = load64(off);
  if (slotState(w) != SLOT_LIVE) return false;
  return cas64(off, w, slotWord(SLOT_FREE, slotGen(w), 0)) == w;
}
