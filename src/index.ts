/**
 * dmem: a disaggregated memory pool with a WebAssembly allocator core
 * (docs/design.md). Entry point of the `dmem` package.
 */
export { Pool } from './pool.js';
export { openPool, registerTransport, transportSchemes } from './open.js';
export type { OpenedTransport, TransportOpener } from './open.js';
export type { Region, RegionInfo } from './region.js';
export type { PoolOptions, PoolClientStats, PoolCensusWithCache } from './pool.js';
export { BLOCK_CACHE_MAX } from './pool.js';
export type { PoolGeometry, ClientStats, PoolCensus, ClientSlot, ReclaimReport, OrphanRecord, FsckReport } from './admin.js';
export * from './errors.js';
export type { Transport, MappedMemory, DirectWindow } from './transport.js';
export { WindowedTransport } from './transport.js';
export { memoryTransport } from './transports/memory.js';
export { Core, coreImports, corePath, LAYOUT_VERSION } from './core.js';
export { toGaddr, nodeOf, offsetOf, NODE_SPAN } from './gaddr.js';
export { parseBytes, formatBytes } from './units.js';
export { LeaseMonitor } from './monitor.js';
export type { MonitorOptions, RecoveryEvent, SweepResult } from './monitor.js';
export { CRASH_POINTS, parseCrashPoint } from './crash.js';
export { Heap } from './heap.js';
export type { HeapStats, HeapClassStats } from './heap.js';
export { createSpace, Space, SpaceClosedError, POLICIES as PAGING_POLICIES } from './space.js';
export type { SpaceOptions, SpaceStats, PagingPolicy, Prefetch } from './space.js';
export { createAsyncSpace, AsyncSpace, type AsyncSpaceOptions } from './space.js';
export {
  openTcpPool, serveTcp, TcpServer, RemotePool, NodesPool, NodeUnavailableError, AuthFailedError, ProtocolError, loadNodesConfig,
} from './transports/tcp/index.js';
export type { AsyncPool, RemoteRegion, RemoteHeap, TcpPoolOptions, NodesConfig, NodesPoolOptions, PlacementPolicy, ServeTcpOptions } from './transports/tcp/index.js';
export { serveComputeNode, ComputeService } from './transports/tcp/service.js';
