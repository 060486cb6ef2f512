/**
 * `dmem recover`: forces the recovery of one client, named by its id (its
 * slot in the pool's client table), without waiting for a lease monitor.
 * It also holds what `dmem fsck` shares with it: telling a client that can
 * no longer touch the pool (fenced) from one that may still be running.
 *
 * Safety (docs/recovery.md, "Revocation and fencing"): a client's memory may
 * be handed to others only once the client is fenced, i.e. it acknowledged
 * its revocation, or its process is gone (same host: pid and process start
 * time), or (another host) nothing was heard from it for two leases. A
 * client that may still run is refused, and nothing is changed, unless
 * --force: then it is revoked, given one lease to acknowledge (a running
 * client does so at its next call or heartbeat), and recovered regardless.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { openPool, Pool, type ClientSlot, type ReclaimReport } from '../pool.js';
import { ClientAliveError, InvalidArgumentError } from '../errors.js';
import { fenceOf as verdictOf, goneOrWhy, type FenceReason } from '../fencing.js';
import { intIn, parsePoolName } from './options.js';
import { fixed, pairs } from './format.js';
import { Output } from './output.js';

export type { FenceReason };

/** One recovery done by `dmem recover` or `dmem fsck --repair`. */
export interface ForcedRecovery {
  client: number;
  pid: number;
  reason: FenceReason;
  /** Duration of the reclaim itself (ms). */
  durationMs: number;
  report: ReclaimReport;
}

/** True when `slot`'s owner last renewed its lease more than one lease ago (`now`: ms since the epoch). */
export function leaseExpired(pool: Pool, slot: ClientSlot, now = Date.now()): boolean {
  return now - slot.heartbeatMs > pool.leaseMs;
}

/**
 * Why the client of non-free `slot` can no longer touch the pool, or null
 * while it may still run: the fencing authority's verdict (src/fencing.ts),
 * plus, for a LIVE slot (not revoked yet), whether its owner is provably
 * gone (the caller then revokes it before recovering).
 */
export function fenceOf(pool: Pool, slot: ClientSlot): FenceReason | null {
  if (slot.state === 'live') return goneOrWhy(slot) === null ? 'process-gone' : null;
  const v = verdictOf(pool, slot);
  return v.fenced ? v.reason : null;
}

/** Why `slot`'s client may still run (for messages), from the fencing authority. */
export function whyAlive(pool: Pool, slot: ClientSlot): string {
  if (slot.state === 'live') return goneOrWhy(slot) ?? 'its process is gone';
  const v = verdictOf(pool, slot);
  return v.fenced ? `fenced (${v.reason})` : v.why;
}

/** "client 3 (pid 1234, live, renewed 120 ms ago)": a slot for messages. */
export function describeClient(pool: Pool, slot: ClientSlot, now = Date.now()): string {
  const where = slot.hostId === Pool.hostId ? `pid ${slot.pid}` : `pid ${slot.pid} on another host`;
  const state = slot.state === 'recovering' ? `being recovered by client ${slot.recoverer}` : slot.state;
  return `client ${slot.id} (${where}, ${state}, renewed ${Math.max(0, now - slot.heartbeatMs)} ms ago)`;
}

/**
 * Recovers client `slot.id` as `pool`'s client, revoking it first when it is
 * still LIVE. The caller has decided that the client is fenced (`reason`).
 * Returns null when the slot changed meanwhile (renewed, or recovered by
 * someone else), so that nothing was recovered.
 * @throws LeaseExpiredError when `pool`'s own client was revoked; PoolClosedError
 */
export function recoverSlot(pool: Pool, slot: ClientSlot, reason: FenceReason): ForcedRecovery | null {
  let s = slot;
  if (s.state === 'live') {
    if (!pool.revokeClient(s.id, s.gen)) return null;
    s = pool.clientSlot(s.id);
  }
  const deadRecoverer = s.state === 'recovering' ? s.recoverer : 0;
  const t0 = performance.now();
  const report = pool.recoverClient(s.id, deadRecoverer);
  const durationMs = performance.now() - t0;
  return report === null ? null : { client: s.id, pid: s.pid, reason, durationMs, report };
}

/** Human lines of a recovery report. */
export function recoveryLines(r: ForcedRecovery): string[] {
  return pairs([
    ['client', `${r.client} (pid ${r.pid}; ${REASONS[r.reason]})`],
    ['blocks freed', String(r.report.blocks)],
    ['chunks freed', String(r.report.chunks)],
    ['spans unsealed', String(r.report.spansUnsealed)],
    ['sections fixed', String(r.report.sectionsFixed)],
    ['operations in flight', `${r.report.inFlight} (completed or undone)`],
    ['owner-log entries', `${r.report.entriesScanned} scanned`],
    ['took', `${fixed(r.durationMs, 3)} ms`],
  ]);
}

