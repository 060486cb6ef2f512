/**
 * `dmem server --transport ofi`: the shared-memory pool of `dmem server`,
 * also served to one-sided remote clients over libfabric
 * (plugins/rdma/server.ts): the pool file is mapped once and registered per
 * client, clients bootstrap on --listen with the token of --token-file,
 * and the lease monitor runs here as for shm. A client the monitor revokes
 * has its key cut before the monitor can reclaim its memory
 * (`fenceOnRevoke`), docs/rdma.md.
 */
import type { ServerFlags } from './server.js';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { InvalidArgumentError as UsageError, Option, type Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { openPool } from '../pool.js';
import { LeaseMonitor, type RecoveryEvent } from '../monitor.js';
import { removeShm, shmPath } from '../../plugins/cxl-shm/index.js';
import { formatBytes } from '../units.js';
import { pairs } from './format.js';
import { Output } from './output.js';

/** The flags `dmem server` gets, with the ofi ones. */
export interface OfiServerFlags extends ServerFlags {
  transport: 'shm' | 'ofi';
  provider: string;
  listen?: string;
  tokenFile?: string;
}

/** Adds --transport and --provider to the `server` command (--listen and --token-file come from serve-tcp.ts); returns it. */
export function withOfiOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--transport <kind>', 'how clients reach the pool: shm (this host, /dev/shm), ofi (also remote one-sided clients over libfabric: ofi+PROVIDER://HOST:PORT) or verbs (also remote one-sided clients over rdma-core verbs: verbs://HOST:PORT)').choices(['shm', 'ofi', 'verbs']).default('shm'))
    .option('--provider <name>', 'with --transport ofi: libfabric provider, tcp (tcp;ofi_rxm), sockets, or a raw provider string; see `fi_info -l`', 'tcp');
}

/** True when the parsed flags ask for the ofi transport. */
export function wantsOfi(flags: object): flags is OfiServerFlags {
  return (flags as { transport?: string }).transport === 'ofi';
}

/** Runs the ofi server until SIGINT or SIGTERM. @throws commander's InvalidArgumentError (usage: exit 2), InvalidArgumentError (token file), TransportUnavailableError */
export async function serveOfiCli(flags: OfiServerFlags): Promise<void> {
  const missing = flags.listen === undefined ? '--listen HOST:PORT' : flags.tokenFile === undefined ? '--token-file FILE (the shared secret clients present)' : null;
  if (missing !== null || flags.listen === undefined || flags.tokenFile === undefined) {
    // Bad usage: commander prints its own errors, an action's are only thrown (exit 2).
    const text = `--transport ofi needs ${missing}`;
    process.stderr.write(`error: ${text}\n`);
    throw new UsageError(text);
  }
  let token: string;
  try {
    token = readFileSync(flags.tokenFile, 'utf8').replace(/\r?\n$/, '');
  } catch (e) {
    throw new InvalidArgumentError(`cannot read --token-file ${flags.tokenFile}: ${(e as Error).message}`);
  }
  if (token === '') throw new InvalidArgumentError(`--token-file ${flags.tokenFile} is empty`);
  const { serveOfi } = await import('../../plugins/rdma/server.js');
  const { mapWholePool } = await import('../../plugins/rdma/memory.js');

  const out = new Output(flags.json);
  const log = out.logger('dmem-server');

  const existed = existsSync(shmPath(flags.pool));
  const pool = await openPool(`shm:${flags.pool}`, { size: flags.size, clients: flags.clients });
  // The pool keeps its own lease unless --lease-ms asks (as `dmem server` does).
  if (flags.leaseMs !== undefined) pool.setLeaseMs(flags.leaseMs);
  const quarterMs = Math.max(5, Math.floor(pool.leaseMs / 4));
  const mem = mapWholePool(flags.pool, pool.geometry.layoutVersion);
  const ofiLog = log.child({ component: 'ofi' }, { level: 'info' });
  const server = await serveOfi(mem, {
    provider: flags.provider, listen: flags.listen, token, pool,
    watchMs: quarterMs,
    onEvent: (e) => (e.event === 'client-cut' || e.event === 'refused' ? ofiLog.warn(e, e.event) : ofiLog.info(e, e.event)),
  }).catch((e: unknown) => {
    mem.unmap();
    pool.close();
    if (!existed) removeShm(flags.pool);
    throw e;
  });
  server.fenceOnRevoke(pool);
  const monitorLog = log.child({ component: 'lease-monitor' }, { level: 'info' });
  const onRecovery = flags.json ? (e: RecoveryEvent): void => out.result({ event: 'recovered', pool: flags.pool, ...e }, () => []) : undefined;
  const monitor = flags.monitor ? new LeaseMonitor(pool, { logger: monitorLog, onRecovery, intervalMs: quarterMs }).start() : null;
  const g = pool.geometry;
  const { host, port } = server.address;
  const url = `ofi+${flags.provider}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  out.result(
    {
      event: 'started', pool: flags.pool, path: shmPath(flags.pool), transport: 'ofi', provider: server.provider, url, host, port,
      poolBytes: g.poolBytes, sections: g.sections, maxClients: g.maxClients, layoutVersion: g.layoutVersion, clientId: pool.clientId,
      pid: process.pid, leaseMs: pool.leaseMs, monitor: monitor !== null, progress: server.progressMode,
    },
    () => pairs([
      ['pool', `${flags.pool} (${shmPath(flags.pool)}), ${formatBytes(g.poolBytes)}, ${g.sections} sections, ${g.maxClients} client slots`],
      ['serving', `${url} (libfabric provider ${server.provider}, CQ progress by ${server.progressMode})`],
      ['clients', `openPool('${url}', { token }) with the contents of ${flags.tokenFile}`],
      ['lease', `${pool.leaseMs} ms; ${monitor ? 'lease monitor on; a revoked client\'s key is cut first' : 'no lease monitor (--no-monitor)'}`],
      ['stop', `pid ${process.pid}: SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );

  const signal = await untilSignal();
  monitor?.stop();
  await server.close();
  mem.unmap();
  pool.close();
  const removed = flags.removeOnExit ? removeShm(flags.pool) : false;
  out.result({ event: 'stopped', pool: flags.pool, signal, removed }, () => [`stopped on ${signal}: clients cut, pool ${removed ? 'removed' : 'kept'}`]);
}

/** Resolves with the first SIGINT or SIGTERM; keeps Node alive until then. */
async function untilSignal(): Promise<NodeJS.Signals> {
  const keepAlive = setInterval(() => undefined, 2 ** 30);
  const ac = new AbortController();
  try {
    const names: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
    return await Promise.race(names.map((s) => once(process, s, { signal: ac.signal }).then(() => s, () => s)));
  } finally {
    ac.abort();
    clearInterval(keepAlive);
  }
}
