/**
 * The core's ABI numbers as the host uses them, read from the core itself:
 * assembly/abi.ts exports every status code, result-block field index and
 * layout constant as an immutable Wasm global, and this module reads them
 * once, when it is loaded, from a throwaway instance of the release build.
 * The host names the fields it uses (the keys below); their values exist
 * only in assembly/abi.ts. A build whose core lacks a field the host needs
 * fails at load with CORE_ABI_MISMATCH instead of misreading a block.
 *
 * It also owns loading the module (corePath, compiledCore), which src/core.ts
 * instantiates once per client.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DmemError } from './errors.js';

const modules = new Map<string, WebAssembly.Module>();

/** Path of the core build: release, or debug with asserts on. */
export function corePath(debug = false): string {
  return fileURLToPath(new URL(`../../build/dmem${debug ? '.debug' : ''}.wasm`, import.meta.url));
}

/**
 * The compiled core module (compiled once per process and build).
 * @throws DmemError CORE_MISSING when the build is absent (`npm run build`)
 */
export function compiledCore(debug: boolean): WebAssembly.Module {
  const path = corePath(debug);
  let mod = modules.get(path);
  if (!mod) {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(path));
    } catch (cause) {
      throw new DmemError('CORE_MISSING', `the Wasm core ${path} is missing: run \`npm run build\``, { cause });
    }
    mod = new WebAssembly.Module(bytes);
    modules.set(path, mod);
  }
  return mod;
}

/** Every exported global of `mod`, by name (one instance whose imports all throw: nothing runs). */
export function coreGlobals(mod: WebAssembly.Module): Map<string, number> {
  const imports: Record<string, Record<string, () => never>> = {};
  for (const i of WebAssembly.Module.imports(mod)) {
    imports[i.module] ??= {};
    imports[i.module][i.name] = () => { throw new DmemError('CORE_ABI_MISMATCH', `core import ${i.module}.${i.name} called while reading the ABI`); };
  }
  const instance = new WebAssembly.Instance(mod, imports);
  const out = new Map<string, number>();
  for (const [name, value] of Object.entries(instance.exports)) {
    if (value instanceof WebAssembly.Global) out.set(name, Number(value.value));
  }
  return out;
}

const globals = coreGlobals(compiledCore(false));
/** Names of the globals the host read (for the conformance test). */
const used = new Set<string>();

/** camelCase -> UPPER_SNAKE ("casRetries" -> "CAS_RETRIES", "OK" stays). */
function snake(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

/** The group of globals PREFIX_KEY as a frozen object of `keys`. */
function group<K extends string>(prefix: string, keys: readonly K[]): Readonly<Record<K, number>> {
  const out = {} as Record<K, number>;
  for (const k of keys) {
    const name = prefix + snake(k);
    const v = globals.get(name);
    if (v === undefined) {
      throw new DmemError('CORE_ABI_MISMATCH', `the Wasm core ${corePath()} exports no ${name}: it is older than this host; run \`npm run build\``);
    }
    out[k] = v;
    used.add(name);
  }
  return Object.freeze(out);
}

/** Status codes every export may return (negative = failure). */
export const Status = group('STATUS_', [
  'OK', 'NOT_A_POOL', 'VERSION', 'CORRUPT', 'EXHAUSTED', 'INVALID_ADDRESS', 'DOUBLE_FREE', 'INVALID_ARGUMENT',
  'CLIENT_TABLE_FULL', 'NOT_ATTACHED', 'EXISTS', 'NOT_FOUND', 'BUSY', 'LEASE_EXPIRED',
] as const);

/** Fields of `geometry(i)`. */
export const Geometry = group('GEOMETRY_', [
  'poolBytes', 'sections', 'maxClients', 'dataOffset', 'clientTableOffset', 'sectionHeaderOffset', 'spanHeaderOffset',
  'ownerLogOffset', 'clientId', 'headerBytes', 'slotOffset', 'slotGen', 'fields',
] as const);

/** f64 slots of the `stats()` block; the per-class runs are 11 long. */
export const StatsField = group('STATS_', [
  'allocs', 'frees', 'casAttempts', 'casRetries', 'maxRetries', 'allocOps', 'freeOps', 'ops',
  'allocatedPerClass', 'freedPerClass', 'fields',
] as const);

/** f64 slots of the `scanPool()` block; the per-class runs are 11 long. */
export const CensusField = group('CENSUS_', [
  'freeSections', 'chunkSections', 'largeSections', 'freeChunks', 'orphanChunks', 'largestFreeChunks', 'sealedSpans',
  'liveClients', 'blocksPerClass', 'chunksPerClass', 'fields',
] as const);

/** f64 slots of the `slotInfo(id)` block. */
export const SlotField = group('SLOT_', [
  'state', 'gen', 'pid', 'heartbeatMs', 'hostLow', 'hostHigh', 'startTime', 'acknowledged', 'recoverer', 'recovererGen',
  'pidNamespace', 'bootId', 'identityPid', 'fields',
] as const);

/** Values of SlotField.state. */
export const SlotState = group('SLOT_STATE_', ['free', 'live', 'revoked', 'recovering'] as const);

/** f64 slots of the `fsck()` block. */
export const FsckField = group('FSCK_', [
  'sections', 'orphanChunks', 'blocksOfDeadClients', 'sealedSpansInChunkSections', 'retiringSections',
  'unsealedSpansInFreeSections', 'largeTailsWithoutHead', 'hintMismatches', 'entriesScanned', 'repaired', 'fields',
] as const);

/** f64 slots of the `recover()` / `releaseHeld()` block. */
export const ReclaimField = group('RECLAIM_', [
  'blocks', 'chunks', 'spansUnsealed', 'sectionsFixed', 'entriesScanned', 'inFlight', 'status', 'objects', 'incomplete', 'fields',
] as const);

/** Orphan records (`orphanRecords()`): u64 words per record, the most kept, and the kinds. */
export const Orphan = group('ORPHAN_', ['recordWords', 'maxRecords', 'kindChunks', 'kindSpan', 'kindSection'] as const);

/** f64 slots per object class of the `heapCensus()` block. */
export const HeapCensusField = group('HEAP_CENSUS_', ['slabs', 'objects', 'cached', 'requestedBytes', 'fields'] as const);

/** The `regionResult()` block: two f64 slots, then the name at byte `nameAt`; names are at most `nameMax` bytes. */
export const RegionResult = { ...group('REGION_RESULT_', ['offset', 'bytes', 'nameAt'] as const), ...group('REGION_', ['nameMax'] as const) };

/** Layout constants (bytes, counts, ms). */
export const Layout = group('LAYOUT_', [
  'version', 'chunkBytes', 'spanChunks', 'sectionSpans', 'sectionBytes', 'headerBytes', 'maxClass', 'maxClients',
  'defaultLeaseMs', 'minLeaseMs', 'maxLeaseMs', 'slabBytes', 'maxSlabObject', 'objectClasses',
] as const);

/** Names of every core global this host reads (test/abi-globals.test.ts compares them with the module's). */
export function hostAbiNames(): string[] {
  return [...used].sort();
}
