/**
 * `dmem client --config FILE`: the compute-node service
 * (src/transports/tcp/service.ts). Connects to the memory nodes the config
 * lists and serves local applications on a Unix socket until SIGINT or
 * SIGTERM; an application opens `openTcpPool('unix:PATH')`.
 */
import type { Command } from 'commander';
import { loadNodesConfig } from '../transports/tcp/nodes.js';
import { serveComputeNode } from '../transports/tcp/service.js';
import { intIn } from './options.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import { untilSignal } from './until-signal.js';

interface ClientFlags {
  config: string;
  socket: string;
  leaseMs: number;
  json: boolean;
}

/** Adds `client` to `program`. */
export function addClientCommand(program: Command): void {
  program
    .command('client')
    .description('compute-node service: hold the connections to the memory nodes and serve local applications on a Unix socket (openTcpPool("unix:PATH"))')
    .requiredOption('--config <file>', 'JSON: { "nodes": [{ "id": 1, "url": "tcp://HOST:PORT" }, ...], "policy": "round-robin" | "most-free", "tokenFile": "FILE" }')
    .option('--socket <path>', 'Unix socket local applications connect to', `/tmp/dmem-${process.getuid?.() ?? 0}.sock`)
    .option('--lease-ms <ms>', 'lease of local applications (ms): one silent for longer, or gone, has its memory freed', intIn(10, 86_400_000), 1000)
    .option('--json', 'print one JSON object per result line (started, stopped) on stdout', false)
    .addHelpText('after', '\nExample:\n  dmem client --config nodes.json --socket /tmp/dmem.sock\n  (in an application) await openTcpPool("unix:/tmp/dmem.sock")')
    .action(async (flags: ClientFlags) => runClient(flags));
}

async function runClient(flags: ClientFlags): Promise<void> {
  const out = new Output(flags.json);
  const log = out.logger('dmem-client');
  const cfg = loadNodesConfig(flags.config);
  const svc = await serveComputeNode({ nodes: cfg, listen: { path: flags.socket }, leaseMs: flags.leaseMs, logger: log });
  out.result(
    { event: 'started', url: svc.url, nodes: cfg.nodes, policy: cfg.policy ?? 'round-robin', leaseMs: flags.leaseMs, pid: process.pid },
    () => pairs([
      ['serving', svc.url],
      ['memory nodes', cfg.nodes.map((n) => `${n.id ?? '?'}=${n.url}`).join(', ')],
      ['policy', cfg.policy ?? 'round-robin'],
      ['lease', `${flags.leaseMs} ms`],
      ['pid', `${process.pid}; stop with SIGINT (Ctrl-C) or SIGTERM`],
    ]),
  );
  const signal = await untilSignal();
  await svc.close();
  out.result({ event: 'stopped', signal }, () => [`stopped on ${signal}`]);
}
