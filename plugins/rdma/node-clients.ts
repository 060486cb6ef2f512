/**
 * The per-client bookkeeping of a one-sided memory node (server.ts for
 * ofi, verbs-server.ts for verbs): which bootstrap connections it serves,
 * which client id and generation each reported, and when each must be cut
 * (DESIGN.md, "Fencing": a remote client is fenced once "its transport was
 * cut by the memory node"). What cutting means is the backend's: ofi closes
 * the connection's memory registration (its key dies), verbs moves its QP
 * to the error state and deregisters its MR (each backend's `sever`). The
 * rules of when are the same for both (docs/rdma.md, rules 1-4):
 *
 *  1. `fenceOnRevoke(pool)` wraps `pool.revokeClient`, so the lease monitor
 *     (which revokes, then checks fencing, then recovers) has the client
 *     cut before it goes on, in the same sweep;
 *  2. a connection whose slot is no longer LIVE in the generation it
 *     reported is cut (`watchSlots`, every `watchMs`, and on each report);
 *  3. its bootstrap connection closing cuts it;
 *  4. a connection that has not reported its client id yet is cut along
 *     with any revocation the server cannot attribute (a `cutClient` of an
 *     id no connection reported, a slot no connection reported seen
 *     REVOKED or RECOVERING), and when `reportMs` passes without a report.
 *
 * After a cut whose backend calls all succeeded, and when no other
 * connection of this server may belong to the same client (none reported
 * it, none is unreported), the node tells the fencing authority
 * (`markTransportCut`, src/fencing.ts), so the lease monitor of this
 * process counts the client as fenced (`transport-cut`) and recovers it at
 * once.
 *
 * Concurrency: everything here runs on the node's event-loop thread (the
 * bootstrap sockets, the timers, the monitor's sweep that calls the wrapped
 * `revokeClient`), so a cut is never interleaved with another; `cut` is
 * idempotent (a connection is cut at most once, then forgotten).
 */
import type { Socket } from 'node:net';
import { TransportUnavailableError } from '../../src/errors.js';
import { markTransportCut } from '../../src/fencing.js';
import type { Pool } from '../../src/pool.js';
import { BootstrapListener } from './bootstrap.js';

/** What a memory node reports through its `onEvent` option (both backends; verbs adds one event of its own). */
export type NodeClientEvent =
  | { event: 'client-connected'; conn: number; remote: string }
  | { event: 'client-registered'; conn: number; client: number; gen: number }
  | { event: 'client-cut'; conn: number; client: number | null; reason: string }
  | { event: 'refused'; remote: string; reason: string };

/** One authenticated bootstrap connection; a backend extends it with its own handles (MR, QP ...). */
export interface ClientConn {
  /** Connection number, from 1, never reused by one server. */
  readonly id: number;
  readonly sock: Socket;
  /** The client id it reported, null before its report. */
  client: number | null;
  /** The generation it reported (0 before). */
  gen: number;
  /** Runs out `reportMs` after the connection was added, unless it reported; null after. */
  reportTimer: NodeJS.Timeout | null;
}

/** The options of a memory node that concern its clients (ServeOfiOptions and ServeVerbsOptions have them). */
export interface NodeClientsOptions {
  /** A Pool on the same memory: clients whose slot stops being LIVE in their generation are cut. */
  pool?: Pool;
  /** Period of that slot check (ms, default 250). */
  watchMs?: number;
  /** Time a client has to report its client id after the bootstrap (ms, default 30000). */
  reportMs?: number;
  /** Told about each connection, cut and refusal (for logs). */
  onEvent?: (e: NodeClientEvent) => void;
}

/**
 * What both memory nodes share: the bootstrap listener, the table of client
 * connections and the rules that cut them (see the file comment). A backend
 * supplies `sever` (and `mayReport`), answers `welcome` on its listener and
 * calls `addClient` for each connection it serves.
 */
export abstract class MemoryNode<C extends ClientConn> {
  /** Set by `close` before anything is released; no connection is added or checked after. */
  protected closed = false;
  private boot: BootstrapListener | null = null;
  private readonly kind: string;
  private readonly nodeOpts: NodeClientsOptions;
  private readonly conns = new Map<number, C>();
  private nextConn = 1;
  private watchTimer: NodeJS.Timeout | null = null;
  /** Pools whose `revokeClient` this node wraps (fenceOnRevoke): their fencing sees its cuts. */
  private readonly fencedPools = new Set<Pool>();