const REASONS: Record<FenceReason, string> = {
  'acknowledged': 'it acknowledged its revocation',
  'process-gone': 'its process is gone',
  'transport-cut': 'its memory node cut its transport',
  'takeover': 'took over a recovery whose recoverer is gone',
  'forced': 'forced: its process may still be running',
};

interface RecoverFlags {
  pool: string;
  client: number;
  force: boolean;
  json: boolean;
}

/** Adds `recover` to `program`. */
export function addRecoverCommand(program: Command): void {
  program
    .command('recover')
    .description("force one client's recovery: revoke its lease, free every block it holds or left half done, release its slot")
    .requiredOption('--pool <name>', 'pool name (file /dev/shm/dmem-NAME) or absolute path; must exist', parsePoolName)
    .requiredOption('--client <id>', 'id of the client to recover (1..4093, its client-table slot; logs and `dmem fsck` name it)', intIn(1, 4093))
    .option(
      '--force',
      'recover even when the client may still run (its process is alive and has not acknowledged): it is revoked and given one lease to acknowledge first; ' +
        'only safe when it will not touch the pool again (without it a running client is refused, nothing changed)',
      false,
    )
    .option('--json', 'print the recovery as one JSON object on stdout', false)
    .addHelpText('after', '\nExit status: 0 recovered; 1 the client is alive (without --force), its slot is free, or the pool is missing.\n\nExample:\n  dmem recover --pool demo --client 3')
    .action(async (flags: RecoverFlags) => recover(flags));
}

async function recover(flags: RecoverFlags): Promise<void> {
  const out = new Output(flags.json);
  const log = out.logger('dmem-recover');
  const pool = await openPool(`shm:${flags.pool}`, { create: false });
  try {
    const r = await recoverOne(pool, flags, log);
    out.result({ event: 'recovered', pool: flags.pool, ...r }, () => recoveryLines(r));
    const { pid: clientPid, ...fields } = r;
    log.info({ pool: flags.pool, ...fields, clientPid }, 'client recovered');
  } finally {
    pool.close();
  }
}

/**
 * The decision of `dmem recover` (see the file comment); `log` warns of a
 * forced recovery.
 * @throws InvalidArgumentError (no such client, or its slot is free), ClientAliveError
 */
async function recoverOne(pool: Pool, flags: RecoverFlags, log: Logger): Promise<ForcedRecovery> {
  const id = flags.client;
  const max = pool.geometry.maxClients;
  if (id > max) throw new InvalidArgumentError(`client ${id} does not exist: pool ${flags.pool} has client ids 1..${max}`);
  const nothing = (): InvalidArgumentError =>
    new InvalidArgumentError(`client ${id}'s slot is free: nothing to recover (it closed, or was already recovered; dmem stat counts live clients)`);
  // Attaching took a free slot: if it took this one, the slot was free.
  if (id === pool.clientId) throw nothing();
  let slot = pool.clientSlot(id);
  if (slot.state === 'free') throw nothing();

  let reason = fenceOf(pool, slot);
  if (reason === null && !flags.force) {
    throw new ClientAliveError(`${describeClient(pool, slot)} may still run: ${whyAlive(pool, slot)}; stop it first, or pass --force; nothing was changed`);
  }
  if (reason === null) {
    if (slot.state === 'live' && !pool.revokeClient(id, slot.gen)) return changed(pool, id);
    slot = pool.clientSlot(id);
    reason = await awaitFence(pool, slot);
    if (reason === 'forced') log.warn({ client: id, clientPid: slot.pid }, 'recovering a client that may still be running (--force)');
  }
  return recoverSlot(pool, slot, reason) ?? changed(pool, id);
}

/**
 * Waits up to one lease for revoked client `slot` to acknowledge or exit.
 * Returns the fence reason, 'forced' when neither happened.
 */
async function awaitFence(pool: Pool, slot: ClientSlot): Promise<FenceReason> {
  const deadline = Date.now() + pool.leaseMs;
  for (;;) {
    const s = pool.clientSlot(slot.id);
    if (s.state !== slot.state || s.gen !== slot.gen) return 'forced';
    const reason = fenceOf(pool, s);
    if (reason !== null) return reason;
    if (Date.now() >= deadline) return 'forced';
    await sleep(10);
  }
}

/** The slot changed under us: say what it is now. @throws InvalidArgumentError, ClientAliveError */
function changed(pool: Pool, id: number): never {
  const s = pool.clientSlot(id);
  if (s.state === 'free') throw new InvalidArgumentError(`client ${id}'s slot was freed meanwhile (another recoverer, or it closed): nothing to recover`);
  throw new ClientAliveError(`client ${id}'s slot changed meanwhile (now ${describeClient(pool, s)}): nothing was recovered; run dmem recover again`);
}
