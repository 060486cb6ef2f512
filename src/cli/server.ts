/**
 * `dmem server`: creates (or attaches to) a shared-memory pool and keeps it
 * mapped until SIGINT or SIGTERM. In one-sided mode the memory node does no
 * work per allocation (../shared/DESIGN.md, "Two ways to run the core"):
 * the server formats the pool, holds one client slot whose lease it renews,
 * and on shutdown unmaps cleanly; the pool file persists unless
 * --remove-on-exit is given.
 */
import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { openPool } from '../pool.js';
import { removeShm, shmPath } from '../../plugins/cxl-shm/index.js';
import { formatBytes } from '../units.js';
import { intIn, parsePoolName, parsePositiveSize } from './options.js';
import { pairs } from './format.js';
import { Output } from './output.js';

interface ServerFlags {
  pool: string;
  size: number;
  clients: number;
  removeOnExit: boolean;
  json: boolean;
}

/** Adds `server` to `program`. */
export function addServerCommand(program: Command): void {
  program
    .command('server')
    .description('create or attach a shared-memory pool (/dev/shm/dmem-NAME) and keep it up until SIGINT or SIGTERM')
    .requiredOption('--pool <name>', 'pool name (file /dev/shm/dmem-NAME) or absolute path (/dev/hugepages/..., /dev/daxX.Y)', parsePoolName)
    .requiredOption('--size <bytes>', 'pool size in bytes, e.g. 4096, 256MiB, 1GiB; an existing pool keeps its own size', parsePositiveSize)
    .option('--clients <n>', 'client-table slots when creating the pool (1..4095)', intIn(1, 4095), 256)
    .option('--remove-on-exit', 'unlink the pool file on shutdown (default: the pool persists)', false)
    .option('--json', 'print one JSON object per result line (started, stopped) on stdout', false)
    .addHelpText('after', '\nExample:\n  dmem server --pool demo --size 1GiB\n  dmem stat --pool demo')
    .action(async (flags: ServerFlags) => serve(flags));
}

async function serve(flags: ServerFlags): Promise<void> {
  const out = new Output(flags.json);
  const log = out.logger('dmem-server');
  const path = shmPath(flags.pool);
  const existed = existsSync(path);
  const pool = await openPool(`shm:${flags.pool}`, { size: flags.size, clients: flags.clients });
  const g = pool.geometry;
  const created = !existed;
  out.result(
    {
      event: 'started', pool: flags.pool, path, created, poolBytes: g.poolBytes, sections: g.sections, sectionBytes: g.sectionBytes,
      dataBytes: g.dataBytes, maxClients: g.maxClients, layoutVersion: g.layoutVersion, clientId: pool.clientId, pid: process.pid,
    },
    () => pairs([
      ['pool', `${flags.pool} (${created ? 'created' : 'attached'})`],
      ['path', path],
      ['pool bytes', `${formatBytes(g.poolBytes)} (${g.poolBytes})${!created && g.poolBytes !== flags.size ? `; existing pool, --size ${flags.size} ignored` : ''}`],
      ['sections', `${g.sections} x ${formatBytes(g.sectionBytes)}`],
      ['data bytes', `${formatBytes(g.dataBytes)} (${g.dataBytes})`],
      ['max clients', String(g.maxClients)],
      ['serving', `pid ${process.pid}; stop with SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );
  log.info({ pool: flags.pool, path, created }, 'pool up');

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
  pool.close();
  const removed = flags.removeOnExit ? removeShm(flags.pool) : false;
  out.result(
    { event: 'stopped', pool: flags.pool, path, signal, removed },
    () => [`stopped on ${signal}: pool unmapped; ${removed ? `${path} removed` : `${path} kept`}`],
  );
  log.info({ pool: flags.pool, removed }, 'stopped');
}
