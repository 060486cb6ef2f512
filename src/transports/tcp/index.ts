/**
 * Server-side mode over TCP, TLS and Unix sockets (docs/protocol.md):
 * `serveTcp` on the memory node, `openTcpPool` on the client.
 */
import { RemotePool, type TcpPoolOptions } from './client.js';
import { openNodesPool, type NodesConfig, type NodesPool, type NodesPoolOptions } from './nodes.js';

export { RemotePool, parsePoolUrl } from './client.js';
export type { AsyncPool, RemoteHeap, RemoteRegion, RemoteGeometry, TcpPoolOptions } from './client.js';
export { NodesPool, NodeUnavailableError, loadNodesConfig, openNodesPool } from './nodes.js';
export type { NodesConfig, NodesPoolOptions, PlacementPolicy } from './nodes.js';
export { serveTcp, TcpServer } from './server.js';
export type { ServeTcpOptions, ListenAddress } from './server.js';
export { AuthFailedError, ProtocolError, PROTOCOL_VERSION } from './protocol.js';

/**
 * Opens a pool served by `dmem server --listen` (server-side mode):
 * `tcp://HOST:PORT`, `tls://HOST:PORT` or `unix:PATH` (the compute-node
 * service, `dmem client`) gives a RemotePool; several URLs, or a nodes
 * config (nodes.ts), give a NodesPool spread over those memory nodes. Both
 * have the methods of a shm Pool, returning Promises.
 * @throws InvalidArgumentError (bad URL), TransportUnavailableError /
 *   NodeUnavailableError (no server there), AuthFailedError (token refused),
 *   VersionMismatchError, ClientTableFullError
 */
export function openTcpPool(url: string, opts?: TcpPoolOptions): Promise<RemotePool>;
export function openTcpPool(nodes: string[] | NodesConfig, opts?: NodesPoolOptions): Promise<NodesPool>;
export function openTcpPool(target: string | string[] | NodesConfig, opts: NodesPoolOptions = {}): Promise<RemotePool | NodesPool> {
  if (typeof target === 'string') return RemotePool.open(target, opts);
  return openNodesPool(target, opts);
}
