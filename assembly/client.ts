/**
 * Client table: one 64-byte slot per client; a client's id is its slot index
 * + 1 (ids are 12 bits in every commit log, 0 = nobody).
 *
 *   +0  owner word, changed only by CAS:
 *
 *        63                          32 31             14 13          2 1    0
 *       +------------------------------+-----------------+-------------+------+
 *       |  pid:32                      |  gen:18         | recoverer:12|st:2  |
 *       +------------------------------+-----------------+-------------+------+
 *        st         FREE, LIVE, REVOKED (lease expired: the owner must stop),
 *                   RECOVERING (a recoverer is reclaiming the owner's memory)
 *        recoverer  while RECOVERING: the client doing it (a takeover CASes it)
 *        pid        the owner's pid; while RECOVERING, the recoverer's gen
 *        gen        bumped on every claim; owner-log entries carry its low 14
 *                   bits, so an entry of a slot's previous owner never passes
 *                   for the current one's
 *
 *   +8  lease heartbeat: wall clock of the last renewal (ms since the epoch)
 *   +16 host id (a hash of the host name)
 *   +24 epoch (reserved for epoch-based delayed free)
 *   +32 process start time (clock ticks since boot, /proc/PID/stat field 22;
 *       with pid and host it tells a live owner from a recycled pid)
 *   +40 fence acknowledgement: the gen the owner saw revoked; written once by
 *       the owner, after which it never touches the pool again
 *   +48 PID namespace of the owner (inode of /proc/self/ns/pid, 0 unknown) in
 *       the upper 32 bits, the owner's pid again in the lower 32
 *   +56 boot id of the owner's kernel (low 52 bits of a hash of
 *       /proc/sys/kernel/random/boot_id, 0 unknown)
 *       With these a monitor can tell whether "pid P is absent" means
 *       anything: only a watcher in the same PID namespace of the same boot
 *       can prove an owner gone (src/fencing.ts); containers that share
 *       /dev/shm and a host name differ here.
 *
 * The identity words (+32, +48, +56) are written *before* the claiming CAS
 * and again after it: a claimant that dies or is paused right after its CAS
 * is already described by its own identity, so it can be proved gone (or
 * found alive) like any owner. A losing claimant's early writes may land on
 * a slot someone else won; the pid copy in +48 then differs from the pid in
 * the owner word, and a monitor treats the owner as one it cannot judge
 * (it waits) rather than judge it by another process.
 *
 * Lease protocol (the fencing argument, after Gray & Cheriton's leases). A
 * monitor that sees a heartbeat older than the lease CASes LIVE -> REVOKED.
 * The owner checks its owner word before every operation; on REVOKED it
 * writes the fence acknowledgement and fails with LeaseExpiredError from then
 * on. Memory of a REVOKED client is reclaimed only once the client is known
 * to be fenced: it acknowledged, or its process is gone. A client stopped
 * (SIGSTOP) in the middle of an operation therefore finishes that operation
 * on memory that is still its own, and no write of it can land in memory
 * handed to someone else.
 */
import { CP_REGISTER_CLAIMED, crashPoint } from './crash';
import { cas64, load64, store64 } from './imports';
import { CLIENT_SLOT_BYTES, E_CLIENT_TABLE_FULL, E_INVALID_ARGUMENT, clientTableOff, maxClients } from './layout';

export const SLOT_FREE: u32 = 0;
export const SLOT_LIVE: u32 = 1;
export const SLOT_REVOKED: u32 = 2;
export const SLOT_RECOVERING: u32 = 3;

const GEN_MASK: u32 = (1 << 18) - 1;

@inline export function slotState(w: u64): u32 { return <u32>w & 3; }
@inline export function slotRecoverer(w: u64): u32 { return (<u32>w >> 2) & 0xFFF; }
@inline export function slotGen(w: u64): u32 { return <u32>w >> 14; }
@inline export function slotPid(w: u64): u32 { return <u32>(w >> 32); }
@inline export function slotWord(state: u32, recoverer: u32, gen: u32, pid: u32): u64 {
  return <u64>((state & 3) | ((recoverer & 0xFFF) << 2) | ((gen & GEN_MASK) << 14)) | (<u64>pid << 32);
}

/** Byte offset of client `id`'s slot (id 1..maxClients). */
@inline export function slotOff(id: u32): u64 {
  return clientTableOff + <u64>(id - 1) * CLIENT_SLOT_BYTES;
}

@inline export function validClient(id: u32): bool { return id >= 1 && id <= maxClients; }

/**
 * Claims a free slot, scanning from `start`; returns the client id, or
 * E_CLIENT_TABLE_FULL. The heartbeat is stored before anything else so a
 * monitor never sees a LIVE slot with a stale lease.
 */
