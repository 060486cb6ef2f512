/**
 * Opening a pool by URI, and the transport registry: the one module that
 * names transport plugins. `openPool("SCHEME:ADDRESS")` looks the scheme up,
 * lets its opener reach the medium (map a file, connect to a server), and
 * attaches a Pool to the transport it returns; the Pool then owns the
 * transport and closes it with itself.
 *
 * Schemes registered here:
 *   `memory:`            a private in-process pool (src/transports/memory.ts)
 *   `shm:NAME`           /dev/shm/dmem-NAME, shared by every process of the host (plugins/cxl-shm)
 *   `shm:/path`, `dax:/path`  a file on tmpfs or hugetlbfs, or a devdax device (plugins/cxl-shm)
 *   `ofi+PROVIDER://HOST:PORT`  one-sided over libfabric, the core in this client (plugins/rdma)
 *   `verbs://HOST:PORT`  one-sided over rdma-core verbs (RC QP, rdma_cm), the core in this client (plugins/rdma)
 *   `tcp://`, `tls://`, `unix:`, lists of them, a nodes config: server-side
 *                        mode, the core in the memory node (src/transports/tcp);
 *                        their pools' methods return Promises
 * Other transports register an opener (`registerTransport`; a scheme with a
 * `+` falls back to the opener registered for its family, "ofi+", when no
 * opener is registered for the whole scheme).
 *
 * Plugins are loaded with a dynamic import on first use, so a process that
 * never opens `shm:` never loads koffi.
 */
import { show } from './args.js';
import { InvalidArgumentError } from './errors.js';
import { Pool, checkPoolOptions, ownTransport, type PoolOptions } from './pool.js';
import { FORMAT_CLAIM, type Transport } from './transport.js';
import { memoryTransport } from './transports/memory.js';
import { parseBytes } from './units.js';
import type { AsyncPool, NodesConfig, NodesPoolOptions as RemotePoolOptions } from './transports/tcp/index.js';

export type { RemotePoolOptions };

/** What a transport opener hands back to `openPool`. */
export interface OpenedTransport {
  /** The medium; `openPool` closes it when attaching fails, the Pool closes it otherwise. */
  transport: Transport;
  /** True when the medium is new and empty and this opener claimed it: the Pool formats it. */
  created: boolean;
  /** Undoes the creation (removes a created file, drops a format claim) when formatting or attaching fails; called before close. */
  discard?: () => void;
  /** The file, device or peer, as error messages name it. */
  medium?: string;
}

/**
 * Reaches the medium of one URI scheme.
 * @param address the URI after the first ':' ("demo" for "shm:demo")
 * @param opts openPool's options, with `size` already parsed into bytes
 * @param uri the whole URI, for messages
 */
export type TransportOpener = (
  address: string,
  opts: PoolOptions & { size?: number },
  uri: string,
) => Promise<OpenedTransport> | OpenedTransport;

const openers = new Map<string, TransportOpener>();

/**
 * Registers (or replaces) the opener of URI scheme `scheme` (lower case,
 * without the colon: "tcp", "verbs"; "ofi+" for a family of schemes).
 * @throws InvalidArgumentError for a malformed scheme or a non-function opener
 */
export function registerTransport(scheme: string, opener: TransportOpener): void {
  if (typeof scheme !== 'string' || !/^[a-z][a-z0-9.-]*\+?(?:[a-z0-9.-]+)?$/.test(scheme)) {
    throw new InvalidArgumentError(`registerTransport: scheme must be lower-case letters, digits, '.', '-' and at most one '+', got ${JSON.stringify(scheme)}`);
  }
  if (typeof opener !== 'function') throw new InvalidArgumentError(`registerTransport("${scheme}"): opener must be a function`);
  openers.set(scheme, opener);
}

/** The URI schemes `openPool` knows, sorted ("ofi+" stands for every "ofi+PROVIDER"). */
export function transportSchemes(): string[] {
  return [...openers.keys()].sort();
}

/**
 * Opens a pool by URI, creating and formatting it when absent:
 *   `shm:NAME`          /dev/shm/dmem-NAME, shared by every process of the host
 *   `shm:/path`         a file on tmpfs or hugetlbfs (/dev/hugepages/...), or a devdax device (/dev/dax0.0)
 *   `memory:`           a private in-process pool (size required)
 * and whatever other scheme was registered (`registerTransport`).
 * @param uri "SCHEME:ADDRESS"
 * @param opts see PoolOptions; `size` (bytes or "64MiB") is needed only to create
 * @throws InvalidArgumentError bad URI or options; NotAPoolError / VersionMismatchError for a
 *   file that is not a pool of this layout (nothing is written to it); CorruptPoolError for a
 *   pool whose superblock does not match its medium (a truncated file: the message names both
 *   sizes); TransportUnavailableError when the medium cannot be opened; ClientTableFullError
 */
