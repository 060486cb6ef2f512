/**
 * `dmem fsck`: checks every invariant of a pool (docs/recovery.md, "fsck";
 * the checks are assembly/audit.ts's) and, with --repair, recovers dead
 * clients and fixes what it finds.
 *
 * fsck needs the pool to itself: a running client's allocation in flight
 * looks exactly like a leak (an orphan) for a few hundred nanoseconds, and
 * repairing it would free memory that client is about to own. So it first
 * reads the client table and refuses (exit 1, nothing changed) while another
 * client may still run, unless --force. Clients that can no longer run
 * (src/cli/recover.ts, `fenceOf`) do not count: they are reported as dead
 * clients (a problem: their slots still claim the pool's memory), and
 * --repair recovers them before it runs the repairing check. A LIVE dead
 * client is recovered only once its lease has expired too (fsck waits for
 * that, at most one lease): a pid can be gone from this pid namespace and
 * still run in another one on the same host, but a running client renews.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { openPool, type ClientSlot, type FsckReport, type Pool } from '../pool.js';
import { CorruptPoolError, PoolInUseError } from '../errors.js';
import { shmPath } from '../../plugins/cxl-shm/index.js';
import { parsePoolName } from './options.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import {
  describeClient, fenceOf, leaseExpired, recoverSlot, recoveryLines, type FenceReason, type ForcedRecovery,
} from './recover.js';

interface FsckFlags {
  pool: string;
  repair: boolean;
  force: boolean;
  json: boolean;
}

/** Which run of the check a result line reports: the only one, the repairing one, or the one after it. */
type Pass = 'check' | 'repair' | 'after repair';

/** A client that can no longer run but still holds its slot. */
interface DeadClient {
  client: number;
  pid: number;
  state: ClientSlot['state'];
  reason: FenceReason;
}

/** One result line: the core's report, the dead clients, and the verdict. */
interface FsckResult extends FsckReport {
  event: 'fsck';
  pool: string;
  pass: Pass;
  deadClients: DeadClient[];
  /** Broken invariants (counts of chunks, blocks, spans, sections) plus dead clients. */
  problems: number;
}

/** The other clients of the pool, by what fsck may do about them. */
interface Survey {
  /** May still run: fsck refuses unless --force. */
  active: ClientSlot[];
  /** Fenced, and (LIVE slots) lease expired: --repair recovers them. */
  dead: Array<{ slot: ClientSlot; reason: FenceReason }>;
  /** LIVE slots whose process is gone but whose lease has not expired yet. */
  dying: Array<{ slot: ClientSlot; reason: FenceReason }>;
}

/** Adds `fsck` to `program`. */
export function addFsckCommand(program: Command): void {
  program
    .command('fsck')
    .description('check every invariant of a pool (bitmaps, owner logs, span and section states, client slots); needs the pool to itself')
    .requiredOption('--pool <name>', 'pool name (file /dev/shm/dmem-NAME) or absolute path; must exist', parsePoolName)
    .option(
      '--repair',
      'recover dead clients (process gone and lease expired, waiting at most one lease for that; revoked; or abandoned recoveries), ' +
        'fix every problem found, then check again ("after repair")',
      false,
    )
    .option(
      '--force',
      'run even while other clients may be running (without it fsck refuses, changing nothing); their operations in flight then show as orphans, ' +
        'and --repair would free them under the client',
      false,
    )
    .option('--json', 'print one JSON object per result line on stdout: each recovery, then each pass of the check', false)
    .addHelpText(
      'after',
      '\nExit status: 0 clean (or clean after --repair); 1 problems remain, another client is using the pool, or the pool is missing.\n\n' +
        'Example:\n  dmem fsck --pool demo\n  dmem fsck --pool demo --repair',
    )
    .action(async (flags: FsckFlags) => fsck(flags));
}

async function fsck(flags: FsckFlags): Promise<void> {
  const out = new Output(flags.json);
  const log = out.logger('dmem-fsck');
  const pool = await openPool(`shm:${flags.pool}`, { create: false });
  try {
    let survey = surveyClients(pool);
    if (survey.active.length > 0) {
      const who = survey.active.map((s) => describeClient(pool, s)).join(', ');
      if (!flags.force) {
        throw new PoolInUseError(
          `pool ${flags.pool} is in use by ${who}: fsck needs the pool to itself; stop ${survey.active.length > 1 ? 'them' : 'it'} first, or pass --force (nothing was changed)`,
        );
      }
      log.warn({ active: survey.active.map((s) => s.id) }, `--force: checking while other clients may run (${who})`);
    }
    if (!flags.repair) {
      const r = report(flags.pool, 'check', pool.fsck(), survey);
      print(out, r);
      if (r.problems > 0) throw new CorruptPoolError(`${problemCount(r.problems)} in pool ${flags.pool}: run dmem fsck --pool ${flags.pool} --repair`);
      return;
    }
    survey = await awaitLeaseExpiry(pool, survey, log);
    for (const { slot, reason } of survey.dead) {
      const rec = recoverSlot(pool, slot, reason);
      if (rec === null) {
        log.warn({ client: slot.id }, 'client slot changed meanwhile (renewed, or recovered by someone else): not recovered');
        continue;
      }
      printRecovery(out, flags.pool, rec);
      const { pid: clientPid, ...fields } = rec;
      log.info({ pool: flags.pool, ...fields, clientPid }, 'client recovered');
    }
    const repaired = pool.fsck({ repair: true });
    print(out, report(flags.pool, 'repair', repaired, { active: [], dead: [], dying: [] }));
    const after = report(flags.pool, 'after repair', pool.fsck(), surveyClients(pool));
    print(out, after);
    if (after.problems > 0) {
      throw new CorruptPoolError(`${problemCount(after.problems)} remain in pool ${flags.pool} after repair: see the "after repair" lines above; dmem recover --client ID recovers one client`);
    }
  } finally {
    pool.close();
  }
}

