/**
 * Admin decoders: what the core's result blocks mean, turned into the typed
 * reports of the Pool API (census, stats, fsck, client slots, orphans,
 * recovery and reclaim counters, geometry). The core writes each block into
 * its own memory and returns a pointer (docs/abi.md lists the blocks); this
 * module reads them and nothing else: no lease, no fencing, no decisions.
 */
import { Geometry, type Core } from './core.js';

const CHUNK_BYTES = 4096;
const SECTION_BYTES = 2 * 1024 * 1024;
/** Chunks per 2 MiB section. */
const SECTION_CHUNKS = SECTION_BYTES / CHUNK_BYTES;

/** One client-table slot, as a lease monitor sees it. */
export interface ClientSlot {
  id: number;
  state: 'free' | 'live' | 'revoked' | 'recovering';
  gen: number;
  pid: number;
  /** Last lease renewal, ms since the Unix epoch. */
  heartbeatMs: number;
  /** Hash of the owner's host name (compare with `Pool.hostId`). */
  hostId: bigint;
  /** Owner process start time (clock ticks since boot), 0 if unknown. */
  startTime: bigint;
  /** The owner acknowledged the revocation of this generation (it is fenced). */
  acknowledged: boolean;
  /** While recovering: the recoverer's client id. */
  recoverer: number;
  /** While recovering: the recoverer's slot gen when it began (tells it from a later owner of its slot). */
  recovererGen: number;
}

/** Allocated metadata that no live client owns (assembly/audit.ts). */
export interface OrphanRecord {
  /** 1 chunk bits of a span, 2 a whole-span header, 3 a LARGE section header. */
  kind: 1 | 2 | 3;
  /** Global span index (kinds 1, 2) or section index (kind 3). */
  index: number;
  /** The header word as seen; reclaim acts only if it is unchanged. */
  word: bigint;
}

/** fsck's findings (docs/layout.md lists the invariants). */
export interface FsckReport {
  sections: number;
  orphanChunks: number;
  blocksOfDeadClients: number;
  sealedSpansInChunkSections: number;
  retiringSections: number;
  unsealedSpansInFreeSections: number;
  largeTailsWithoutHead: number;
  hintMismatches: number;
  entriesScanned: number;
  repaired: number;
  /** True when no invariant is broken (hint mismatches are not invariants). */
  clean: boolean;
}

/** What one reclaim or recovery gave back. */
export interface ReclaimReport {
  blocks: number;
  chunks: number;
  spansUnsealed: number;
  sectionsFixed: number;
  /** Owner-log entries read. */
  entriesScanned: number;
  /** Operations the client left half done, completed or undone. */
  inFlight: number;
  /** Heap objects freed from slabs (handed out or cached by the client). */
  objects: number;
}

/** The attached pool's geometry. Offsets are bytes from the pool start. */
export interface PoolGeometry {
  poolBytes: number;
  sections: number;
  sectionBytes: number;
  chunkBytes: number;
  dataOffset: number;
  dataBytes: number;
  maxClients: number;
  layoutVersion: number;
}

/** This client's counters since it attached. */
export interface ClientStats {
  clientId: number;
  allocs: number;
  frees: number;
  /** CAS issued (all paths) and alloc CAS that failed and were retried. */
  cas: { attempts: number; retries: number; retriesPerAlloc: number; maxRetries: number };
  /** Transport operations (load/store/CAS/bulk read) per alloc and per free. */
  transportOps: { total: number; perAlloc: number; perFree: number };
  /** Blocks allocated / freed by this client per size class 0..9; index 10 = blocks above 2 MiB. */
  perClass: { allocated: number[]; freed: number[] };
}

/** Pool-wide census, read from metadata alone. */
export interface PoolCensus {
  sections: { total: number; free: number; chunk: number; large: number };
  chunks: { total: number; free: number; held: number; orphan: number };
  freeBytes: number;
  /** Largest run of free chunks, in bytes (upper bound on one more allocation). */
  largestFreeBytes: number;
  /** External fragmentation, 1 - largestFree / free (0 = all free space in one run). */
  fragmentation: number;
  sealedSpans: number;
  liveClients: number;
  /** Per size class 0..9 and index 10 (above 2 MiB): blocks held and chunks they cover. */
  perClass: Array<{ blocks: number; chunks: number }>;
}

const SLOT_STATES = ['free', 'live', 'revoked', 'recovering'] as const;

