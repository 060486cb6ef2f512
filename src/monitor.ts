/**
 * The lease monitor: finds clients that stopped renewing their lease,
 * revokes them, and once each is fenced reclaims everything it held, while
 * the other clients keep allocating (online recovery, HPE gull; FineMem
 * only recovers when an operator asks). It runs inside `dmem server`, or in
 * any process through `new LeaseMonitor(pool).start()`.
 *
 * One pass (`sweep`):
 *  1. LIVE slot whose heartbeat is older than the lease -> revoke (CAS).
 *  2. REVOKED slot -> recover once the fencing authority (src/fencing.ts)
 *     says it is fenced: acknowledged, provably gone, or cut off by its
 *     memory node. Otherwise it is waited for, and the reason is logged
 *     once: a paused client resumes inside its operation, and reclaiming
 *     under it could let its next write land in memory handed to someone
 *     else (docs/recovery.md).
 *  3. RECOVERING slot whose recoverer can no longer act -> take over (the
 *     same authority decides).
 *  4. Once a lease, orphans (allocated, owned by no live client) seen a full
 *     lease earlier with the same header word are freed, but only when the
 *     grace rule holds on the slots read *after* this pass's revocations:
 *     nobody revoked or recovering, and every client live back then has
 *     renewed or released its slot since (`everyoneMovedOn`).
 * Metadata locks are waited for briefly here (a quarter of the sweep
 * period): housekeeping or a recovery that meets a lock held by a paused
 * client is retried at the next sweep instead of stalling the monitor.
 * Each recovery is logged with its counts and duration.
 */
import type { Logger } from 'pino';
import type { ClientSlot, OrphanRecord, Pool, ReclaimReport } from './pool.js';
import { LeaseExpiredError, PoolBusyError } from './errors.js';
import { everyoneMovedOn, fenceOf, type FenceReason } from './fencing.js';

/** Options of `LeaseMonitor`. */
export interface MonitorOptions {
  /** Period of the sweep (ms; default a quarter of the pool's lease). */
  intervalMs?: number;
  /** Where recoveries and revocations are logged (pino); default: nowhere. */
  logger?: Logger;
  /** Called after every recovery. */
  onRecovery?: (event: RecoveryEvent) => void;
}

/** One completed recovery. */
export interface RecoveryEvent {
  client: number;
  pid: number;
  /** Why the client counted as fenced (src/fencing.ts). */
  reason: FenceReason;
  /** Time from the client's last heartbeat to the end of its recovery (ms). */
  sinceHeartbeatMs: number;
  /** Duration of the reclaim itself (ms). */
  durationMs: number;
  report: ReclaimReport;
}

/** What one sweep did. */
export interface SweepResult {
  revoked: number[];
  recovered: RecoveryEvent[];
  /** Revoked clients (or recoveries) still waiting to be fenced, with the authority's reason. */
  waiting: Array<{ client: number; why: string }>;
  /** Recoveries that could not finish this pass (a metadata lock was busy): retried next pass. */
  unfinished: number[];
  orphansFreed: number;
}

interface OrphanSnapshot {
  at: number;
  slots: ClientSlot[];
  records: Map<string, OrphanRecord>;
}

/** Watches one pool's client leases from the client `pool` (see the file comment). */
export class LeaseMonitor {
  private readonly pool: Pool;
  private readonly opts: MonitorOptions;
  private timer: NodeJS.Timeout | undefined;
  private snapshot: OrphanSnapshot | null = null;
  private readonly waitingLogged = new Set<string>();
  /** Lease seen at the last sweep, and until when a longer old one still applies. */
  private leaseSeen = 0;
  private oldLease = 0;
  private oldLeaseUntil = 0;

  /** Caps `pool`'s metadata-lock waits at a quarter of the sweep period (see the file comment). */
  constructor(pool: Pool, opts: MonitorOptions = {}) {
    this.pool = pool;
    this.opts = opts;
    const every = opts.intervalMs ?? Math.max(5, Math.floor(pool.leaseMs / 4));
    pool.setLockWait(Math.max(1, Math.floor(every / 4)));
  }

  /** Starts sweeping every `intervalMs`; returns this. */
  start(): this {
    if (this.timer) return this;
    const every = this.opts.intervalMs ?? Math.max(5, Math.floor(this.pool.leaseMs / 4));
    this.timer = setInterval(() => {
      try {
        this.sweep();
      } catch (err) {
        this.opts.logger?.error({ err }, 'lease monitor sweep failed');
      }
    }, every);
    this.timer.unref();
    return this;
  }