/** Sorts every other non-free slot of the client table (see `Survey`). */
function surveyClients(pool: Pool): Survey {
  const now = Date.now();
  const me = pool.clientId;
  const survey: Survey = { active: [], dead: [], dying: [] };
  for (const slot of pool.clientSlots()) {
    if (slot.id === me || slot.state === 'free') continue;
    const reason = fenceOf(pool, slot);
    if (reason === null) survey.active.push(slot);
    else if (slot.state === 'live' && !leaseExpired(pool, slot, now)) survey.dying.push({ slot, reason });
    else survey.dead.push({ slot, reason });
  }
  return survey;
}

/**
 * Waits until the lease of every dying client has expired (at most one
 * lease), then surveys again. Returns the new survey.
 */
async function awaitLeaseExpiry(pool: Pool, survey: Survey, log: Logger): Promise<Survey> {
  if (survey.dying.length === 0) return survey;
  const lease = pool.leaseMs;
  const until = Math.max(...survey.dying.map((d) => d.slot.heartbeatMs)) + lease + 1;
  const waitMs = Math.min(lease + 1, Math.max(0, until - Date.now()));
  log.info({ clients: survey.dying.map((d) => d.slot.id), waitMs }, 'dead clients still hold unexpired leases: waiting for them to expire');
  await sleep(waitMs);
  return surveyClients(pool);
}

function report(pool: string, pass: Pass, r: FsckReport, survey: Survey): FsckResult {
  const deadClients = [...survey.dead, ...survey.dying].map(({ slot, reason }) => ({ client: slot.id, pid: slot.pid, state: slot.state, reason }));
  const broken = r.orphanChunks + r.blocksOfDeadClients + r.sealedSpansInChunkSections + r.retiringSections
    + r.unsealedSpansInFreeSections + r.largeTailsWithoutHead;
  const problems = broken + deadClients.length;
  return { event: 'fsck', pool, pass, ...r, clean: problems === 0, deadClients, problems };
}

function problemCount(n: number): string {
  return `${n} problem${n === 1 ? '' : 's'}`;
}

const HEADINGS: Record<Pass, string> = {
  'check': 'fsck',
  'repair': 'repair pass (found and fixed)',
  'after repair': 'after repair',
};

function print(out: Output, r: FsckResult): void {
  out.result(r, () => [
    `${HEADINGS[r.pass]} of pool ${r.pool} (${shmPath(r.pool)}):`,
    ...pairs([
      ['sections checked', String(r.sections)],
      ['orphan chunks', `${r.orphanChunks} (allocated, owned by no live client)`],
      ['blocks of dead clients', String(r.blocksOfDeadClients)],
      ['sealed spans in CHUNK sections', String(r.sealedSpansInChunkSections)],
      ['RETIRING sections', String(r.retiringSections)],
      ['unsealed spans in FREE/LARGE sections', String(r.unsealedSpansInFreeSections)],
      ['LARGE tails without a head', String(r.largeTailsWithoutHead)],
      ['span hint mismatches', `${r.hintMismatches} (hints only, not a problem)`],
      ['dead clients', r.deadClients.length === 0
        ? '0'
        : `${r.deadClients.length}: ${r.deadClients.map((d) => `client ${d.client} (pid ${d.pid}, ${d.state})`).join(', ')}${r.pass === 'check' ? '; --repair recovers them' : ''}`],
      ['owner-log entries scanned', String(r.entriesScanned)],
      ...(r.pass === 'repair' ? [['repaired', String(r.repaired)] as const] : []),
    ]).map((l) => `  ${l}`),
    r.problems === 0 ? 'clean' : problemCount(r.problems),
  ]);
}

function printRecovery(out: Output, pool: string, r: ForcedRecovery): void {
  out.result({ event: 'recovered', pool, ...r }, () => ['recovered:', ...recoveryLines(r).map((l) => `  ${l}`)]);
}
