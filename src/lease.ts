/**
 * One client's lease on its pool slot (docs/recovery.md): the heartbeat that
 * renews it, the watch that notices its revocation, and the fence that
 * follows. A Pool owns one ClientLease from attach to close.
 *
 * Renewal: every operation passes the check (`ready()`, then `settle()`
 * when ready says so); every 64th one reads the clock and renews when a
 * quarter of the lease has passed since the last renewal, so a caller that
 * loops without yielding to the event loop still renews.
 * An unref'd interval timer (every lease/4, or the caller's heartbeatMs)
 * renews an idle client.
 *
 * Revocation: a lease monitor that finds the heartbeat older than the lease
 * moves the slot LIVE -> REVOKED (assembly/client.ts). Where the transport
 * maps pool memory, the check watches the low half of this client's slot
 * word with one read (`ready`) and sees the change at the next call;
 * elsewhere the heartbeat reads the slot. Either way the client then fences
 * itself: it writes its acknowledgement (so recovery may proceed without
 * waiting for a timeout), stops its timer, and every later call throws the
 * same LeaseExpiredError. A fenced client never writes pool metadata again.
 */
import { Geometry } from './abi.js';
import type { Core } from './core.js';
import { readSlot } from './admin.js';
import { DmemError, LeaseExpiredError } from './errors.js';
import type { Transport } from './transport.js';

export class ClientLease {
  /** Set once the lease was found revoked: every later call throws it. */
  fenced: LeaseExpiredError | null = null;
  private readonly core: Core;
  private readonly x: Core['exports'];
  private readonly transport: Transport;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The low half of this client's slot owner word, watched on every call (null: transport without mapped memory). */
  private slotLow: Int32Array | null = null;
  private liveLow = 0;
  private ops = 0;
  private renewAt = 0;
  private renewEvery = 250;
  /** The caller's heartbeatMs, or null to follow the lease (a quarter of it). */
  private readonly fixedHeartbeat: number | null;
  private timerEvery = 0;

  /**
   * Starts watching the slot this core registered and the idle heartbeat.
   * @param heartbeatMs idle timer period (ms), null for a quarter of the lease, 0 for no timer
   */
  constructor(core: Core, transport: Transport, heartbeatMs: number | null) {
    this.core = core;
    this.x = core.exports;
    this.transport = transport;
    this.fixedHeartbeat = heartbeatMs;
    this.watchSlot();
    this.schedule();
  }

  /**
   * Every call's lease check is `if (!ready()) settle()` (Pool's guard):
   * fenced, revoked (one read of this client's slot word), and every 64
   * calls a clock read to renew.
   *
   * The check's quick half, for the hot path: true when this call needs
   * nothing more (not fenced, not a 64th call, and the slot word as this
   * client registered it); counts the call. The slot word is a plain read:
   * an aligned 32-bit read is one load on the hosts we run on, as
   * Atomics.load is, at a fraction of V8's cost for it (1.5 against 8.3 ns
   * in `npm run bench:budget`'s unit costs), and it is fresh on every call (V8 keeps no
   * typed-array element across the operation's own Atomics, calls into the
   * core and the host, and every 64th call reads it with Atomics.load in
   * settle). What the check is for is unchanged: a revoked client learns it
   * at its next call. False: call
   * `settle()` before the operation, which reads the slot word itself (so
   * every call reads it exactly once). Small on purpose, so that V8
   * inlines it into its callers (the rare work is in settle).
   */
  ready(): boolean {
    return this.fenced === null && (++this.ops & 63) !== 0 && (this.slotLow === null || this.slotLow[0] === this.liveLow);
  }

  /**
   * The check's slow half, after `ready()` said false: throws once fenced,
   * fences this client when its slot word changed, renews the lease on a
   * 64th call when due. Where ready() found the slot word changed, it is
   * read again here: one more observation, still before the operation's
   * own CASes, as every check is.
   * @throws LeaseExpiredError once the lease was revoked
   */
  settle(): void {
    if (this.fenced !== null) throw this.fenced;
    if (this.slotLow !== null && Atomics.load(this.slotLow, 0) !== this.liveLow) this.fence();
    if ((this.ops & 63) === 0 && Date.now() >= this.renewAt) this.heartbeat();
  }

