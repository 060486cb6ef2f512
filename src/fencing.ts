/**
 * The fencing authority (docs/design.md; docs/recovery.md, "Revocation and fencing"):
 * the one place that decides whether a client can no longer touch the pool,
 * for every path that frees another client's memory — the lease monitor,
 * `dmem recover`, `dmem fsck --repair`, the orphan sweep and a takeover of
 * a recovery.
 *
 * The adversary is a client *paused* past its lease (SIGSTOP, a frozen
 * cgroup, a GC or swap stall, a VM migration) that then resumes in the
 * middle of whatever it was doing. A revoked client is fenced only when
 *   - it acknowledged the revocation (slot +40: written by the client itself
 *     when it found its slot revoked, at the start of a call or from its
 *     heartbeat timer, i.e. between operations: it will never write again);
 *   - or it is provably gone: its slot names this watcher's PID namespace
 *     and kernel boot, and its pid is absent, a zombie, or a process with
 *     another start time (so a recycled pid does not pass for it);
 *   - or its transport was cut by the memory node (a remote client: the
 *     server refuses its requests or revoked its key), as the server
 *     reports with `markTransportCut`.
 * Anything else — another PID namespace (containers sharing /dev/shm and a
 * host name), another boot or host, an unknown start time, a live pid —
 * cannot be told from a paused client, so everything it holds or may be in
 * the middle of stays allocated, and the verdict says why it waits. Only an
 * operator overrides that (`dmem recover --force`), and it is logged.
 *
 * A recovery that was begun (slot RECOVERING, naming recoverer r) may be
 * taken over only when r can no longer act: r's slot was released or
 * reused (a later generation: r closed, or was itself fenced and
 * recovered), r is being recovered itself, r is this very client (its own
 * synchronous recovery was cut short), or r is revoked and fenced by the
 * rules above. A recoverer that is merely revoked may still be paused
 * inside its recovery, so two recoverers never free at once.
 */
import type { ClientSlot } from './admin.js';
import { bootId, pidNamespace, processAlive, processState } from './proc.js';

/** Why a client counts as fenced. */
export type FenceReason = 'acknowledged' | 'process-gone' | 'transport-cut' | 'takeover' | 'forced';

/** The authority's answer for one slot: fenced with a reason, or why it must wait. */
export type FenceVerdict =
  | { fenced: true; reason: FenceReason }
  | { fenced: false; why: string };

/** What the authority reads of the pool: its own client id and any slot. */
export interface SlotReader {
  readonly clientId: number;
  clientSlot(id: number): ClientSlot;
}

/**
 * Clients whose transport a memory node in this process has cut, as
 * `id:gen`, per pool: the Pool the node serves (and its monitor sweeps).
 * Keyed by that object, never process-wide: client ids and generations
 * repeat across pools, and a cut on one pool must not fence the client of
 * the same id and generation on another. A watcher holding another Pool
 * object on the same medium does not see the cut and waits (the safe side).
 */
const cut = new WeakMap<object, Set<string>>();

/**
 * Records that the memory node has cut client `id` (slot generation `gen`)
 * off the pool (a remote transport's server: connection closed and its
 * requests refused, or its key revoked), so it counts as fenced.
 */
export function markTransportCut(pool: object, id: number, gen: number): void {
  let ids = cut.get(pool);
  if (ids === undefined) cut.set(pool, ids = new Set());
  ids.add(`${id}:${gen & 0x3ffff}`);
}

/** This watcher's PID namespace and boot (computed once). */
let self: { pidNs: number; bootId: number } | undefined;
function watcher(): { pidNs: number; bootId: number } {
  self ??= { pidNs: pidNamespace(), bootId: bootId() };
  return self;
}

/**
 * Whether the owner of `slot` (LIVE or REVOKED) is provably gone, as seen
 * from this process; `null` when it is, else why not.
 */
