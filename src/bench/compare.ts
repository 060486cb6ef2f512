/**
 * `dmem bench compare` (issue 10): dmem against the allocators a user would
 * take instead, on the same patterns, in the same script, interleaved:
 *
 *   boost   Boost.Interprocess `managed_shared_memory` (one segment in
 *           /dev/shm shared by P forked processes): the peer for memory
 *           shared between processes;
 *   malloc  glibc malloc (P forked processes, each its own heap): the
 *           in-process ceiling.
 *
 * Both peers are one C++ program, bench/peers/alloc_peer.cpp, built here
 * with g++ into a cache folder (build/peers/ in the repository, else
 * os.tmpdir()/dmem-peers) under a name that hashes the source and the
 * flags, so an edited source is rebuilt and parallel builds never see a
 * half-written binary (compiled to a temporary name, then renamed). Without
 * g++ (or the source) the peers are skipped with the reason; without the
 * Boost headers the program builds with malloc only and Boost is skipped.
 *
 * Workloads: FineMem's frag pattern per size class (dmem through runMicro,
 * src/bench/micro.ts; the peer runs the same loop, every 8th allocation
 * timed; metric ops/s; issue 10 defines it as 1000 blocks, 250 freed and
 * allocated per epoch, 2000 epochs: COMPARE_FRAG_EPOCHS) and the heap
 * pattern per object size (dmem through dmemRun, src/bench/heap.ts; metric
 * ns per alloc+free pair). Each repetition runs every (workload, procs)
 * cell once for every side, the sides of one cell back to back in an order
 * that rotates with the repetition, so a slow phase of the machine hits all
 * sides alike. Ratios
 * are speed ratios, dmem / peer (above 1: dmem is faster), taken per
 * repetition and reported as their median.
 *
 * Warm-up (frag only): every process of every side first runs
 * `warmupEpochs` (default COMPARE_WARMUP_EPOCHS) untimed epochs of the same
 * loop with the same PRNG stream, after its setup and before the start
 * signal: dmem's workers (src/bench/worker.ts) and alloc_peer (`--warmup`)
 * alike, so the timed epochs are the same on both sides and measure
 * neither V8 compiling dmem's loop nor first touches. The peer echoes the
 * epochs and warm-up it ran; a mismatch is an error (PEER_FAILED).
 * `warmupEpochs: 0` (CLI `--warmup-epochs 0`) measures from a cold start on both sides.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DmemError } from '../errors.js';
import { runMicro, classBytes } from './micro.js';
import { dmemRun } from './heap.js';
import { median } from './percentile.js';

/** The repository root (this file runs from dist/src/bench/). */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** bench/peers/alloc_peer.cpp in the repository. */
export const PEER_SOURCE = join(ROOT, 'bench', 'peers', 'alloc_peer.cpp');

/** g++ flags of the peer (part of the cache key). */
const CXX_FLAGS = ['-O2', '-std=c++17', '-DNDEBUG'];
const LINK_FLAGS = ['-lrt', '-pthread'];

/** Epochs of the frag pattern in issue 10 (1000 blocks, 250 freed and allocated per epoch, 2000 epochs). */
export const COMPARE_FRAG_EPOCHS = 2000;
/**
 * Untimed frag epochs every process of every side runs first (10% of the
 * timed ones): in a fresh Node process the first ~100 epochs run several
 * times slower than the rest while V8 compiles the loop.
 */
export const COMPARE_WARMUP_EPOCHS = 200;

/** A side of the comparison: dmem or one of the peers. */
export type Side = 'dmem' | 'dmem-cache' | 'boost' | 'malloc';
export type PeerName = Exclude<Side, 'dmem' | 'dmem-cache'>;
/** Largest size class the per-client block cache holds (assembly/cache.ts). */
const CACHE_MAX_CLASS = 4;

/** The built peer program and the allocators it has. */
export interface Peer {
  /** Path of the binary. */
  path: string;
  /** Allocators this build has (`boost` needs the Boost headers at build time). */
  allocators: PeerName[];
  /** Boost version the binary was built with, e.g. "1.74.0"; absent without Boost. */
  boostVersion?: string;
  /** True when this call compiled it (false: taken from the cache). */
  built: boolean;
}

