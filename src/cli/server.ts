/**
 * `dmem server`: creates (or attaches to) a shared-memory pool and keeps it
 * mapped until SIGINT or SIGTERM. In one-sided mode the memory node does no
 * work per allocation (docs/design.md, "Layers"):
 * the server formats the pool (--size is needed only then), holds one client
 * slot whose lease it renews, and on shutdown unmaps cleanly; the pool file
 * persists unless --remove-on-exit is given and no other client is live.
 *
 * The pool's client lease belongs to the pool: attaching leaves it as it is,
 * and only an explicit --lease-ms changes it (the server says so, with the old
 * value), so a restarted server never shortens the lease its clients rely on.
 * It runs a lease monitor
 * (src/monitor.ts) that revokes clients silent for longer than the lease and,
 * once each is fenced, frees everything it held (docs/recovery.md). Every
 * recovery is logged on stderr (pino, with its counts and duration, in both
 * output modes) and, with --json, printed as a `recovered` result line.
 */
import { existsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { openPool, type Pool } from '../pool.js';
import { LeaseMonitor, type RecoveryEvent } from '../monitor.js';
import { removeShm, shmPath } from '../../plugins/cxl-shm/index.js';
import { formatBytes } from '../units.js';
import { intIn, parsePoolName, parsePositiveSize } from './options.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import { addTcpServeOptions, serveTcpCommand } from './serve-tcp.js';
import { untilSignal } from './until-signal.js';
import { serveOfiCli, wantsOfi, withOfiOptions } from './serve-ofi.js';
import { serveVerbsCli, wantsVerbs, withVerbsOptions } from './serve-verbs.js';

/** The flags of `dmem server` every mode shares (serve-tcp.ts and serve-ofi.ts add theirs). */
export interface ServerFlags {
  pool: string;
  size?: number;
  clients: number;
  leaseMs?: number;
  monitor: boolean;
  removeOnExit: boolean;
  json: boolean;
}

/** Adds `server` to `program`. */
export function addServerCommand(program: Command): void {
  addTcpServeOptions(withVerbsOptions(withOfiOptions(program
    .command('server'))))
    .description('create or attach a shared-memory pool (/dev/shm/dmem-NAME) and keep it up until SIGINT or SIGTERM')
    .requiredOption('--pool <name>', 'pool name (file /dev/shm/dmem-NAME) or absolute path (/dev/hugepages/..., /dev/daxX.Y)', parsePoolName)
    .option('--size <bytes>', 'pool size in bytes to create it, e.g. 256MiB, 1GiB; not needed to attach (an existing pool keeps its own size; a devdax device defaults to its size in sysfs)', parsePositiveSize)
    .option('--clients <n>', 'client-table slots when creating the pool (1..4093)', intIn(1, 4093), 256)
    .option(
      '--lease-ms <ms>',
      'set the pool\'s client lease in milliseconds (10..86400000) for every client: a client that renews later than this is revoked and its memory reclaimed; clients renew every lease/4 (without this flag an existing pool keeps its lease; a new pool starts at the format default: 1000 ms)',
      intIn(10, 86_400_000),
    )
    .option('--no-monitor', 'do not run the lease monitor (dead clients are then recovered only by another monitor, dmem recover or dmem fsck --repair)')
    .option('--remove-on-exit', 'unlink the pool file on shutdown if no other client is live then (default: the pool persists)', false)
    .option('--json', 'print one JSON object per result line (started, recovered, stopped) on stdout', false)
    .addHelpText('after', '\nExample:\n  dmem server --pool demo --size 1GiB\n  dmem stat --pool demo')
    .action(async (flags: ServerFlags & { listen?: string }) => (wantsVerbs(flags) ? serveVerbsCli(flags) : wantsOfi(flags) ? serveOfiCli(flags) : flags.listen ? serveTcpCommand(flags) : serve(flags)));
}

async function serve(flags: ServerFlags): Promise<void> {
  if (wantsOfi(flags)) return serveOfiCli(flags);
  const out = new Output(flags.json);
  const log = out.logger('dmem-server');
  const path = shmPath(flags.pool);
  const existed = existsSync(path);
  if (!existed && flags.size === undefined) {
    throw new InvalidArgumentError(`pool ${path} does not exist: give --size to create it (e.g. --size 1GiB)`);
  }
  // The heartbeat and the monitor's sweep follow the pool's lease (a quarter of it), also after --lease-ms changes it.
  const pool = await openPool(`shm:${flags.pool}`, { size: flags.size, clients: flags.clients });
  const previousLeaseMs = pool.leaseMs;
  if (flags.leaseMs !== undefined && flags.leaseMs !== previousLeaseMs) pool.setLeaseMs(flags.leaseMs);
  const leaseChanged = pool.leaseMs !== previousLeaseMs;
  const quarterMs = Math.max(5, Math.floor(pool.leaseMs / 4));
  // Recoveries are rare and worth a line on stderr in either output mode.
  const monitorLog = log.child({ component: 'lease-monitor' }, { level: 'info' });
  const onRecovery = flags.json ? (e: RecoveryEvent): void => out.result({ event: 'recovered', pool: flags.pool, ...e }, () => []) : undefined;
  const monitor = flags.monitor ? new LeaseMonitor(pool, { logger: monitorLog, onRecovery, intervalMs: quarterMs }).start() : null;
  // Listen before saying "started": a supervisor may signal as soon as it reads that line.
  const stopped = untilSignal();
  const g = pool.geometry;
  const created = !existed;
  const lease = leaseChanged
    ? `${pool.leaseMs} ms, set by --lease-ms (was ${previousLeaseMs} ms; every client now renews by the new lease)`
    : `${pool.leaseMs} ms (the pool's own${flags.leaseMs === undefined ? '; change it with --lease-ms' : ', as --lease-ms asked'})`;
  out.result(
    {
      event: 'started', pool: flags.pool, path, created, poolBytes: g.poolBytes, sections: g.sections, sectionBytes: g.sectionBytes,
      dataBytes: g.dataBytes, maxClients: g.maxClients, layoutVersion: g.layoutVersion, clientId: pool.clientId, pid: process.pid,
      leaseMs: pool.leaseMs, leaseChanged, previousLeaseMs, monitor: monitor !== null,
    },
    () => pairs([
      ['pool', `${flags.pool} (${created ? 'created' : 'attached'})`],
      ['path', path],
      ['pool bytes', `${formatBytes(g.poolBytes)} (${g.poolBytes})${!created && flags.size !== undefined && g.poolBytes !== flags.size ? `; existing pool, --size ${flags.size} ignored` : ''}`],
      ['sections', `${g.sections} x ${formatBytes(g.sectionBytes)}`],
      ['data bytes', `${formatBytes(g.dataBytes)} (${g.dataBytes})`],
      ['max clients', String(g.maxClients)],
      ['lease', `${lease}; ${monitor ? `lease monitor on (sweeps every ${quarterMs} ms)` : 'no lease monitor (--no-monitor)'}`],
      ['serving', `pid ${process.pid}; stop with SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );
  if (leaseChanged) log.warn({ pool: flags.pool, leaseMs: pool.leaseMs, previousLeaseMs }, 'pool lease changed by --lease-ms');
  log.info({ pool: flags.pool, path, created, leaseMs: pool.leaseMs, monitor: monitor !== null }, 'pool up');

  const signal = await stopped;
  log.info({ signal }, 'shutting down');
  monitor?.stop();
  // Who else holds the pool, read while this server still holds its slot.
  const others = flags.removeOnExit ? otherClients(pool) : [];
  pool.close();
  const device = existsSync(path) && statSync(path).isCharacterDevice();
  const removed = flags.removeOnExit && others.length === 0 && !device ? removeShm(flags.pool) : false;
  const kept = flags.removeOnExit && others.length > 0
    ? `${path} kept, not removed: ${others.length} other client${others.length === 1 ? ' is' : 's are'} still using it (${others.map((s) => `client ${s.id}, pid ${s.pid}`).join('; ')})`
    : `${path} kept${flags.removeOnExit && device ? ' (a device is never removed)' : ''}`;
  out.result(
    { event: 'stopped', pool: flags.pool, path, signal, removed, otherClients: others.map((s) => ({ id: s.id, pid: s.pid, state: s.state })) },
    () => [`stopped on ${signal}: pool unmapped; ${removed ? `${path} removed (no other client was live)` : kept}`],
  );
  if (others.length > 0) log.warn({ pool: flags.pool, otherClients: others.length }, 'pool kept: other clients still use it');
  log.info({ pool: flags.pool, removed }, 'stopped');
}

/**
 * The client slots other than this server's that may still use the pool:
 * live, or revoked and not yet recovered (a revoked client may be paused,
 * not gone), or being recovered.
 */
function otherClients(pool: Pool): Array<{ id: number; pid: number; state: string }> {
  return pool.clientSlots().filter((s) => s.id !== pool.clientId && s.state !== 'free');
}
