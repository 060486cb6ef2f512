/**
 * Admin decoders: what the core's result blocks mean, turned into the typed
 * reports of the Pool API (census, stats, fsck, client slots, orphans,
 * recovery and reclaim counters, geometry). The core writes each block into
 * its own memory and returns a pointer (docs/abi.md lists the blocks); this
 * module reads them and nothing else: no lease, no fencing, no decisions.
 */
import {
  CensusField as C, FsckField as F, Geometry, Layout, Orphan, ReclaimField as R, SlotField as S, SlotState, StatsField as T,
} from './abi.js';
import type { Core } from './core.js';

/** Size classes 0..9 and blocks above 2 MiB: the length of every per-class run. */
const CLASS_SLOTS = Layout.maxClass + 2;

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
  /** Owner's PID namespace (inode of /proc/PID/ns/pid), 0 if unknown. */
  pidNs: number;
  /** Owner's kernel boot id (52-bit hash), 0 if unknown. */
  bootId: number;
  /** The pid the identity fields (startTime, pidNs, bootId) were written for; they describe this owner only when it equals `pid`. */
  identityPid: number;
}

/** Allocated metadata that no live client owns (assembly/audit.ts). */
export interface OrphanRecord {
  /** 1 chunk bits of a span, 2 a whole-span header, 3 a LARGE section header. */
  kind: 1 | 2 | 3;
  /** Global span index (kinds 1, 2) or section index (kind 3). */
  index: number;
  /** The header word as seen; reclaim acts only if it is unchanged. */
  word: bigint;
  /**
   * Kind 1: the span's chunks found orphan (bit i = chunk i of the span);
   * reclaim frees only these, and only those still orphan. 0 for kinds 2, 3.
   */
  bits: number;
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
  /**
   * False when heap objects were left for a later run (the delayed-free
   * ring's lock stayed held by a live client); a recovery then stays begun
   * and is finished by the next run.
   */
  complete: boolean;
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

const SLOT_STATES: ClientSlot['state'][] = [];
for (const [name, v] of Object.entries(SlotState)) SLOT_STATES[v] = name as ClientSlot['state'];

/** The attached pool's geometry (geometry(i) of the core). */
export function readGeometry(core: Core): PoolGeometry {
  const g = (f: number): number => core.exports.geometry(f);
  return {
    poolBytes: g(Geometry.poolBytes), sections: g(Geometry.sections), sectionBytes: Layout.sectionBytes,
    chunkBytes: Layout.chunkBytes, dataOffset: g(Geometry.dataOffset), dataBytes: g(Geometry.sections) * Layout.sectionBytes,
    maxClients: g(Geometry.maxClients), layoutVersion: core.exports.layoutVersion(),
  };
}

/** This client's counters (the core's stats() block). */
export function readStats(core: Core, clientId: number): ClientStats {
  const s = core.floats(core.exports.stats(), T.fields);
  const allocs = s[T.allocs];
  const frees = s[T.frees];
  const retries = s[T.casRetries];
  return {
    clientId,
    allocs, frees,
    cas: { attempts: s[T.casAttempts], retries, retriesPerAlloc: allocs ? retries / allocs : 0, maxRetries: s[T.maxRetries] },
    transportOps: { total: s[T.ops], perAlloc: allocs ? s[T.allocOps] / allocs : 0, perFree: frees ? s[T.freeOps] / frees : 0 },
    perClass: {
      allocated: Array.from(s.subarray(T.allocatedPerClass, T.allocatedPerClass + CLASS_SLOTS)),
      freed: Array.from(s.subarray(T.freedPerClass, T.freedPerClass + CLASS_SLOTS)),
    },
  };
}

/** Pool-wide census (the core's scanPool() block). */
export function readCensus(core: Core, sections: number): PoolCensus {
  const s = core.floats(core.exports.scanPool(), C.fields);
  const perClass = [];
  for (let c = 0; c < CLASS_SLOTS; c++) perClass.push({ blocks: s[C.blocksPerClass + c], chunks: s[C.chunksPerClass + c] });
  const held = perClass.reduce((a, p) => a + p.chunks, 0);
  const freeBytes = s[C.freeChunks] * Layout.chunkBytes;
  const largest = s[C.largestFreeChunks] * Layout.chunkBytes;
  return {
    sections: { total: sections, free: s[C.freeSections], chunk: s[C.chunkSections], large: s[C.largeSections] },
    chunks: { total: sections * Layout.sectionSpans * Layout.spanChunks, free: s[C.freeChunks], held, orphan: s[C.orphanChunks] },
    freeBytes,
    largestFreeBytes: largest,
    fragmentation: freeBytes > 0 ? 1 - largest / freeBytes : 0,
    sealedSpans: s[C.sealedSpans],
    liveClients: s[C.liveClients],
    perClass,
  };
}

/** Slot `id` of the client table (the core's slotInfo(id) block). */
export function readSlot(core: Core, id: number): ClientSlot {
  const f = core.floats(core.exports.slotInfo(id), S.fields);
  return {
    id, state: SLOT_STATES[f[S.state]], gen: f[S.gen], pid: f[S.pid], heartbeatMs: f[S.heartbeatMs],
    hostId: BigInt.asIntN(64, (BigInt(f[S.hostHigh]) << 32n) | BigInt(f[S.hostLow])),
    startTime: BigInt(f[S.startTime]), acknowledged: f[S.acknowledged] === 1, recoverer: f[S.recoverer],
    recovererGen: f[S.recovererGen], pidNs: f[S.pidNamespace], bootId: f[S.bootId], identityPid: f[S.identityPid],
  };
}

/** A recover()/releaseHeld() counter block, or null when its status reports a refused recovery. */
export function readReclaim(core: Core, ptr: number): ReclaimReport | null {
  const f = core.floats(ptr, R.fields);
  if (f[R.status] < 0) return null;
  return {
    blocks: f[R.blocks], chunks: f[R.chunks], spansUnsealed: f[R.spansUnsealed], sectionsFixed: f[R.sectionsFixed],
    entriesScanned: f[R.entriesScanned], inFlight: f[R.inFlight], objects: f[R.objects], complete: f[R.incomplete] === 0,
  };
}

/** The records of the last scanOrphans() (`n` of them). */
export function readOrphans(core: Core, n: number): OrphanRecord[] {
  const k = Orphan.recordWords;
  const w = core.words(core.exports.orphanRecords(), n * k);
  const out: OrphanRecord[] = [];
  for (let i = 0; i < n; i++) out.push({ kind: Number(w[i * k]) as 1 | 2 | 3, index: Number(w[i * k + 1]), word: w[i * k + 2], bits: Number(w[i * k + 3]) });
  return out;
}

/** An fsck() counter block as a report. */
export function readFsck(core: Core, ptr: number): FsckReport {
  const f = core.floats(ptr, F.fields);
  const r = {
    sections: f[F.sections], orphanChunks: f[F.orphanChunks], blocksOfDeadClients: f[F.blocksOfDeadClients],
    sealedSpansInChunkSections: f[F.sealedSpansInChunkSections], retiringSections: f[F.retiringSections],
    unsealedSpansInFreeSections: f[F.unsealedSpansInFreeSections], largeTailsWithoutHead: f[F.largeTailsWithoutHead],
    hintMismatches: f[F.hintMismatches], entriesScanned: f[F.entriesScanned], repaired: f[F.repaired],
  };
  const broken = r.orphanChunks + r.blocksOfDeadClients + r.sealedSpansInChunkSections + r.retiringSections
    + r.unsealedSpansInFreeSections + r.largeTailsWithoutHead;
  return { ...r, clean: broken === 0 };
}