export function claimSlot(start: u32, pid: u32, hostId: u64, startTime: u64, pidNs: u64, bootId: u64, nowMs: u64): i32 {
  for (let i: u32 = 0; i < maxClients; i++) {
    const id = (start + i) % maxClients + 1;
    const off = slotOff(id);
    const w = load64(off);
    if (slotState(w) != SLOT_FREE) continue;
    store64(off + 8, nowMs);
    writeIdentity(off, pid, startTime, pidNs, bootId);
    if (cas64(off, w, slotWord(SLOT_LIVE, 0, slotGen(w) + 1, pid)) != w) continue;
    crashPoint(CP_REGISTER_CLAIMED);
    store64(off + 16, hostId);
    store64(off + 24, 0);
    store64(off + 40, 0);
    writeIdentity(off, pid, startTime, pidNs, bootId);
    return <i32>id;
  }
  return E_CLIENT_TABLE_FULL;
}

/** The identity words of slot `off` (see the file comment). */
@inline function writeIdentity(off: u64, pid: u32, startTime: u64, pidNs: u64, bootId: u64): void {
  store64(off + 32, startTime);
  store64(off + 48, (pidNs << 32) | <u64>pid);
  store64(off + 56, bootId);
}

/** Renews client `id`'s lease heartbeat. */
export function renewSlot(id: u32, nowMs: u64): void {
  store64(slotOff(id) + 8, nowMs);
}

/**
 * Releases client `id`'s slot from state `from` (LIVE on close, RECOVERING
 * after a recovery). Returns false when the slot was not in that state.
 */
export function releaseSlot(id: u32, from: u32): bool {
  const off = slotOff(id);
  const w = load64(off);
  if (slotState(w) != from) return false;
  return cas64(off, w, slotWord(SLOT_FREE, 0, slotGen(w), 0)) == w;
}

/** True while client `id`'s slot is LIVE in generation `gen` (one load). */
export function slotIsLive(id: u32, gen: u32): bool {
  const w = load64(slotOff(id));
  return slotState(w) == SLOT_LIVE && slotGen(w) == (gen & GEN_MASK);
}

/**
 * Revokes client `id`'s lease (LIVE -> REVOKED) when its owner word still
 * holds generation `gen`. Returns OK, or E_INVALID_ARGUMENT when the slot
 * changed meanwhile (renewed clients are never revoked by a stale decision:
 * the caller re-reads the heartbeat after this CAS only when it succeeds).
 */
export function revokeSlot(id: u32, gen: u32): i32 {
  if (!validClient(id)) return E_INVALID_ARGUMENT;
  const off = slotOff(id);
  const w = load64(off);
  if (slotState(w) != SLOT_LIVE || slotGen(w) != (gen & GEN_MASK)) return E_INVALID_ARGUMENT;
  return cas64(off, w, slotWord(SLOT_REVOKED, 0, slotGen(w), slotPid(w))) == w ? 0 : E_INVALID_ARGUMENT;
}

/** The owner's fence acknowledgement of a revocation of its generation `gen`. */
export function acknowledgeRevocation(id: u32, gen: u32): void {
  store64(slotOff(id) + 40, <u64>(gen & GEN_MASK) | (<u64>1 << 32));
}

/** True when the owner of generation `gen` acknowledged its revocation. */
export function revocationAcknowledged(id: u32, gen: u32): bool {
  return load64(slotOff(id) + 40) == (<u64>(gen & GEN_MASK) | (<u64>1 << 32));
}

/**
 * Makes `recoverer` the one recovering client `id`: REVOKED -> RECOVERING,
 * or a takeover of a RECOVERING slot whose recoverer is `deadRecoverer`.
 * Returns the slot's gen (>= 0) or E_INVALID_ARGUMENT.
 */
export function beginRecovery(id: u32, recoverer: u32, deadRecoverer: u32): i32 {
  if (!validClient(id)) return E_INVALID_ARGUMENT;
  const off = slotOff(id);
  const w = load64(off);
  const st = slotState(w);
  const ok = st == SLOT_REVOKED || (st == SLOT_RECOVERING && slotRecoverer(w) == deadRecoverer);
  if (!ok) return E_INVALID_ARGUMENT;
  // While RECOVERING the pid field holds the recoverer's gen, so a takeover
  // can tell the recoverer from a later client that reused its slot.
  const rgen = slotGen(load64(slotOff(recoverer)));
  if (cas64(off, w, slotWord(SLOT_RECOVERING, recoverer, slotGen(w), rgen)) != w) return E_INVALID_ARGUMENT;
  return <i32>slotGen(w);
}
