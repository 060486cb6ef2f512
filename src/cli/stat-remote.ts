/**
 * `dmem stat --url tcp://HOST:PORT [--url ...]` or `dmem stat --config
 * FILE`: the census of every memory node a remote pool spans, one row per
 * node (a node that is down is listed as such).
 */
import type { Command } from 'commander';
import { loadNodesConfig, openNodesPool } from '../transports/tcp/nodes.js';
import { formatBytes } from '../units.js';
import { fixed, table } from './format.js';
import { Output } from './output.js';
import { readTokenFile } from './serve-tcp.js';

/** The flags `dmem stat` passes on when --url or --config is given. */
export interface RemoteStatFlags {
  url?: string[];
  config?: string;
  tokenFile?: string;
  json: boolean;
}

/** Adds --url, --config and --token-file to `dmem stat`. */
export function addRemoteStatOptions(cmd: Command): Command {
  return cmd
    .option('--url <url...>', 'instead of --pool: memory servers to ask (tcp://HOST:PORT, tls://..., unix:PATH); one row per node')
    .option('--config <file>', 'instead of --pool: a nodes config file (as dmem client takes)')
    .option('--token-file <file>', 'with --url: the servers\' token file');
}

/** Prints every node's census. */
export async function statRemote(flags: RemoteStatFlags): Promise<void> {
  const out = new Output(flags.json);
  const token = flags.tokenFile ? readTokenFile(flags.tokenFile).toString() : undefined;
  const pool = flags.config ? await openNodesPool(loadNodesConfig(flags.config), { token }) : await openNodesPool(flags.url ?? [], { token });
  try {
    const rows = await pool.nodeCensus();
    if (flags.json) {
      for (const r of rows) out.result(r, () => []);
      return;
    }
    out.lines(table(
      [{ header: 'node' }, { header: 'url', left: true }, { header: 'state', left: true }, { header: 'held' }, { header: 'free' },
        { header: 'largest free' }, { header: 'fragmentation' }, { header: 'clients' }],
      rows.map((r) => (r.census === null
        ? [String(r.node), r.url, `down: ${r.error ?? ''}`, '', '', '', '', '']
        : [String(r.node), r.url, 'up', formatBytes(r.census.chunks.held * 4096), formatBytes(r.census.freeBytes),
          formatBytes(r.census.largestFreeBytes), fixed(r.census.fragmentation, 3), String(r.census.liveClients)])),
    ));
  } finally {
    await pool.close();
  }
}