export function goneOrWhy(slot: ClientSlot): string | null {
  const me = watcher();
  if (slot.identityPid !== slot.pid) return `pid ${slot.pid}: the slot's identity words were written by another process (a racing registration)`;
  if (slot.pidNs === 0 || slot.bootId === 0) return `pid ${slot.pid}: its PID namespace or boot is unknown`;
  if (slot.bootId !== me.bootId) return `pid ${slot.pid} runs on another host or boot: it cannot be watched from here`;
  if (slot.pidNs !== me.pidNs) return `pid ${slot.pid} is in another PID namespace (a container?): it cannot be watched from here`;
  if (!processAlive(slot.pid, slot.startTime)) return null;
  if (slot.startTime === 0n) return `pid ${slot.pid} exists and its start time is unknown`;
  const state = processState(slot.pid);
  return state === 'T' || state === 't' ? `pid ${slot.pid} is stopped (paused), not gone` : `pid ${slot.pid} is alive`;
}

/**
 * The verdict for client slot `slot` (read from `pool`): fenced (with the
 * reason) or not (with why). A FREE or LIVE slot is never fenced: a live
 * client must be revoked first (`revokeClient`).
 */
export function fenceOf(pool: SlotReader, slot: ClientSlot): FenceVerdict {
  if (slot.state === 'free') return { fenced: false, why: 'slot is free' };
  if (slot.state === 'live') return { fenced: false, why: 'client is live: revoke it first' };
  if (slot.state === 'recovering') return takeoverOf(pool, slot);
  if (slot.acknowledged) return { fenced: true, reason: 'acknowledged' };
  if (cut.get(pool)?.has(`${slot.id}:${slot.gen & 0x3ffff}`)) return { fenced: true, reason: 'transport-cut' };
  const why = goneOrWhy(slot);
  return why === null ? { fenced: true, reason: 'process-gone' } : { fenced: false, why: `revoked, not acknowledged: ${why}` };
}

/** May a RECOVERING slot's recovery be taken over? (See the file comment.) */
function takeoverOf(pool: SlotReader, slot: ClientSlot): FenceVerdict {
  const r = slot.recoverer;
  if (r === 0 || r === pool.clientId) return { fenced: true, reason: 'takeover' };
  const rs = pool.clientSlot(r);
  if ((rs.gen & 0x3ffff) !== (slot.recovererGen & 0x3ffff)) return { fenced: true, reason: 'takeover' };
  if (rs.state === 'free' || rs.state === 'recovering') return { fenced: true, reason: 'takeover' };
  if (rs.state === 'live') return { fenced: false, why: `being recovered by live client ${r}` };
  const v = fenceOf(pool, rs);
  return v.fenced ? { fenced: true, reason: 'takeover' } : { fenced: false, why: `its recoverer, client ${r}, was revoked but may still run (${v.why})` };
}

/**
 * The orphan sweep's grace rule (docs/recovery.md, "Orphans"): an orphan
 * seen at `then` may be freed now only when no operation that was in
 * flight then can still be running. True when no slot is REVOKED or
 * RECOVERING now (a revoked client may be paused mid-operation; `now` must
 * be read after this sweep's own revocations), and every client that was
 * LIVE then has, now, either renewed (same generation, a later heartbeat:
 * a renewal happens between operations) or released its slot (FREE or a
 * later generation: it closed, or was fenced and recovered).
 * @param then slots at the earlier snapshot; @param now slots read now
 */
export function everyoneMovedOn(then: readonly ClientSlot[], now: readonly ClientSlot[], me: number): boolean {
  if (now.some((s) => s.state === 'revoked' || s.state === 'recovering')) return false;
  const current = new Map(now.map((s) => [s.id, s]));
  for (const t of then) {
    if (t.id === me || t.state === 'free') continue;
    if (t.state !== 'live') return false;
    const n = current.get(t.id);
    if (n === undefined || n.state === 'free' || n.gen !== t.gen) continue;
    if (n.state !== 'live' || n.heartbeatMs <= t.heartbeatMs) return false;
  }
  return true;
}