  /** @param kind the transport's name, for messages (`ofi`, `verbs`) */
  protected constructor(kind: string, opts: NodeClientsOptions) {
    this.kind = kind;
    this.nodeOpts = opts;
  }

  /**
   * Makes the pool unreachable for `c` (its key or QP dead) and closes its
   * bootstrap socket. Called once per connection, after it left the table.
   * @returns '' when every call that kills its access succeeded, else text
   *   appended to the cut's reason (the client is then not marked as cut)
   */
  protected abstract sever(c: C): string;

  /** False while a report on `c` would come too early (verbs: before its QP exists); such a report cuts it. */
  protected mayReport(_c: C): boolean {
    return true;
  }

  /** The bootstrap listen address (the real port when listening on port 0). */
  get address(): { host: string; port: number } {
    const a = this.boot?.bound() ?? null;
    if (a === null) throw new TransportUnavailableError(`the ${this.kind} server is not listening`);
    return a;
  }

  /** Client ids registered through this server, with their generation. */
  clients(): Array<{ client: number; gen: number; conn: number }> {
    const out = [];
    for (const c of this.conns.values()) if (c.client !== null) out.push({ client: c.client, gen: c.gen, conn: c.id });
    return out;
  }

  /**
   * Cuts client `clientId` off (its access to the pool, then its bootstrap
   * connection). A connection that has not reported its id yet may be this
   * client (it registered and is about to report): when none reported
   * `clientId`, every unreported one is cut instead, so no key outlives the
   * revocation of the slot it might own (rule 4).
   * @returns how many connections were cut (0: none could be this client)
   */
  cutClient(clientId: number, reason = 'cut'): number {
    let n = 0;
    for (const c of [...this.conns.values()]) if (c.client === clientId) { this.cut(c, reason); n++; }
    if (n === 0) {
      for (const c of [...this.conns.values()]) {
        if (c.client === null) { this.cut(c, `${reason} (client ${clientId} unknown; this connection had not reported its id)`); n++; }
      }
    }
    return n;
  }

  /**
   * Makes `pool.revokeClient` cut the revoked client before it returns
   * (rule 1), so the lease monitor (which revokes, then checks fencing,
   * then recovers) never reclaims memory a revoked client of this server
   * could still write. The wrapper is installed on this Pool object only.
   */
  fenceOnRevoke(pool: Pool): void {
    this.fencedPools.add(pool);
    const revoke = pool.revokeClient.bind(pool);
    pool.revokeClient = (id: number, gen: number): boolean => {
      const ok = revoke(id, gen);
      if (ok) this.cutClient(id, 'revoked');
      return ok;
    };
  }

  /**
   * Opens the bootstrap listener (bootstrap.ts) on `listen`: `welcome`
   * answers each authenticated connection, later lines are client reports.
   * @throws InvalidArgumentError, TransportUnavailableError (see BootstrapListener.open)
   */
  protected async openBootstrap(listen: string, token: Buffer, welcome: (sock: Socket, remote: string) => object | null): Promise<void> {
    this.boot = await BootstrapListener.open(listen, token, {
      welcome,
      line: (sock, msg) => this.report(sock, msg),
      refused: (remote, reason) => this.nodeOpts.onEvent?.({ event: 'refused', remote, reason }),
    });
  }

  /** Starts the slot check (rule 2) when the options name a pool. */
  protected startWatch(): void {
    if (!this.nodeOpts.pool || this.closed || this.watchTimer !== null) return;
    this.watchTimer = setInterval(() => this.watchSlots(), this.nodeOpts.watchMs ?? 250);
    this.watchTimer.unref();
  }

