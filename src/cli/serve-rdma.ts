/**
 * `dmem server --transport ofi|verbs`: the shared-memory pool of `dmem
 * server`, also served to one-sided remote clients (docs/rdma.md). What
 * both transports do alike is here: the usage check, the token file, the
 * pool (created or attached) mapped once in one piece, the memory node
 * started on it with a slot watch every quarter lease, the lease monitor
 * (after `fenceOnRevoke`: a client the monitor revokes is cut before the
 * monitor can reclaim its memory), the started and stopped lines, and the
 * shutdown on SIGINT or SIGTERM. What differs (flags, how the node starts,
 * what the lines say) is an RdmaBackend: serve-ofi.ts, serve-verbs.ts.
 */
import { existsSync } from 'node:fs';
import { InvalidArgumentError as UsageError } from 'commander';
import { openPool, type Pool } from '../pool.js';
import { LeaseMonitor, type RecoveryEvent } from '../monitor.js';
import { removeShm, shmPath } from '../../plugins/cxl-shm/index.js';
import type { ServedMemory } from '../../plugins/rdma/server.js';
import { formatBytes } from '../units.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import { readTokenFile } from './serve-tcp.js';
import type { ServerFlags } from './server.js';
import { untilSignal } from './until-signal.js';

/** The flags `dmem server` gets with a one-sided transport (a backend adds its own). */
export interface RdmaServerFlags extends ServerFlags {
  transport: string;
  listen?: string;
  tokenFile?: string;
}

/** A running one-sided memory node (OfiServer, VerbsServer). */
export interface RdmaNode {
  /** The bootstrap listen address (the real port when --listen gave port 0). */
  readonly address: { host: string; port: number };
  fenceOnRevoke(pool: Pool): void;
  close(): Promise<void>;
}

/** What every node gets from the glue. */
export interface RdmaNodeOptions {
  listen: string;
  token: Buffer;
  pool: Pool;
  /** The slot watch's period (ms): the lease monitor's, a quarter lease. */
  watchMs: number;
  onEvent: (e: { event: string }) => void;
}

/** What differs between the transports; see the file comment. */
export interface RdmaBackend<F extends RdmaServerFlags, N extends RdmaNode> {
  /** What --listen must name, for the usage error (`HOST:PORT ...`). */
  listenHint: string;
  /** Refuses before any pool file is created when the transport cannot work on this host (a setup error, not a pool one). @throws */
  precheck?(flags: F): Promise<void>;
  /** Starts the node on `mem`. @throws the node's errors (the glue then removes a pool file it created) */
  start(mem: ServedMemory, opts: RdmaNodeOptions, flags: F): Promise<N>;
  /** The URL's scheme: `ofi+tcp`, `verbs`. */
  scheme(flags: F): string;
  /** The node's own fields of the `started` line (after `port`). */
  facts(node: N): Record<string, unknown>;
  /** What the `serving` line says after the URL. */
  serving(node: N): string;
  /** What the `lease` line says is cut first for a revoked client (`key is`, `QP and MR are`). */
  cutFirst: string;
}

/**
 * Runs a one-sided memory node until SIGINT or SIGTERM.
 * @throws commander's InvalidArgumentError (usage: exit 2), InvalidArgumentError (token file), and the backend's
 *   precheck and start errors (TransportUnavailableError and its subclasses)
 */
export async function serveRdma<F extends RdmaServerFlags, N extends RdmaNode>(flags: F, b: RdmaBackend<F, N>): Promise<void> {
  const missing = flags.listen === undefined ? `--listen ${b.listenHint}` : flags.tokenFile === undefined ? '--token-file FILE (the shared secret clients present)' : null;
  if (missing !== null || flags.listen === undefined || flags.tokenFile === undefined) {
    // Bad usage: commander prints its own errors, an action's are only thrown (exit 2).
    const text = `--transport ${flags.transport} needs ${missing}`;
    process.stderr.write(`error: ${text}\n`);
    throw new UsageError(text);
  }
  const token = readTokenFile(flags.tokenFile);
  const { mapWholePool } = await import('../../plugins/rdma/memory.js');
  await b.precheck?.(flags);

  const out = new Output(flags.json);
  const log = out.logger('dmem-server');
  const existed = existsSync(shmPath(flags.pool));
  const pool = await openPool(`shm:${flags.pool}`, { size: flags.size, clients: flags.clients });
  // The pool keeps its own lease unless --lease-ms asks (as `dmem server` does).
  if (flags.leaseMs !== undefined) pool.setLeaseMs(flags.leaseMs);
  const quarterMs = Math.max(5, Math.floor(pool.leaseMs / 4));
  const mem = mapWholePool(flags.pool, pool.geometry.layoutVersion);
  const nodeLog = log.child({ component: flags.transport }, { level: 'info' });
  const node = await b.start(mem, {
    listen: flags.listen, token, pool, watchMs: quarterMs,
    onEvent: (e) => (e.event === 'client-cut' || e.event === 'refused' ? nodeLog.warn(e, e.event) : nodeLog.info(e, e.event)),
  }, flags).catch((e: unknown) => {
    mem.unmap();
    pool.close();
    if (!existed) removeShm(flags.pool);
    throw e;
  });
  node.fenceOnRevoke(pool);
  const monitorLog = log.child({ component: 'lease-monitor' }, { level: 'info' });
  const onRecovery = flags.json ? (e: RecoveryEvent): void => out.result({ event: 'recovered', pool: flags.pool, ...e }, () => []) : undefined;
  const monitor = flags.monitor ? new LeaseMonitor(pool, { logger: monitorLog, onRecovery, intervalMs: quarterMs }).start() : null;
  // Listen before saying "started": a supervisor may signal as soon as it reads that line.
  const stopped = untilSignal();
  const g = pool.geometry;
  const { host, port } = node.address;
  const url = `${b.scheme(flags)}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  out.result(
    {
      event: 'started', pool: flags.pool, path: shmPath(flags.pool), transport: flags.transport, url, host, port, ...b.facts(node),
      poolBytes: g.poolBytes, sections: g.sections, maxClients: g.maxClients, layoutVersion: g.layoutVersion, clientId: pool.clientId,
      pid: process.pid, leaseMs: pool.leaseMs, monitor: monitor !== null,
    },
    () => pairs([
      ['pool', `${flags.pool} (${shmPath(flags.pool)}), ${formatBytes(g.poolBytes)}, ${g.sections} sections, ${g.maxClients} client slots`],
      ['serving', `${url} (${b.serving(node)})`],
      ['clients', `openPool('${url}', { token }) with the contents of ${flags.tokenFile}`],
      ['lease', `${pool.leaseMs} ms; ${monitor ? `lease monitor on; a revoked client's ${b.cutFirst} cut first` : 'no lease monitor (--no-monitor)'}`],
      ['stop', `pid ${process.pid}: SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );

  const signal = await stopped;
  monitor?.stop();
  await node.close();
  mem.unmap();
  pool.close();
  const removed = flags.removeOnExit ? removeShm(flags.pool) : false;
  out.result({ event: 'stopped', pool: flags.pool, signal, removed }, () => [`stopped on ${signal}: clients cut, pool ${removed ? 'removed' : 'kept'}`]);
}
