/**
 * `dmem server --transport verbs`: the shared-memory pool of `dmem server`,
 * also served to one-sided remote clients over rdma-core verbs
 * (plugins/rdma/verbs-server.ts): an RDMA device must be present (the
 * server refuses to start otherwise, naming what to check), the pool file
 * is mapped once and registered per client, clients bootstrap on --listen
 * with the token of --token-file and connect an RC queue pair through
 * rdma_cm, and the lease monitor runs here as for shm. A client the monitor
 * revokes has its QP moved to the error state and its MR deregistered before
 * the monitor can reclaim its memory (`fenceOnRevoke`), docs/rdma.md. The
 * glue both one-sided transports share is serve-rdma.ts; this file is what
 * verbs adds.
 */
import type { Command } from 'commander';
import type { VerbsServer } from '../../plugins/rdma/verbs-server.js';
import { serveRdma, type RdmaBackend, type RdmaServerFlags } from './serve-rdma.js';

/** The flags `dmem server` gets, with the verbs ones. */
export interface VerbsServerFlags extends RdmaServerFlags {
  transport: 'verbs';
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

/** The verbs side of serve-rdma.ts. */
const verbs: RdmaBackend<VerbsServerFlags, VerbsServer> = {
  listenHint: 'HOST:PORT (an IP address of an RDMA interface)',
  // No library or no device is a setup error, not a pool one: refused before a pool file exists.
  precheck: async () => {
    const { loadVerbs, rdmaDevices } = await import('../../plugins/rdma/verbs.js');
    rdmaDevices(loadVerbs());
  },
  start: async (mem, opts, flags) => (await import('../../plugins/rdma/verbs-server.js')).serveVerbs(mem, { ...opts, hcaAtomics: flags.hcaAtomics === true }),
  scheme: () => 'verbs',
  facts: (node) => ({ devices: node.devices, cmPort: node.cmPort }),
  serving: (node) => `RDMA devices ${node.devices.join(', ')}; rdma_cm port ${node.cmPort}`,
  cutFirst: 'QP and MR are',
};

/**
 * Runs the verbs server until SIGINT or SIGTERM.
 * @throws commander's InvalidArgumentError (usage: exit 2), InvalidArgumentError (token file),
 *   VerbsUnavailableError (no RDMA device, library, kernel module, address), TransportUnavailableError
 */
export function serveVerbsCli(flags: VerbsServerFlags): Promise<void> {
  return serveRdma(flags, verbs);
}