/** The attached pool's geometry (geometry(i) of the core). */
export function readGeometry(core: Core): PoolGeometry {
  const g = (f: number): number => core.exports.geometry(f);
  return {
    poolBytes: g(Geometry.poolBytes), sections: g(Geometry.sections), sectionBytes: SECTION_BYTES,
    chunkBytes: CHUNK_BYTES, dataOffset: g(Geometry.dataOffset), dataBytes: g(Geometry.sections) * SECTION_BYTES,
    maxClients: g(Geometry.maxClients), layoutVersion: core.exports.layoutVersion(),
  };
}

/** This client's counters (the core's stats() block, 30 f64). */
export function readStats(core: Core, clientId: number): ClientStats {
  const s = core.floats(core.exports.stats(), 30);
  const allocs = s[0];
  const frees = s[1];
  return {
    clientId,
    allocs, frees,
    cas: { attempts: s[2], retries: s[3], retriesPerAlloc: allocs ? s[3] / allocs : 0, maxRetries: s[4] },
    transportOps: { total: s[7], perAlloc: allocs ? s[5] / allocs : 0, perFree: frees ? s[6] / frees : 0 },
    perClass: { allocated: Array.from(s.subarray(8, 19)), freed: Array.from(s.subarray(19, 30)) },
  };
}

/** Pool-wide census (the core's scanPool() block, 30 f64). */
export function readCensus(core: Core, sections: number): PoolCensus {
  const s = core.floats(core.exports.scanPool(), 30);
  const perClass = [];
  for (let c = 0; c <= 10; c++) perClass.push({ blocks: s[8 + c], chunks: s[19 + c] });
  const held = perClass.reduce((a, p) => a + p.chunks, 0);
  const freeBytes = s[3] * CHUNK_BYTES;
  const largest = s[5] * CHUNK_BYTES;
  return {
    sections: { total: sections, free: s[0], chunk: s[1], large: s[2] },
    chunks: { total: sections * SECTION_CHUNKS, free: s[3], held, orphan: s[4] },
    freeBytes,
    largestFreeBytes: largest,
    fragmentation: freeBytes > 0 ? 1 - largest / freeBytes : 0,
    sealedSpans: s[6],
    liveClients: s[7],
    perClass,
  };
}

/** Slot `id` of the client table (the core's slotInfo(id) block, 10 f64). */
export function readSlot(core: Core, id: number): ClientSlot {
  const f = core.floats(core.exports.slotInfo(id), 10);
  return {
    id, state: SLOT_STATES[f[0]], gen: f[1], pid: f[2], heartbeatMs: f[3],
    hostId: BigInt.asIntN(64, (BigInt(f[5]) << 32n) | BigInt(f[4])),
    startTime: BigInt(f[6]), acknowledged: f[7] === 1, recoverer: f[8],
    recovererGen: f[9],
  };
}

/** A recover()/releaseHeld() counter block (8 f64), or null when [6] reports a refused recovery. */
export function readReclaim(core: Core, ptr: number): ReclaimReport | null {
  const f = core.floats(ptr, 8);
  if (f[6] < 0) return null;
  return { blocks: f[0], chunks: f[1], spansUnsealed: f[2], sectionsFixed: f[3], entriesScanned: f[4], inFlight: f[5], objects: f[7] };
}

/** The records of the last scanOrphans() (`n` of them, 3 i64 each). */
export function readOrphans(core: Core, n: number): OrphanRecord[] {
  const w = core.words(core.exports.orphanRecords(), n * 3);
  const out: OrphanRecord[] = [];
  for (let i = 0; i < n; i++) out.push({ kind: Number(w[i * 3]) as 1 | 2 | 3, index: Number(w[i * 3 + 1]), word: w[i * 3 + 2] });
  return out;
}

/** An fsck() counter block (10 f64) as a report. */
export function readFsck(core: Core, ptr: number): FsckReport {
  const f = core.floats(ptr, 10);
  const r = {
    sections: f[0], orphanChunks: f[1], blocksOfDeadClients: f[2], sealedSpansInChunkSections: f[3],
    retiringSections: f[4], unsealedSpansInFreeSections: f[5], largeTailsWithoutHead: f[6], hintMismatches: f[7],
    entriesScanned: f[8], repaired: f[9],
  };
  const broken = r.orphanChunks + r.blocksOfDeadClients + r.sealedSpansInChunkSections + r.retiringSections
    + r.unsealedSpansInFreeSections + r.largeTailsWithoutHead;
  return { ...r, clean: broken === 0 };
}
