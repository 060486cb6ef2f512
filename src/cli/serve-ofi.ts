/**
 * `dmem server --transport ofi`: the shared-memory pool of `dmem server`,
 * also served to one-sided remote clients over libfabric
 * (plugins/rdma/server.ts): the pool file is mapped once and registered per
 * client, clients bootstrap on --listen with the token of --token-file,
 * and the lease monitor runs here as for shm. A client the monitor revokes
 * has its key cut before the monitor can reclaim its memory
 * (`fenceOnRevoke`), docs/rdma.md. The glue both one-sided transports
 * share is serve-rdma.ts; this file is what ofi adds.
 */
import { Option, type Command } from 'commander';
import type { OfiServer } from '../../plugins/rdma/server.js';
import { serveRdma, type RdmaBackend, type RdmaServerFlags } from './serve-rdma.js';

/** The flags `dmem server` gets, with the ofi ones. */
export interface OfiServerFlags extends RdmaServerFlags {
  transport: 'shm' | 'ofi';
  provider: string;
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

/** The ofi side of serve-rdma.ts. */
const ofi: RdmaBackend<OfiServerFlags, OfiServer> = {
  listenHint: 'HOST:PORT',
  start: async (mem, opts, flags) => (await import('../../plugins/rdma/server.js')).serveOfi(mem, { ...opts, provider: flags.provider }),
  scheme: (flags) => `ofi+${flags.provider}`,
  facts: (node) => ({ provider: node.provider, progress: node.progressMode }),
  serving: (node) => `libfabric provider ${node.provider}, CQ progress by ${node.progressMode}`,
  cutFirst: 'key is',
};

/**
 * Runs the ofi server until SIGINT or SIGTERM.
 * @throws commander's InvalidArgumentError (usage: exit 2), InvalidArgumentError (token file), TransportUnavailableError
 */
export function serveOfiCli(flags: OfiServerFlags): Promise<void> {
  return serveRdma(flags, ofi);
}
