/**
 * `dmem server`: creates (or attaches to) a shared-memory pool and keeps it
 * mapped until SIGINT or SIGTERM. In one-sided mode the memory node does no
 * work per allocation (../shared/DESIGN.md, "Two ways to run the core"):
 * the server formats the pool, holds one client slot whose lease it renews,
 * and on shutdown unmaps cleanly; the pool file persists unless
 * --remove-on-exit is given.
 *
 * It also sets the pool's client lease (--lease-ms) and runs a lease monitor
 * (src/monitor.ts) that revokes clients silent for longer than the lease and,
 * once each is fenced, frees everything it held (docs/recovery.md). Every
 * recovery is logged on stderr (pino, with its counts and duration, in both
 * output modes) and, with --json, printed as a `recovered` result line.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { openPool } from '../pool.js';
import { LeaseMonitor, type RecoveryEvent } from '../monitor.js';
import { removeShm, shmPath } from '../../plugins/cxl-shm/index.js';
import { formatBytes } from '../units.js';
import { intIn, parsePoolName, parsePositiveSize } from './options.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import { serveOfiCli, wantsOfi, withOfiOptions } from './serve-ofi.js';

interface ServerFlags {
  pool: string;
  size: number;
  clients: number;
  leaseMs: number;
  monitor: boolean;
  removeOnExit: boolean;
  json: boolean;
}

/** Adds `server` to `program`. */
export function addServerCommand(program: Command): void {
  withOfiOptions(program.command('server'))
    .description('create or attach a shared-memory pool (/dev/shm/dmem-NAME) and keep it up until SIGINT or SIGTERM')
    .requiredOption('--pool <name>', 'pool name (file /dev/shm/dmem-NAME) or absolute path (/dev/hugepages/..., /dev/daxX.Y)', parsePoolName)
    .requiredOption('--size <bytes>', 'pool size in bytes, e.g. 4096, 256MiB, 1GiB; an existing pool keeps its own size', parsePositiveSize)
    .option('--clients <n>', 'client-table slots when creating the pool (1..4093)', intIn(1, 4093), 256)
    .option(
      '--lease-ms <ms>',
      'client lease in milliseconds (10..86400000), set in the pool for every client: a client that renews later than this is revoked and its memory reclaimed; clients renew every lease/4',
      intIn(10, 86_400_000),
      1000,
    )
    .option('--no-monitor', 'do not run the lease monitor (dead clients are then recovered only by another monitor, dmem recover or dmem fsck --repair)')
    .option('--remove-on-exit', 'unlink the pool file on shutdown (default: the pool persists)', false)
    .option('--json', 'print one JSON object per result line (started, recovered, stopped) on stdout', false)
    .addHelpText('after', '\nExample:\n  dmem server --pool demo --size 1GiB\n  dmem stat --pool demo')
    .action(async (flags: ServerFlags) => serve(flags));
}

async function serve(flags: ServerFlags): Promise<void> {
  if (wantsOfi(flags)) return serveOfiCli(flags);
  const out = new Output(flags.json);
  const log = out.logger('dmem-server');
  const path = shmPath(flags.pool);
  const existed = existsSync(path);
  // The pool's idle heartbeat period is fixed when it opens: a quarter of the lease set below, as the monitor's sweep.
  const quarterMs = Math.max(5, Math.floor(flags.leaseMs / 4));
  const pool = await openPool(`shm:${flags.pool}`, { size: flags.size, clients: flags.clients, heartbeatMs: quarterMs });
  pool.setLeaseMs(flags.leaseMs);
  // Recoveries are rare and worth a line on stderr in either output mode.
  const monitorLog = log.child({ component: 'lease-monitor' }, { level: 'info' });
  const onRecovery = flags.json ? (e: RecoveryEvent): void => out.result({ event: 'recovered', pool: flags.pool, ...e }, () => []) : undefined;
  const monitor = flags.monitor ? new LeaseMonitor(pool, { logger: monitorLog, onRecovery, intervalMs: quarterMs }).start() : null;
  const g = pool.geometry;
  const created = !existed;
  out.result(
    {
      event: 'started', pool: flags.pool, path, created, poolBytes: g.poolBytes, sections: g.sections, sectionBytes: g.sectionBytes,
      dataBytes: g.dataBytes, maxClients: g.maxClients, layoutVersion: g.layoutVersion, clientId: pool.clientId, pid: process.pid,
      leaseMs: pool.leaseMs, monitor: monitor !== null,
    },
    () => pairs([
      ['pool', `${flags.pool} (${created ? 'created' : 'attached'})`],
      ['path', path],
      ['pool bytes', `${formatBytes(g.poolBytes)} (${g.poolBytes})${!created && g.poolBytes !== flags.size ? `; existing pool, --size ${flags.size} ignored` : ''}`],
      ['sections', `${g.sections} x ${formatBytes(g.sectionBytes)}`],
      ['data bytes', `${formatBytes(g.dataBytes)} (${g.dataBytes})`],
      ['max clients', String(g.maxClients)],
      ['lease', `${pool.leaseMs} ms; ${monitor ? `lease monitor on (sweeps every ${quarterMs} ms)` : 'no lease monitor (--no-monitor)'}`],
      ['serving', `pid ${process.pid}; stop with SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );
  log.info({ pool: flags.pool, path, created, leaseMs: pool.leaseMs, monitor: monitor !== null }, 'pool up');

  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    // Signal listeners do not keep Node alive; this timer does.
    const keepAlive = setInterval(() => undefined, 2 ** 30);
    const stop = (sig: NodeJS.Signals): void => {
      clearInterval(keepAlive);
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      resolve(sig);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  log.info({ signal }, 'shutting down');
  monitor?.stop();
  pool.close();
  const removed = flags.removeOnExit ? removeShm(flags.pool) : false;
  out.result(
    { event: 'stopped', pool: flags.pool, path, signal, removed },
    () => [`stopped on ${signal}: pool unmapped; ${removed ? `${path} removed` : `${path} kept`}`],
  );
  log.info({ pool: flags.pool, removed }, 'stopped');
}