  /** Stops sweeping. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One pass over the client table and (every lease) the orphans. */
  sweep(now = Date.now()): SweepResult {
    const lease = this.effectiveLease(now);
    const me = this.pool.clientId;
    const result: SweepResult = { revoked: [], recovered: [], waiting: [], unfinished: [], orphansFreed: 0 };
    for (const slot of this.pool.clientSlots()) {
      if (slot.id === me || slot.state === 'free') continue;
      let s = slot;
      if (s.state === 'live' && now - s.heartbeatMs > lease) {
        if (!this.pool.revokeClient(s.id, s.gen)) continue;
        result.revoked.push(s.id);
        this.opts.logger?.warn({ client: s.id, clientPid: s.pid, silentMs: now - s.heartbeatMs, leaseMs: lease }, 'lease expired: client revoked');
        s = this.pool.clientSlot(s.id);
      }
      if (s.state !== 'revoked' && s.state !== 'recovering') continue;
      const verdict = fenceOf(this.pool, s);
      if (!verdict.fenced) {
        result.waiting.push({ client: s.id, why: verdict.why });
        const key = `${s.id}:${s.gen}:${s.state}`;
        if (!this.waitingLogged.has(key)) {
          this.waitingLogged.add(key);
          this.opts.logger?.warn({ client: s.id, clientPid: s.pid, why: verdict.why }, 'client not fenced yet: nothing it holds is freed until it acknowledges, is gone, or is cut off');
        }
        continue;
      }
      this.recover(s, s.state === 'recovering' ? s.recoverer : 0, verdict.reason, result);
    }
    // The grace rule reads the slots as they are now, after this pass's revocations.
    result.orphansFreed = this.sweepOrphans(now, lease);
    return result;
  }

  /**
   * Once a lease: frees the delayed frees that are safe (pool.reclaim) and
   * the slabs left empty and unowned (heap.trim). A busy ring lock only
   * postpones it to the next lease.
   */
  private housekeeping(): void {
    try {
      const delayed = this.pool.reclaim();
      const slabs = this.pool.heap.trim();
      if (delayed > 0 || slabs > 0) this.opts.logger?.debug({ delayed, slabs }, 'delayed frees and empty slabs freed');
    } catch (err) {
      if (!(err instanceof PoolBusyError) && !(err instanceof LeaseExpiredError)) throw err;
    }
  }

  /**
   * The pool's lease, except that after a shortening the old one applies for
   * one old lease: clients renew on the old period until their next renewal.
   */
  private effectiveLease(now: number): number {
    const lease = this.pool.leaseMs;
    if (this.leaseSeen !== 0 && lease < this.leaseSeen) {
      this.oldLease = this.leaseSeen;
      this.oldLeaseUntil = now + this.leaseSeen;
    }
    this.leaseSeen = lease;
    return now < this.oldLeaseUntil ? Math.max(lease, this.oldLease) : lease;
  }

  private recover(s: ClientSlot, deadRecoverer: number, reason: RecoveryEvent['reason'], result: SweepResult): void {
    const t0 = performance.now();
    let report: ReclaimReport | null;
    try {
      report = this.pool.recoverClient(s.id, deadRecoverer);
    } catch (err) {
      if (!(err instanceof PoolBusyError)) throw err;
      report = null;
    }
    if (report === null) return;
    if (!report.complete) {
      result.unfinished.push(s.id);
      this.opts.logger?.info({ client: s.id }, 'recovery left heap objects for the next sweep: the delayed-free ring lock is busy');
      return;
    }
    const event: RecoveryEvent = {
      client: s.id, pid: s.pid, reason, report,
      durationMs: performance.now() - t0,
      sinceHeartbeatMs: Date.now() - s.heartbeatMs,
    };
    result.recovered.push(event);
    const { pid: clientPid, ...rest } = event;
    this.opts.logger?.info({ ...rest, clientPid }, 'client recovered');
    this.opts.onRecovery?.(event);
  }

  /**
   * Grace sweep, once a lease: orphans seen in the previous snapshot, at
   * least a lease ago, with the very same header word, are freed when the
   * fencing authority's grace rule holds between that snapshot's slots and
   * the slots now (src/fencing.ts, `everyoneMovedOn`). Returns how many were
   * freed.
   */
  private sweepOrphans(now: number, lease: number): number {
    const prev = this.snapshot;
    if (prev !== null && now - prev.at < lease) return 0;
    const records = new Map<string, OrphanRecord>();
    for (const r of this.pool.scanOrphans()) records.set(`${r.kind}:${r.index}:${r.word}`, r);
    // Read after the scan: any operation in flight during the scan belongs
    // to a client listed here, and its next renewal comes after it ended.
    const slots = this.pool.clientSlots();
    let freed = 0;
    if (prev !== null && everyoneMovedOn(prev.slots, slots, this.pool.clientId)) {
      // The record of a lease ago, not today's: of a span's chunks only
      // those orphan then (and still) are freed; one orphan only now may be
      // a free in flight under the same header word (assembly/audit.ts).
      for (const key of records.keys()) {
        const then = prev.records.get(key);
        if (then !== undefined && this.pool.reclaimOrphan(then)) freed++;
      }
    }
    if (freed > 0) this.opts.logger?.info({ freed }, 'orphans freed after a full lease');
    this.housekeeping();
    this.snapshot = { at: now, slots, records };
    return freed;
  }
}
