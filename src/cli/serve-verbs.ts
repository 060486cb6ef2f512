/**
 * `dmem server --transport verbs`: the shared-memory pool of `dmem server`,
 * also served to one-sided remote clients over rdma-core verbs
 * (plugins/rdma/verbs-server.ts): an RDMA device must be present (the
 * server refuses to start otherwise, naming what to check), the pool file
 * is mapped once and registered per client, clients bootstrap on --listen
 * with the token of --token-file and connect an RC queue pair through
 * rdma_cm, and the lease monitor runs here as for shm. A client the monitor
 * revokes has its QP moved to the error state and its MR deregistered before
 * the monitor can reclaim its memory (`fenceOnRevoke`), docs/rdma.md.
 */
import type { ServerFlags } from './server.js';
import { existsSync } from 'node:fs';
import { InvalidArgumentError as UsageError, type Command } from 'commander';
import { openPool } from '../pool.js';
import { LeaseMonitor, type RecoveryEvent } from '../monitor.js';
import { removeShm, shmPath } from '../../plugins/cxl-shm/index.js';
import { formatBytes } from '../units.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import { readTokenFile } from './serve-tcp.js';
import { untilSignal } from './until-signal.js';

/** The flags `dmem server` gets, with the verbs ones. */
export interface VerbsServerFlags extends ServerFlags {
  transport: 'verbs';
  listen?: string;
  tokenFile?: string;
  hcaAtomics?: boolean;
}

/** Adds --hca-atomics to the `server` command (--transport, --listen and --token-file come from serve-ofi.ts and serve-tcp.ts); returns it. */
export function withVerbsOptions(cmd: Command): Command {
  return cmd.option('--hca-atomics', 'with --transport verbs: accept RDMA devices whose atomics are atomic only among RDMA operations (atomic_cap IBV_ATOMIC_HCA), not against this node\'s CPU atomics (lease monitor, recovery); see docs/rdma.md, "verbs"', false);
}

/** True when the parsed flags ask for the verbs transport. */
export function wantsVerbs(flags: object): flags is VerbsServerFlags {
  return (flags as { transport?: string }).transport === 'verbs';
}

/**
 * Runs the verbs server until SIGINT or SIGTERM.
 * @throws commander's InvalidArgumentError (usage: exit 2), InvalidArgumentError (token file),
 *   VerbsUnavailableError (no RDMA device, library, kernel module, address), TransportUnavailableError
 */
export async function serveVerbsCli(flags: VerbsServerFlags): Promise<void> {
  const missing = flags.listen === undefined ? '--listen HOST:PORT (an IP address of an RDMA interface)' : flags.tokenFile === undefined ? '--token-file FILE (the shared secret clients present)' : null;
  if (missing !== null || flags.listen === undefined || flags.tokenFile === undefined) {
    const text = `--transport verbs needs ${missing}`;
    process.stderr.write(`error: ${text}\n`);
    throw new UsageError(text);
  }
  const token = readTokenFile(flags.tokenFile);
  const { serveVerbs } = await import('../../plugins/rdma/verbs-server.js');
  const { mapWholePool } = await import('../../plugins/rdma/memory.js');
  const { loadVerbs, rdmaDevices } = await import('../../plugins/rdma/verbs.js');
  // Refuse before creating a pool file: no library or no device is a setup error, not a pool one.
  rdmaDevices(loadVerbs());

  const out = new Output(flags.json);
  const log = out.logger('dmem-server');
  const existed = existsSync(shmPath(flags.pool));
  const pool = await openPool(`shm:${flags.pool}`, { size: flags.size, clients: flags.clients });
  if (flags.leaseMs !== undefined) pool.setLeaseMs(flags.leaseMs);
  const quarterMs = Math.max(5, Math.floor(pool.leaseMs / 4));
  const mem = mapWholePool(flags.pool, pool.geometry.layoutVersion);
  const verbsLog = log.child({ component: 'verbs' }, { level: 'info' });
  const server = await serveVerbs(mem, {
    listen: flags.listen, token, pool, watchMs: quarterMs, hcaAtomics: flags.hcaAtomics === true,
    onEvent: (e) => (e.event === 'client-cut' || e.event === 'refused' ? verbsLog.warn(e, e.event) : verbsLog.info(e, e.event)),
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
  const stopped = untilSignal();
  const g = pool.geometry;
  const { host, port } = server.address;
  const url = `verbs://${host.includes(':') ? `[${host}]` : host}:${port}`;
  out.result(
    {
      event: 'started', pool: flags.pool, path: shmPath(flags.pool), transport: 'verbs', devices: server.devices, url, host, port,
      cmPort: server.cmPort, poolBytes: g.poolBytes, sections: g.sections, maxClients: g.maxClients, layoutVersion: g.layoutVersion,
      clientId: pool.clientId, pid: process.pid, leaseMs: pool.leaseMs, monitor: monitor !== null,
    },
    () => pairs([
      ['pool', `${flags.pool} (${shmPath(flags.pool)}), ${formatBytes(g.poolBytes)}, ${g.sections} sections, ${g.maxClients} client slots`],
      ['serving', `${url} (RDMA devices ${server.devices.join(', ')}; rdma_cm port ${server.cmPort})`],
      ['clients', `openPool('${url}', { token }) with the contents of ${flags.tokenFile}`],
      ['lease', `${pool.leaseMs} ms; ${monitor ? 'lease monitor on; a revoked client\'s QP and MR are cut first' : 'no lease monitor (--no-monitor)'}`],
      ['stop', `pid ${process.pid}: SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );

  const signal = await stopped;
  monitor?.stop();
  await server.close();
  mem.unmap();
  pool.close();
  const removed = flags.removeOnExit ? removeShm(flags.pool) : false;
  out.result({ event: 'stopped', pool: flags.pool, signal, removed }, () => [`stopped on ${signal}: clients cut, pool ${removed ? 'removed' : 'kept'}`]);
}