/** Why the peer could not be built (g++ or the source missing, a compile error). */
export interface PeerSkip {
  skipped: string;
}

/** The cache folder: build/peers/ in the repository when writable, else os.tmpdir()/dmem-peers. */
function cacheDir(): string {
  for (const dir of [join(ROOT, 'build', 'peers'), join(tmpdir(), 'dmem-peers')]) {
    try {
      mkdirSync(dir, { recursive: true });
      return dir;
    } catch {
      // Not writable (an installed package): try the next one.
    }
  }
  return tmpdir();
}

/**
 * Builds bench/peers/alloc_peer.cpp with g++ (or takes the cached binary of
 * the same source and flags) and asks it which allocators it has.
 * @param dir cache folder (default build/peers/ or os.tmpdir()/dmem-peers)
 * @returns the peer, or `{ skipped: reason }` when g++ or the source is missing or the build failed
 */
export function buildPeer(dir = cacheDir()): Peer | PeerSkip {
  if (!existsSync(PEER_SOURCE)) return { skipped: `peer source ${PEER_SOURCE} not found (it ships with the repository, not the npm package)` };
  const version = spawnSync('g++', ['--version'], { encoding: 'utf8' });
  if (version.error || version.status !== 0) return { skipped: `g++ not found (${version.error?.message ?? `exit ${version.status}`}); install g++ and libboost-dev` };
  const source = readFileSync(PEER_SOURCE);
  const key = createHash('sha256').update(source).update(CXX_FLAGS.join(' ')).update(version.stdout.split('\n')[0]).digest('hex').slice(0, 16);
  const path = join(dir, `alloc_peer-${key}`);
  let built = false;
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.tmp`;
    const cc = spawnSync('g++', [...CXX_FLAGS, '-o', tmp, PEER_SOURCE, ...LINK_FLAGS], { encoding: 'utf8' });
    if (cc.error || cc.status !== 0) {
      rmSync(tmp, { force: true });
      const first = (cc.stderr || cc.error?.message || '').split('\n').filter((l) => l.includes('error')).slice(0, 2).join(' | ');
      return { skipped: `g++ failed to build ${PEER_SOURCE}: ${first || `exit ${cc.status}`}` };
    }
    renameSync(tmp, path);
    built = true;
  }
  const list = spawnSync(path, ['--list'], { encoding: 'utf8', timeout: 10_000 });
  if (list.status !== 0) return { skipped: `the peer ${path} did not run (${list.error?.message ?? `exit ${list.status}: ${list.stderr.trim()}`})` };
  const info = JSON.parse(list.stdout) as { allocators: PeerName[]; boostVersion?: string };
  return { path, allocators: info.allocators, boostVersion: info.boostVersion, built };
}

/** One frag cell of the peer, as alloc_peer prints it (the fields dmem's MicroResult also has). */
export interface PeerFragResult {
  allocator: PeerName;
  pattern: 'frag';
  procs: number;
  cls: number;
  blockBytes: number;
  /** Timed epochs and the untimed warm-up epochs before them, as the peer ran them. */
  epochs: number;
  warmupEpochs: number;
  allocs: number;
  frees: number;
  loopMs: number;
  opsPerSec: number;
  latency: { samples: number; meanNs: number; p50Ns: number; p99Ns: number; maxNs: number };
  /** Boost only: the segment's free memory is back to what it was before the run. */
  allFreed?: boolean;
}

/** One heap cell of the peer. */
export interface PeerHeapResult {
  allocator: PeerName;
  pattern: 'heap';
  procs: number;
  size: number;
  /** Timed rounds, and the untimed ones run first (as asked: compare checks). */
  rounds: number;
  warmupRounds: number;
  pairs: number;
  /** Mean over the processes of each one's ns per alloc+free pair. */
  nsPerPair: number;
  /** Pairs per second over all processes. */
  pairsPerSec: number;
  allFreed?: boolean;
}

/**
 * Runs the peer once and parses its JSON line.
 * @throws DmemError PEER_FAILED when it exits non-zero, times out or prints no result (its message included)
 */
export function runPeer<T extends PeerFragResult | PeerHeapResult>(peer: Peer, args: readonly string[], timeoutMs = 600_000): T {
  const r = spawnSync(peer.path, args, { encoding: 'utf8', timeout: timeoutMs });
  const line = (r.stdout ?? '').trim().split('\n').pop() ?? '';
  let parsed: (T & { error?: undefined }) | { error: string } | undefined;
  try {
    parsed = JSON.parse(line) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  if (parsed && 'error' in parsed && parsed.error !== undefined) throw new DmemError('PEER_FAILED', `alloc_peer ${args.join(' ')}: ${parsed.error}`);
  if (r.status !== 0 || !parsed) {
    throw new DmemError('PEER_FAILED', `alloc_peer ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr?.trim() ?? ''}`);
  }
  if (parsed.allFreed === false) throw new DmemError('BENCH_LEAK', `alloc_peer ${args.join(' ')}: the Boost segment did not get all its memory back`);
  return parsed as T;
}

/** Options of `runCompare`. */
export interface CompareOptions {
  /** Size classes of the frag pattern (each 0..9); empty: none. */
  classes: number[];
  /** Object sizes of the heap pattern (bytes); empty: none. */
  objects: number[];
  /** Process counts. */
  procs: number[];
  /** Repetitions (>= 1). */
  reps: number;
  /** frag: epochs (issue 10: COMPARE_FRAG_EPOCHS), blocks per process, blocks freed and allocated per epoch. */
  epochs: number;
  /** frag: untimed epochs every process of every side runs first (default COMPARE_WARMUP_EPOCHS; see the file comment). */
  warmupEpochs?: number;
  blocks: number;
  churn: number;
  /** heap: live objects per process, rounds, objects freed and allocated per round. */
  live: number;
  rounds: number;
  heapChurn: number;
  /** heap: untimed rounds of the same pattern before the timed ones, on every side alike (default 0). */
  heapWarmupRounds?: number;
  /** Seed of the patterns; repetition r uses seed + r. */
  seed: number;
  /**
   * Blocks per size class of the per-client block cache (the `blockCache`
   * pool option, passed to the workers as DMEM_BLOCK_CACHE) for the
   * `dmem-cache` side, which runs every cell: dmem as configured by default
   * when this is the default (256). The `dmem` side runs with no block cache
   * (blockCache 0), on the frag cells of classes 0..4 (the only ones the
   * cache changes). 0 or absent: only the `dmem` side, on every cell.
   */
  blockCache?: number;
  /** A built peer (or the reason there is none); default: buildPeer(). */
  peer?: Peer | PeerSkip;
  signal?: AbortSignal;
  /** Called after every single run (one side of one cell in one repetition). */
  onRun?: (run: CompareRun, done: number, total: number) => void;
}

/** One side of one cell in one repetition. */
export interface CompareRun {
  workload: 'frag' | 'heap';
  /** frag: size class; heap: object bytes. */
  param: number;
  procs: number;
  rep: number;
  side: Side;
  /** frag: ops/s (allocs + frees over the slowest process's loop); heap: ns per alloc+free pair (mean over processes). */
  value: number;
  /** frag: allocation latency p50 (ns, every 8th allocation timed); heap: pairs/s over all processes. */
  extra: number;
}

/** The medians of one (workload, param, procs) cell. */
export interface CompareCell {
  workload: 'frag' | 'heap';
  param: number;
  procs: number;
  /** 'ops/s' (frag, higher is better) or 'ns/pair' (heap, lower is better). */
  unit: 'ops/s' | 'ns/pair';
  reps: number;
  /** Median value per side; null for a side that did not run. `dmem`: no block cache. */
  dmem: number | null;
  /** dmem with the per-client block cache (CompareOptions.blockCache: the default configuration). */
  dmemCache: number | null;
  boost: number | null;
  malloc: number | null;
  /** Median over repetitions of dmem's speed / the peer's (above 1: dmem is faster); null when the peer did not run. */
  dmemVsBoost: number | null;
  dmemVsMalloc: number | null;
  /** The same for dmem with the block cache against Boost and malloc. */
  cacheVsBoost: number | null;
  cacheVsMalloc: number | null;
}

/** Everything `runCompare` measured. */
export interface CompareResult {
  runs: CompareRun[];
  cells: CompareCell[];
  /** Sides that did not run, with the reason. */
  skipped: Partial<Record<PeerName, string>>;
  boostVersion?: string;
}

function checkAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new DmemError('ABORTED', 'compare benchmark interrupted');
}

/**
 * Runs the comparison (see the file comment).
 * @throws DmemError from dmem's runs (BENCH_LEAK when a class leaked chunks or a free failed,
 *   WORKER_* from its workers), PEER_FAILED / BENCH_LEAK from a peer run, ABORTED on `signal`
 */
export async function runCompare(o: CompareOptions): Promise<CompareResult> {
  const peer = o.peer ?? buildPeer();
  const skipped: Partial<Record<PeerName, string>> = {};
  const peers: PeerName[] = [];
  for (const name of ['boost', 'malloc'] as const) {
    if ('skipped' in peer) skipped[name] = peer.skipped;
    else if (!peer.allocators.includes(name)) skipped[name] = `the peer was built without ${name === 'boost' ? 'the Boost headers (install libboost-dev)' : name}`;
    else peers.push(name);
  }
  const cache = o.blockCache ?? 0;
  const sides: Side[] = ['dmem', ...(cache > 0 ? ['dmem-cache' as const] : []), ...peers];
  const cacheMatters = (c: CellSpec): boolean => c.workload === 'frag' && c.param <= CACHE_MAX_CLASS;
  const sidesOf = (c: CellSpec): Side[] => sides.filter((s) => s !== 'dmem' || cache === 0 || cacheMatters(c));
  const cellsSpec: Array<{ workload: 'frag' | 'heap'; param: number; procs: number }> = [];
  for (const procs of o.procs) {
    for (const cls of o.classes) cellsSpec.push({ workload: 'frag', param: cls, procs });
    for (const size of o.objects) cellsSpec.push({ workload: 'heap', param: size, procs });
  }
  const total = o.reps * cellsSpec.reduce((a, c) => a + sidesOf(c).length, 0);
  const runs: CompareRun[] = [];
  for (let rep = 0; rep < o.reps; rep++) {
    const seed = (o.seed + rep) >>> 0;
    for (const cell of cellsSpec) {
      // Rotate the order of the sides with the repetition.
      const here = sidesOf(cell);
      for (let k = 0; k < here.length; k++) {
        checkAborted(o.signal);
        const side = here[(k + rep) % here.length];
        const run = side === 'dmem' ? await withBlockCache(0, () => dmemCell(o, cell, seed))
          : side === 'dmem-cache' ? await withBlockCache(cache, () => dmemCell(o, cell, seed))
            : peerCell(peer as Peer, side, o, cell, seed);
        const full: CompareRun = { ...cell, rep, side, ...run };
        runs.push(full);
        o.onRun?.(full, runs.length, total);
      }
    }
  }
  const cells: CompareCell[] = cellsSpec.map((c) => summarizeCell(c, runs, o.reps));
  return { runs, cells, skipped, ...(!('skipped' in peer) && peer.boostVersion ? { boostVersion: peer.boostVersion } : {}) };
}

type CellSpec = { workload: 'frag' | 'heap'; param: number; procs: number };

/**
 * Runs `fn` with DMEM_BLOCK_CACHE set to `blocks` (the workers it forks
 * inherit it and open their pools with that cache), then restores it.
 */
async function withBlockCache<T>(blocks: number, fn: () => Promise<T>): Promise<T> {
  const before = process.env.DMEM_BLOCK_CACHE;
  process.env.DMEM_BLOCK_CACHE = String(blocks);
  try {
    return await fn();
  } finally {
    if (before === undefined) delete process.env.DMEM_BLOCK_CACHE;
    else process.env.DMEM_BLOCK_CACHE = before;
  }
}

async function dmemCell(o: CompareOptions, c: CellSpec, seed: number): Promise<{ value: number; extra: number }> {
  if (c.workload === 'frag') {
    const [r] = await runMicro({ classes: [c.param], procs: c.procs, epochs: o.epochs, warmupEpochs: o.warmupEpochs ?? COMPARE_WARMUP_EPOCHS, blocks: o.blocks, churn: o.churn, seed, signal: o.signal });
    if (r.heldChunksAfter !== r.heldChunksBefore || r.freeErrors > 0) {
      throw new DmemError('BENCH_LEAK', `dmem class ${r.cls}: ${r.heldChunksAfter - r.heldChunksBefore} chunks still held, ${r.freeErrors} failed frees after the run`);
    }
    return { value: r.opsPerSec, extra: r.latency.p50Ns };
  }
  const rs = await dmemRun({ sizes: [c.param], procs: [c.procs], live: o.live, rounds: o.rounds, churn: o.heapChurn, seed, warmupRounds: o.heapWarmupRounds ?? 0 }, c.param, c.procs);
  return { value: rs.reduce((a, r) => a + r.nsPerPair, 0) / rs.length, extra: rs.reduce((a, r) => a + r.pairs / (r.elapsedNs / 1e9), 0) };
}

function peerCell(peer: Peer, side: PeerName, o: CompareOptions, c: CellSpec, seed: number): { value: number; extra: number } {
  const common = ['--allocator', side, '--procs', String(c.procs), '--seed', String(seed)];
  if (c.workload === 'frag') {
    const warmup = o.warmupEpochs ?? COMPARE_WARMUP_EPOCHS;
    const args = [...common, '--pattern', 'frag', '--class', String(c.param), '--epochs', String(o.epochs), '--warmup', String(warmup), '--blocks', String(o.blocks), '--churn', String(o.churn)];
    const r = runPeer<PeerFragResult>(peer, args);
    if (r.epochs !== o.epochs || r.warmupEpochs !== warmup) {
      throw new DmemError('PEER_FAILED', `alloc_peer ${args.join(' ')} ran ${r.epochs} epochs after ${r.warmupEpochs} warm-up epochs, not ${o.epochs} after ${warmup} (a stale peer binary?)`);
    }
    return { value: r.opsPerSec, extra: r.latency.p50Ns };
  }
  const warmupRounds = o.heapWarmupRounds ?? 0;
  const args = [...common, '--pattern', 'heap', '--size', String(c.param), '--live', String(o.live), '--rounds', String(o.rounds), '--churn', String(o.heapChurn), '--warmup-rounds', String(warmupRounds)];
  const r = runPeer<PeerHeapResult>(peer, args);
  if (r.rounds !== o.rounds || r.warmupRounds !== warmupRounds) {
    throw new DmemError('PEER_FAILED', `alloc_peer ${args.join(' ')} ran ${r.rounds} rounds after ${r.warmupRounds} warm-up rounds, not ${o.rounds} after ${warmupRounds} (a stale peer binary?)`);
  }
  return { value: r.nsPerPair, extra: r.pairsPerSec };
}

function summarizeCell(c: CellSpec, runs: readonly CompareRun[], reps: number): CompareCell {
  const of = (side: Side): CompareRun[] => runs.filter((r) => r.workload === c.workload && r.param === c.param && r.procs === c.procs && r.side === side);
  const med = (side: Side): number | null => {
    const rs = of(side);
    return rs.length === 0 ? null : median(rs.map((r) => r.value));
  };
  // Speed ratio dmem / peer of one repetition: ops/s divide directly, ns/pair the other way round.
  const ratio = (peer: PeerName, base: Side = 'dmem'): number | null => {
    const ps = of(peer);
    const ds = of(base);
    if (ps.length === 0 || ds.length === 0) return null;
    const per = ps.map((p) => {
      const d = ds.find((x) => x.rep === p.rep)!;
      return c.workload === 'frag' ? d.value / p.value : p.value / d.value;
    });
    return median(per);
  };
  return {
    ...c, unit: c.workload === 'frag' ? 'ops/s' : 'ns/pair', reps,
    dmem: med('dmem'), dmemCache: med('dmem-cache'), boost: med('boost'), malloc: med('malloc'),
    dmemVsBoost: ratio('boost'), dmemVsMalloc: ratio('malloc'), cacheVsBoost: ratio('boost', 'dmem-cache'), cacheVsMalloc: ratio('malloc', 'dmem-cache'),
  };
}

/** Label of a cell's workload: "class 0 (4 KiB)" or "heap 64 B". */
export function workloadLabel(c: { workload: 'frag' | 'heap'; param: number }): string {
  if (c.workload === 'heap') return `heap ${c.param} B`;
  const b = classBytes(c.param);
  return `class ${c.param} (${b >= 2 ** 20 ? `${b / 2 ** 20} MiB` : `${b / 1024} KiB`})`;
}