  /** True while this client's slot is LIVE in the generation it registered. */
  slotIsOurs(): boolean {
    const id = this.x.geometry(Geometry.clientId);
    if (id <= 0) return false;
    const slot = readSlot(this.core, id);
    return slot.state === 'live' && slot.gen === this.x.geometry(Geometry.slotGen);
  }

  /** The pool's lease changed (ms): renew at the new pace from now on. */
  leaseChanged(ms: number): void {
    this.renewEvery = Math.max(5, Math.floor(ms / 4));
    this.renewAt = Math.min(this.renewAt, Date.now() + this.renewEvery);
    this.schedule();
  }

  /** Starts the timer again after a close() that could not finish. */
  restart(): void {
    this.stopped = false;
    this.timerEvery = 0;
    this.schedule();
  }

  /** Writes the fence acknowledgement if this client's slot is REVOKED in its own generation. */
  acknowledgeIfRevoked(): void {
    const id = this.x.geometry(Geometry.clientId);
    if (id <= 0) return;
    const slot = readSlot(this.core, id);
    if (slot.state === 'revoked' && slot.gen === this.x.geometry(Geometry.slotGen)) this.x.acknowledgeRevoked();
  }

  /** Stops the timer for good (the Pool is closing). */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private watchSlot(): void {
    const off = this.x.geometry(Geometry.slotOffset);
    const bytes = off >= 0 ? this.transport.mapped?.view(off, 8) ?? null : null;
    if (bytes) {
      this.slotLow = new Int32Array(bytes.buffer, bytes.byteOffset, 2);
      this.liveLow = Atomics.load(this.slotLow, 0);
    }
    this.renewEvery = Math.max(5, Math.floor(this.x.lease() / 4));
    this.renewAt = Date.now() + this.renewEvery;
  }

  /** Renews the lease, or fences this client if it was revoked. */
  private heartbeat(): void {
    if (this.stopped || this.fenced !== null) return;
    if (!this.slotIsOurs()) {
      try { this.fence(); } catch { /* recorded in this.fenced */ }
      return;
    }
    this.x.renew();
    this.renewEvery = Math.max(5, Math.floor(this.x.lease() / 4));
    this.renewAt = Date.now() + this.renewEvery;
    this.schedule();
  }

  /**
   * The idle timer's renewal. A transport that failed under it (a remote
   * memory node cut this client off, or went away) must not take the
   * process down from a timer: the timer stops, and the caller's next
   * operation meets the same failure as a typed error.
   */
  private timerBeat(): void {
    try {
      this.heartbeat();
    } catch (e) {
      if (!(e instanceof DmemError)) throw e;
      if (this.timer) clearInterval(this.timer);
      this.timer = undefined;
      this.timerEvery = -1;
    }
  }

  /** (Re)starts the idle heartbeat timer when its period no longer matches the lease. */
  private schedule(): void {
    const every = this.fixedHeartbeat ?? this.renewEvery;
    if (every === this.timerEvery || this.stopped) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.timerEvery = every;
    if (every <= 0) return;
    this.timer = setInterval(() => this.timerBeat(), every);
    this.timer.unref();
  }

  /** The slot is no longer ours: acknowledge (so recovery may proceed) and refuse every later call. */
  private fence(): never {
    const id = this.x.geometry(Geometry.clientId);
    this.acknowledgeIfRevoked();
    if (this.timer) clearInterval(this.timer);
    this.fenced = new LeaseExpiredError(`client ${id}'s lease expired (no renewal within ${this.x.lease()} ms) and was revoked; its memory is reclaimed: open the pool again to continue`);
    throw this.fenced;
  }
}
