/**
 * `npm run bench`: the standard benchmark set, written as JSON to
 * bench/results/<timestamp>.json (gitignored) with a summary table.
 *
 *   micro (FineMem frag): classes 0, 4, 9 x 1 and 2 processes, 5 repetitions
 *     each (each repetition a fresh temporary pool and fresh processes);
 *     summary = median ops/s and median p50 latency over the repetitions
 *   trace (FineMem stage): trace.je.larson.16 and trace.sys.xmalloc-test.16
 *     from ../shared/traces, 2 processes, 1 epoch; skipped with a printed
 *     reason when that folder is absent
 *   recovery: owner-log entries scanned per second recovering a client that
 *     holds 99% of a 4 GiB pool, and death-to-free time at leases of 200 and
 *     1000 ms (src/bench/recovery.ts); median of 3
 *   heap: ns per alloc+free pair of pool.heap for 64 B, 256 B, 1 KiB objects
 *     with 1 and 2 processes against @thi.ng/malloc's MemPool in this
 *     process (src/bench/heap.ts); median of 3
 *   compare (short): dmem against Boost.Interprocess and glibc malloc
 *     (src/bench/compare.ts; bench/peers/alloc_peer.cpp built with g++),
 *     classes 0, 4, 9 and heap 64/256/1024 B at 1 and 2 processes, 500
 *     epochs / rounds, 3 interleaved repetitions; the peers are skipped with
 *     a printed reason without g++ or the Boost headers
 *   paging: far-memory spaces per policy and prefetch on mmapbench's
 *     patterns (32 MiB space, 8 MiB cache, 200k accesses) and PageRank on a
 *     scale-16 Kronecker graph, with Belady's MIN and local memory
 *     (src/bench/paging.ts); throughput median of 3
 *
 * Benchmarks never fail the test pass; this script exits 1 only when a run
 * itself fails (an error, a leak, a failed allocation in a replay).
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runMicro, type MicroResult } from '../src/bench/micro.js';
import { runTrace, type TraceResult } from '../src/bench/trace.js';
import { median } from '../src/bench/percentile.js';
import { benchDeathToFree, benchRecoveryScan, type DeathResult, type ScanResult } from '../src/bench/recovery.js';
import { checkMicro, checkTrace, heapBench, traceTable } from '../src/cli/bench.js';
import { fixed, formatCount, formatNs, table } from '../src/cli/format.js';
import { withInterrupt } from '../src/cli/interrupt.js';
import { COMPARE_WARMUP_EPOCHS, runCompare } from '../src/bench/compare.js';
import { compareTable } from '../src/cli/compare.js';
import { pagingBench, pagingTable, type PagingFlags } from '../src/cli/bench-paging.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TRACES_DIR = join(ROOT, '..', 'shared', 'traces');
const TRACES = ['trace.je.larson.16', 'trace.sys.xmalloc-test.16'];
const CLASSES = [0, 4, 9];
const PROCS = [1, 2];
const REPS = 5;
const EPOCHS = 1000;

/** Median summary of one (class, procs) cell over its repetitions. */
interface MicroCell {
  cls: number;
  procs: number;
  reps: number;
  medianOpsPerSec: number;
  medianP50Ns: number;
  runs: MicroResult[];
}

async function micro(signal: AbortSignal): Promise<MicroCell[]> {
  const byKey = new Map<string, MicroResult[]>();
  for (const procs of PROCS) {
    for (let rep = 0; rep < REPS; rep++) {
      process.stderr.write(`micro: ${procs} process(es), repetition ${rep + 1}/${REPS}\n`);
      const results = await runMicro({ classes: CLASSES, procs, epochs: EPOCHS, signal });
      checkMicro(results);
      for (const r of results) {
        const key = `${r.cls}/${procs}`;
        byKey.set(key, [...(byKey.get(key) ?? []), r]);
      }
    }
  }
  const cells: MicroCell[] = [];
  for (const cls of CLASSES) {
    for (const procs of PROCS) {
      const runs = byKey.get(`${cls}/${procs}`) ?? [];
      cells.push({
        cls, procs, reps: runs.length,
        medianOpsPerSec: median(runs.map((r) => r.opsPerSec)),
        medianP50Ns: median(runs.map((r) => r.latency.p50Ns)),
        runs,
      });
    }
  }
  return cells;
}

async function traces(signal: AbortSignal): Promise<{ results: TraceResult[]; skipped?: string }> {
  const paths = TRACES.map((t) => join(TRACES_DIR, t));
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length > 0) return { results: [], skipped: `trace files not found: ${missing.join(', ')} (expected ../shared/traces next to the project)` };
  process.stderr.write(`trace: ${TRACES.join(', ')} with 2 processes\n`);
  const results = await runTrace({ paths, procs: 2, epochs: 1, signal });
  checkTrace(results);
  return { results };
}

const RECOVERY_REPS = 3;
const LEASES = [200, 1000];

async function recovery(): Promise<{ scan: ScanResult[]; death: DeathResult[] }> {
  process.stderr.write('recovery: scan of a 4 GiB pool, death-to-free\n');
  const scan: ScanResult[] = [];
  for (let i = 0; i < RECOVERY_REPS; i++) scan.push(await benchRecoveryScan(4 * 2 ** 30, 0.99));
  const death: DeathResult[] = [];
  for (const lease of LEASES) for (let i = 0; i < RECOVERY_REPS; i++) death.push(await benchDeathToFree(lease, 200));
  return { scan, death };
}