export async function openPool(uri: RemoteTarget, opts?: RemotePoolOptions): Promise<AsyncPool>;
export async function openPool(uri: string, opts?: PoolOptions & { token?: string }): Promise<Pool>;
export async function openPool(uri: string | RemoteTarget, opts: PoolOptions & RemotePoolOptions = {}): Promise<Pool | AsyncPool> {
  if (typeof uri === 'object' && uri !== null) return openRemote(uri, opts);
  if (typeof uri !== 'string') throw new InvalidArgumentError(`openPool: uri must be a string such as "shm:NAME" or "memory:", got ${show(uri)}`);
  const colon = uri.indexOf(':');
  const scheme = colon < 0 ? '' : uri.slice(0, colon);
  if (REMOTE_SCHEMES.has(scheme)) return openRemote(uri, opts);
  if (scheme === 'verbs') {
    const { openVerbsPool } = await import('../plugins/rdma/verbs-transport.js');
    return openVerbsPool(uri, { ...opts, token: typeof opts.token === 'string' ? opts.token : '' });
  }
  if (scheme.startsWith('ofi+')) {
    const { openOfiPool } = await import('../plugins/rdma/transport.js');
    return openOfiPool(uri, { ...opts, token: typeof opts.token === 'string' ? opts.token : '' });
  }
  checkPoolOptions(opts);
  const opener = openers.get(scheme) ?? (scheme.includes('+') ? openers.get(scheme.slice(0, scheme.indexOf('+') + 1)) : undefined);
  if (opener === undefined) {
    throw new InvalidArgumentError(`unknown pool URI "${uri}": use ${transportSchemes().map((s) => (s.endsWith('+') ? `${s}PROVIDER:...` : `${s}:...`)).join(', ')}`);
  }
  const size = opts.size === undefined ? undefined : parseBytes(opts.size);
  const opened = await opener(uri.slice(colon + 1), { ...opts, size }, uri);
  try {
    return ownTransport(Pool.attach(opened.transport, { ...opts, create: opened.created, medium: opened.medium ?? uri }));
  } catch (e) {
    try {
      if (opened.created) opened.discard?.();
    } finally {
      opened.transport.close();
    }
    throw e;
  }
}

/**
 * Server-side mode (docs/design.md, "Two ways to run the core"): the core runs
 * in the memory node, and the client sends requests (src/transports/tcp/).
 * `tcp://HOST:PORT`, `tls://HOST:PORT`, `unix:/path` (the compute-node
 * service), a list of such URLs or a nodes config (several memory nodes).
 * Such a pool's methods return Promises.
 */
const REMOTE_SCHEMES = new Set(['tcp', 'tls', 'unix']);

/** A remote pool's address: one URL, a list of memory nodes, or a nodes config. */
export type RemoteTarget = `tcp://${string}` | `tls://${string}` | `unix:${string}` | string[] | NodesConfig;

async function openRemote(target: string | string[] | NodesConfig, opts: RemotePoolOptions): Promise<AsyncPool> {
  const { openTcpPool } = await import('./transports/tcp/index.js');
  return typeof target === 'string' ? openTcpPool(target, opts) : openTcpPool(target, opts);
}

// ---------------------------------------------------------------- the registry
//
// One registerTransport call per scheme, and nowhere else. Remote transports
// add theirs below when they land: tcp (src/transports/tcp.ts), unix (the
// compute-node service's socket), verbs and the ofi+ family (plugins/rdma),
// each opener loading its module with a dynamic import as shm does.

registerTransport('memory', (_address, opts) => {
  if (opts.size === undefined) throw new InvalidArgumentError('memory: pools need a size, e.g. openPool("memory:", { size: "64MiB" })');
  return { transport: memoryTransport(opts.size), created: true };
});

const openShmTransport: TransportOpener = async (address, opts, uri) => {
  if (address === '') throw new InvalidArgumentError(`"${uri}" names no pool: write shm:NAME or shm:/path/to/file`);
  const { openShm, removeShm } = await import('../plugins/cxl-shm/index.js');
  const m = openShm(address, { size: opts.size, create: opts.create ?? true, windowBytes: opts.windowBytes });
  const discard = m.claimed ? () => { m.transport.cas64(0, FORMAT_CLAIM, 0n); } : () => { removeShm(m.path); };
  return { transport: m.transport, created: m.created, discard, medium: m.path };
};
registerTransport('shm', openShmTransport);
registerTransport('dax', openShmTransport);
