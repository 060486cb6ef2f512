/**
 * The lease monitor: finds clients that stopped renewing their lease,
 * revokes them, and once each is fenced reclaims everything it held, while
 * the other clients keep allocating (online recovery, HPE gull; FineMem
 * only recovers when an operator asks). It runs inside `dmem server
 * --lease-ms N`, or in any process through `new LeaseMonitor(pool).start()`.
 *
 * One pass (`sweep`):
 *  1. LIVE slot whose heartbeat is older than the lease -> revoke (CAS).
 *  2. REVOKED slot that is fenced -> recover. Fenced means: the owner wrote
 *     its acknowledgement, or (same host) its process is gone or is another
 *     process now, or (other host) nothing was heard for `fenceTimeoutMs`.
 *     A revoked owner that is alive but stopped (SIGSTOP) is waited for:
 *     reclaiming under it could let its next write land in memory handed
 *     to someone else (assembly/client.ts has the whole argument).
 *  3. RECOVERING slot whose recoverer is gone (its slot free, recovering, or
 *     reused by a later generation) -> take over.
 *  4. Orphans (allocated, owned by no live client) seen in two passes a full
 *     lease apart, unchanged, with every live client renewed in between and
 *     no client still to be fenced -> freed (assembly/audit.ts).
 * Each recovery is logged with its counts and duration.
 */
import type { Logger } from 'pino';
import type { ClientSlot, OrphanRecord, Pool, ReclaimReport } from './pool.js';
import { Pool as PoolClass } from './pool.js';
import { PoolBusyError } from './errors.js';
import { processAlive } from './proc.js';

/** Options of `LeaseMonitor`. */
export interface MonitorOptions {
  /** Period of the sweep (ms; default a quarter of the pool's lease). */
  intervalMs?: number;
  /** Clients on other hosts are taken as fenced this long after their last heartbeat (ms; default 2 leases). */
  fenceTimeoutMs?: number;
  /** Where recoveries and revocations are logged (pino); default: nowhere. */
  logger?: Logger;
  /** Called after every recovery. */
  onRecovery?: (event: RecoveryEvent) => void;
}

/** One completed recovery. */
export interface RecoveryEvent {
  client: number;
  pid: number;
  /** Why the client counted as fenced. */
  reason: 'acknowledged' | 'process-gone' | 'fence-timeout' | 'takeover';
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
  /** Revoked clients still waiting to be fenced (alive, not acknowledged). */
  waiting: number[];
  orphansFreed: number;
}

interface OrphanSnapshot {
  at: number;
  heartbeats: Map<number, number>;
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

  constructor(pool: Pool, opts: MonitorOptions = {}) {
    this.pool = pool;
    this.opts = opts;
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
    const result: SweepResult = { revoked: [], recovered: [], waiting: [], orphansFreed: 0 };
    const slots = this.pool.clientSlots();
    for (const slot of slots) {
      if (slot.id === me || slot.state === 'free') continue;
      let s = slot;
      if (s.state === 'live' && now - s.heartbeatMs > lease) {
        if (!this.pool.revokeClient(s.id, s.gen)) continue;
        result.revoked.push(s.id);
        this.opts.logger?.warn({ client: s.id, clientPid: s.pid, silentMs: now - s.heartbeatMs, leaseMs: lease }, 'lease expired: client revoked');
        s = this.pool.clientSlot(s.id);
      }
      if (s.state === 'revoked') {
        const reason = this.fenced(s, now, lease);
        if (reason === null) {
          result.waiting.push(s.id);
          const key = `${s.id}:${s.gen}`;
          if (!this.waitingLogged.has(key)) {
            this.waitingLogged.add(key);
            this.opts.logger?.warn({ client: s.id, clientPid: s.pid }, 'revoked client is alive and has not acknowledged: waiting for it to exit or acknowledge');
          }
          continue;
        }
        this.recover(s, 0, reason, result);
      } else if (s.state === 'recovering' && this.recovererGone(s)) {
        this.recover(s, s.recoverer, 'takeover', result);
      }
    }
    result.orphansFreed = this.sweepOrphans(now, lease, slots);
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
      if (!(err instanceof PoolBusyError)) throw err;
    }
  }

  /**
   * True when the client recovering `s` can no longer act: its slot is free,
   * recovering itself, or owned by a later generation. A recoverer that is
   * only REVOKED may still be running (stopped) and is waited for until it
   * is fenced and recovered. This client's own recoveries are synchronous,
   * so one left RECOVERING here was cut short (a trap) and is taken over.
   */
  private recovererGone(s: ClientSlot): boolean {
    if (s.recoverer === 0) return true;
    const r = this.pool.clientSlot(s.recoverer);
    if ((r.gen & 0x3FFFF) !== (s.recovererGen & 0x3FFFF)) return true;
    if (s.recoverer === this.pool.clientId) return true;
    return r.state !== 'live' && r.state !== 'revoked';
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

  private fenced(s: ClientSlot, now: number, lease: number): RecoveryEvent['reason'] | null {
    if (s.acknowledged) return 'acknowledged';
    if (s.hostId === PoolClass.hostId) return processAlive(s.pid, s.startTime) ? null : 'process-gone';
    return now - s.heartbeatMs > (this.opts.fenceTimeoutMs ?? 2 * lease) ? 'fence-timeout' : null;
  }

  private recover(s: ClientSlot, deadRecoverer: number, reason: RecoveryEvent['reason'], result: SweepResult): void {
    const t0 = performance.now();
    const report = this.pool.recoverClient(s.id, deadRecoverer);
    if (report === null) return;
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
   * Grace sweep: orphans seen in the previous snapshot, at least a lease ago,
   * unchanged, with every then-live client renewed since and nobody waiting
   * to be fenced, are freed. Returns how many were freed.
   */
  private sweepOrphans(now: number, lease: number, slots: ClientSlot[]): number {
    const prev = this.snapshot;
    if (prev !== null && now - prev.at < lease) return 0;
    const pending = slots.some((s) => s.state === 'revoked' || s.state === 'recovering');
    const records = new Map<string, OrphanRecord>();
    for (const r of this.pool.scanOrphans()) records.set(`${r.kind}:${r.index}:${r.word}`, r);
    const heartbeats = new Map<number, number>();
    for (const s of this.pool.clientSlots()) if (s.state === 'live') heartbeats.set(s.id, s.heartbeatMs);
    let freed = 0;
    if (prev !== null && !pending) {
      const everyoneRenewed = [...prev.heartbeats].every(([id, hb]) => {
        const now2 = this.pool.clientSlot(id);
        return now2.state !== 'live' || now2.heartbeatMs > hb || id === this.pool.clientId;
      });
      if (everyoneRenewed) {
        for (const [key, r] of records) {
          if (prev.records.has(key) && this.pool.reclaimOrphan(r)) freed++;
        }
      }
    }
    if (freed > 0) this.opts.logger?.info({ freed }, 'orphans freed after a full lease');
    this.housekeeping();
    this.snapshot = { at: now, heartbeats, records };
    return freed;
  }
}