async function main(): Promise<void> {
  const started = new Date();
  const { microCells, trace } = await withInterrupt(async (signal) => ({ microCells: await micro(signal), trace: await traces(signal) }));
  const rec = await recovery();
  process.stderr.write('heap: 64 B, 256 B, 1 KiB objects, 1 and 2 processes, against MemPool\n');
  const heap = await heapBench({ sizes: [64, 256, 1024], procs: [1, 2], live: 1000, rounds: 1000, churn: 250, warmupRounds: 1000, reps: 3, seed: 1, json: false }, false);
  process.stderr.write('compare: dmem against Boost.Interprocess and malloc, 3 interleaved repetitions\n');
  const COMPARE = { classes: CLASSES, objects: [64, 256, 1024], procs: PROCS, reps: 3, epochs: 500, blocks: 1000, churn: 250, live: 1000, rounds: 500, heapChurn: 250, warmupEpochs: COMPARE_WARMUP_EPOCHS, heapWarmupRounds: 500, blockCache: 256, seed: 1 };
  const compare = await withInterrupt((signal) => runCompare({ ...COMPARE, signal }));
  process.stderr.write('paging: patterns and PageRank per eviction policy, against MIN and local memory\n');
  const pagingFlags: PagingFlags = {
    space: 32 * 2 ** 20, accesses: 200_000, patterns: ['sequential', 'uniform', 'hotset'], policies: ['lru', 'clock', 'linux', 'heat'],
    prefetch: ['none', 'sequential'], scale: 16, iterations: 3, reps: 3, seed: 1, json: false,
  };
  const paging = await pagingBench(pagingFlags, false);
  const report = {
    date: started.toISOString(),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    micro: { classes: CLASSES, procs: PROCS, reps: REPS, epochs: EPOCHS, blocks: 1000, churn: 250, cells: microCells },
    trace: { procs: 2, epochs: 1, results: trace.results, ...(trace.skipped ? { skipped: trace.skipped } : {}) },
    recovery: rec,
    heap,
    compare: { ...COMPARE, cells: compare.cells, skipped: compare.skipped, boostVersion: compare.boostVersion },
    paging,
  };
  const dir = join(ROOT, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);

  const lines = [
    `micro (frag): ${EPOCHS} epochs, 1000 blocks, 250 churn; median of ${REPS} repetitions`,
    ...table(
      [{ header: 'class' }, { header: 'procs' }, { header: 'ops/s' }, { header: 'p50 ns' }, { header: 'ops/s min..max' }],
      microCells.map((c) => [
        String(c.cls), String(c.procs), formatCount(c.medianOpsPerSec), formatNs(c.medianP50Ns),
        `${formatCount(Math.min(...c.runs.map((r) => r.opsPerSec)))}..${formatCount(Math.max(...c.runs.map((r) => r.opsPerSec)))}`,
      ]),
    ),
    '',
    ...(trace.skipped ? [`trace: skipped: ${trace.skipped}`] : ['trace (stage): 2 processes, 1 epoch', ...traceTable(trace.results)]),
    '',
    `recovery (median of ${RECOVERY_REPS}): ${formatCount(median(rec.scan.map((r) => r.entriesPerSec)))} owner-log entries/s on a 4 GiB pool (${fixed(median(rec.scan.map((r) => r.ms)), 1)} ms for ${formatCount(rec.scan[0].blocks)} blocks)`,
    ...LEASES.map((l) => `death-to-free at lease ${l} ms: ${fixed(median(rec.death.filter((d) => d.leaseMs === l).map((d) => d.ms)), 0)} ms = ${fixed(median(rec.death.filter((d) => d.leaseMs === l).map((d) => d.leases)))} leases`),
    '',
    'heap (frag on objects, 1000 live, 250 churn, 1000 rounds; median of 3)',
    ...table(
      [{ header: 'size B' }, { header: 'procs' }, { header: 'dmem ns/pair' }, { header: 'MemPool ns/pair' }, { header: 'dmem/MemPool' }],
      heap.map((c) => [String(c.size), String(c.procs), fixed(c.dmemNsPerPair, 0), c.baselineNsPerPair === null ? '-' : fixed(c.baselineNsPerPair, 0), c.ratio === null ? '-' : fixed(c.ratio, 2)]),
    ),
    '',
    `compare (frag 500 epochs after ${COMPARE_WARMUP_EPOCHS} untimed, heap 500 rounds after 500 untimed; block cache 256 (the default); median of 3 interleaved; speed ratios dmem / peer)${compare.boostVersion ? `, Boost ${compare.boostVersion}` : ''}`,
    ...Object.entries(compare.skipped).map(([side, why]) => `skip: ${side}: ${why}`),
    ...compareTable(compare.cells),
    ...pagingTable(paging, pagingFlags),
    '',
    `written ${file} (${fixed((Date.now() - started.getTime()) / 1000, 1)} s)`,
  ];
  for (const l of lines) process.stdout.write(`${l}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
