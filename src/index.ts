/**
 * dmem: a disaggregated memory pool with a WebAssembly allocator core
 * (../shared/DESIGN.md). Entry point of the `dmem` package.
 */
export { openPool, Pool } from './pool.js';
export type { Region, RegionInfo } from './region.js';
export type { PoolOptions, PoolGeometry, ClientStats, PoolCensus } from './pool.js';
export * from './errors.js';
export type { Transport } from './transport.js';
export { memoryTransport } from './transports/memory.js';
export { WindowedTransport } from './transports/windows.js';
export { Core, coreImports, corePath, LAYOUT_VERSION } from './core.js';
export { toGaddr, nodeOf, offsetOf, NODE_SPAN } from './gaddr.js';
export { parseBytes, formatBytes } from './units.js';
export { LeaseMonitor } from './monitor.js';
export type { MonitorOptions, RecoveryEvent, SweepResult } from './monitor.js';
export type { ClientSlot, ReclaimReport, OrphanRecord, FsckReport } from './pool.js';
export { CRASH_POINTS, parseCrashPoint } from './crash.js';
export { Heap } from './heap.js';
export type { HeapStats, HeapClassStats } from './heap.js';
export {
  openTcpPool, serveTcp, TcpServer, RemotePool, NodesPool, NodeUnavailableError, AuthFailedError, ProtocolError, loadNodesConfig,
} from './transports/tcp/index.js';
export type { AsyncPool, RemoteRegion, RemoteHeap, TcpPoolOptions, NodesConfig, NodesPoolOptions, PlacementPolicy, ServeTcpOptions } from './transports/tcp/index.js';
export { serveComputeNode, ComputeService } from './transports/tcp/service.js';