  /**
   * Adds an authenticated connection with the backend's fields `own`,
   * starts its report deadline (rule 4) and cuts it when its socket closes
   * (rule 3).
   * @returns the connection (its `id` assigned)
   */
  protected addClient(sock: Socket, remote: string, own: Omit<C, keyof ClientConn>): C {
    const conn = { ...own, id: this.nextConn++, sock, client: null, gen: 0, reportTimer: null } as C;
    this.conns.set(conn.id, conn);
    conn.reportTimer = setTimeout(() => this.cut(conn, 'no client id reported in time'), this.nodeOpts.reportMs ?? 30_000);
    conn.reportTimer.unref();
    sock.once('close', () => this.cut(conn, 'bootstrap connection closed'));
    this.nodeOpts.onEvent?.({ event: 'client-connected', conn: conn.id, remote });
    return conn;
  }

  /** The client's `{client, gen}` line on connection `sock`; a malformed, repeated or early one cuts it. */
  private report(sock: Socket, msg: Record<string, unknown>): void {
    const conn = [...this.conns.values()].find((c) => c.sock === sock);
    if (conn === undefined) return;
    if (conn.client !== null || !this.mayReport(conn) || !Number.isInteger(msg.client) || !Number.isInteger(msg.gen) || (msg.client as number) < 1) {
      this.cut(conn, 'bad client report');
      return;
    }
    conn.client = msg.client as number;
    conn.gen = msg.gen as number;
    if (conn.reportTimer) clearTimeout(conn.reportTimer);
    conn.reportTimer = null;
    this.nodeOpts.onEvent?.({ event: 'client-registered', conn: conn.id, client: conn.client, gen: conn.gen });
    // A report for a slot that is not live in that generation is cut at once.
    this.watchSlots();
  }

  /** Rules 2 and 4 against the pool's client table (no-op without a pool, or once closed). */
  private watchSlots(): void {
    const pool = this.nodeOpts.pool;
    if (!pool || this.closed) return;
    const conns = [...this.conns.values()];
    if (conns.some((c) => c.client === null)) {
      // Unreported connections cannot be matched to a slot: cut them if
      // any slot we do not know of is being revoked or recovered.
      const known = new Set(conns.map((c) => c.client));
      let slots: ReturnType<Pool['clientSlots']> = [];
      try { slots = pool.clientSlots(); } catch { /* a closed pool: nothing to compare */ }
      const gone = slots.find((s) => (s.state === 'revoked' || s.state === 'recovering') && !known.has(s.id));
      if (gone) for (const c of conns) if (c.client === null) this.cut(c, `slot ${gone.id} is ${gone.state} and this connection had not reported its id`);
    }
    for (const c of [...this.conns.values()]) {
      if (c.client === null) continue;
      let slot;
      try { slot = pool.clientSlot(c.client); } catch { continue; }
      if (slot.state !== 'live' || slot.gen !== c.gen) this.cut(c, `slot ${c.client} is ${slot.state} (gen ${slot.gen}, reported ${c.gen})`);
    }
  }

  /** Cuts one connection (once; later calls do nothing) and, when `sever` succeeded, tells the fencing authority. */
  protected cut(c: C, reason: string): void {
    if (!this.conns.has(c.id)) return;
    this.conns.delete(c.id);
    if (c.reportTimer) clearTimeout(c.reportTimer);
    const failed = this.sever(c);
    // Its access is dead: tell the fencing authority (src/fencing.ts), so the
    // lease monitor of this process may recover the client at once instead
    // of waiting for it to exit. Only when no other connection of this
    // server may still belong to it (no other connection of that client,
    // none unreported).
    const others = [...this.conns.values()].some((o) => o.client === null || o.client === c.client);
    if (failed === '' && c.client !== null && !others) {
      for (const p of this.watchers()) markTransportCut(p, c.client, c.gen);
    }
    this.nodeOpts.onEvent?.({ event: 'client-cut', conn: c.id, client: c.client, reason: `${reason}${failed}` });
  }

  /** The Pools of this process that judge fencing for this node's pool: the one it watches and those whose revocations cut. */
  private watchers(): Set<Pool> {
    const all = new Set(this.fencedPools);
    if (this.nodeOpts.pool) all.add(this.nodeOpts.pool);
    return all;
  }

  /** Stops the listener and the slot check, and cuts every connection; for `close`, after it set `closed`. */
  protected stopClients(): void {
    if (this.watchTimer) clearInterval(this.watchTimer);
    this.watchTimer = null;
    this.boot?.close();
    for (const c of [...this.conns.values()]) this.cut(c, 'server closing');
  }
}
