/**
 * `dmem bench micro` and `dmem bench trace`: the FineMem benchmarks
 * (src/bench/micro.ts, src/bench/trace.ts) with human tables or JSON lines.
 * A run that leaks chunks or has failed operations prints its results, then
 * fails (exit 1). Results stream: with --json each measurement's line is
 * printed as soon as it finishes, and an interrupted run (SIGINT) prints the
 * table of what finished before it exits, so no finished result is lost.
 */
import type { Command } from 'commander';
import { DmemError } from '../errors.js';
import { runMicro, type MicroResult } from '../bench/micro.js';
import { runTrace, type TraceResult } from '../bench/trace.js';
import { benchDeathToFree, benchRecoveryScan, type DeathResult, type ScanResult } from '../bench/recovery.js';
import { median } from '../bench/percentile.js';
import { runHeapBench, type HeapBenchRow } from '../bench/heap.js';
import { InvalidArgumentError } from 'commander';
import { formatBytes } from '../units.js';
import { fixed, formatCount, formatNs, table } from './format.js';
import { intIn, parseClass, parseClassList, parseExistingFile, parsePoolName, parsePositiveSize, parseSeed } from './options.js';
import { Output } from './output.js';
import { progress } from './progress.js';
import { withInterrupt } from './interrupt.js';
import { addCompareCommand } from './compare.js';
import { addChaosCommand } from './chaos.js';
import { addPagingBench } from './bench-paging.js';
import { addRemoteBenchCommand } from './bench-remote.js';
import { addOfiBenchCommand } from './bench-ofi.js';
import { addStudyCommands, studyMicroCommand, studyTraceCommand, studyOptions, type StudyFlags } from './study.js';

interface MicroFlags extends StudyFlags {
  pool?: string;
  size?: number;
  class?: number;
  classes?: number[];
  procs: number;
  epochs: number;
  blocks: number;
  churn: number;
  seed?: number;
  json: boolean;
}

interface TraceFlags extends StudyFlags {
  procs: number;
  epochs: number;
  pool?: string;
  size?: number;
  seed?: number;
  json: boolean;
}

/** Adds `bench micro` and `bench trace` to `program`. */
export function addBenchCommands(program: Command): void {
  const bench = program.command('bench').description('benchmarks: micro (FineMem frag), trace (FineMem stage replay), recovery, heap, compare, chaos, paging, remote, ofi');
  addOfiBenchCommand(bench);

  bench
    .command('micro')
    .description(
      "FineMem's frag microbenchmark: each of P processes allocates N blocks of a size class, then every epoch frees M random ones and allocates M again",
    )
    .option('--pool <name>', 'run on this shm pool (must exist, or give --size); default: a temporary pool shm:dmem-bench-<pid>, removed at the end', parsePoolName)
    .option('--size <bytes>', 'with --pool: create the pool with this size (e.g. 8GiB) when it does not exist', parsePositiveSize)
    .option('--class <c>', 'one size class, 0..9 (block = 4 KiB * 2^c)', parseClass)
    .option('--classes <list>', 'size classes to run in order, e.g. 0-9 or 0,4,9 (default 0-9)', parseClassList)
    .option('--procs <p>', 'client processes (P)', intIn(1, 1024), 2)
    .option('--epochs <e>', 'epochs per class (E); short runs measure the JIT warming up', intIn(1, 1e9), 1000)
    .option('--blocks <n>', 'blocks each process holds (N)', intIn(1, 1e8), 1000)
    .option('--churn <m>', 'blocks freed and allocated again per epoch (M, at most N)', intIn(1, 1e8), 250)
    .option('--seed <s>', 'PRNG seed, 0..2^32-1 (default: random, printed in the result)', parseSeed)
    .option('--json', 'print one JSON object per size class on stdout', false)
    .addHelpText('after', [
      '',
      'Reported per class: ops/s = (allocs + frees of every epoch loop) / the slowest process\'s loop time;',
      'allocation latency mean/p50/p99 in ns (performance.now() around each allocClass); CAS retries per',
      'allocation (mean, max); transport operations per alloc and per free; chunks held after every',
      'process freed its blocks (must not grow: otherwise exit 1). Temporary pool size:',
      'P * N * (largest block) * 1.25 + 64 MiB, sparse in /dev/shm.',
      '',
      'Example:',
      '  dmem bench micro --class 0 --procs 2 --epochs 200',
    ].join('\n'))
    .action(async (flags: MicroFlags, cmd: Command) => {
      if (flags.class !== undefined && flags.classes !== undefined) cmd.error('error: give --class or --classes, not both', { exitCode: 2 });
      if (flags.churn > flags.blocks) cmd.error(`error: --churn (${flags.churn}) must not exceed --blocks (${flags.blocks})`, { exitCode: 2 });
      if (flags.size !== undefined && flags.pool === undefined) cmd.error('error: --size needs --pool (a temporary pool is sized automatically)', { exitCode: 2 });
      const classes = flags.class !== undefined ? [flags.class] : flags.classes ?? [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
      if (flags.allocator || flags.plot || flags.out) await studyMicroCommand(flags, classes);
      else await micro(flags, classes);
    });

  bench
    .command('trace')
    .description("FineMem's stage test: every process replays each allocation trace (lines '<arrival_us> <size_class>') at its arrival times, then frees all")
    .argument('[files...]', 'trace files, e.g. ../shared/traces/trace.sys.xmalloc-test.16', parseExistingFile)
    .option('--procs <p>', 'client processes, each replaying the whole trace', intIn(1, 1024), 2)
    .option('--epochs <e>', 'replays of each trace per process, with a barrier between them', intIn(1, 1e6), 1)
    .option('--pool <name>', 'run on this shm pool (must exist, or give --size); default: a temporary pool shm:dmem-bench-<pid>, removed at the end', parsePoolName)
    .option('--size <bytes>', 'with --pool: create the pool with this size when it does not exist', parsePositiveSize)
    .option('--seed <s>', "seed of the clients' core PRNGs, 0..2^32-1 (default: random)", parseSeed)
    .option('--json', 'print one JSON object per trace on stdout', false)
    .addHelpText('after', [
      '',
      'Reported per trace: mean allocation latency (ns), replay time against the trace\'s own duration',
      '(its last arrival) as a ratio (1.00 = kept up), CAS retries per allocation (mean, max), allocations,',
      'and errors (failed allocations or frees, e.g. POOL_EXHAUSTED: any makes the exit status 1).',
      'Temporary pool size: P * (sum of 4 KiB * 2^c over the trace) * 1.1 + 64 MiB, sparse in /dev/shm.',
    ].join('\n'))
    .action(async (files: string[], flags: TraceFlags, cmd: Command) => {
      if (flags.size !== undefined && flags.pool === undefined) cmd.error('error: --size needs --pool (a temporary pool is sized automatically)', { exitCode: 2 });
      if (files.length === 0 && !flags.all) cmd.error('error: give trace files or --all DIR', { exitCode: 2 });
      if (flags.allocator || flags.plot || flags.out || flags.all) await studyTraceCommand(files, flags);
      else await trace(files, flags);
    });

  bench
    .command('recovery')
    .description('recovery throughput (owner-log entries scanned per second) and the time from a client\'s death to its memory being free')
    .option('--pool-size <bytes>', 'pool for the scan test, e.g. 4GiB (a temporary shm pool)', parsePositiveSize, 4 * 2 ** 30)
    .option('--fill <fraction>', 'share of the pool the recovered client holds, in 4 KiB blocks (0..1)', parseFraction, 0.99)
    .option('--lease-ms <ms>', 'leases to time death-to-free with, comma-separated (ms)', parseIntList, [200, 1000])
    .option('--reps <n>', 'repetitions of each measurement; the median is reported', intIn(1, 100), 3)
    .option('--json', 'print one JSON object per measurement on stdout', false)
    .action(async (flags: RecoveryFlags) => {
      await recovery(flags);
    });

  bench
    .command('heap')
    .description("object heap: ns per alloc+free pair (frag pattern on objects) with 1 and more processes, against @thi.ng/malloc's MemPool in this process")
    .option('--sizes <bytes>', 'object sizes, comma-separated (bytes)', parseSizeList, [64, 256, 1024])
    .option('--procs <list>', 'process counts for dmem, comma-separated', parseProcList, [1, 2])
    .option('--live <n>', 'objects each process holds', intIn(1, 1_000_000), 1000)
    .option('--rounds <n>', 'rounds; each frees and allocates --churn random objects', intIn(1, 1_000_000), 1000)
    .option('--churn <n>', 'objects freed and allocated per round', intIn(1, 1_000_000), 250)
    .option('--warmup-rounds <n>', 'untimed rounds of the same pattern before the timed ones (dmem and the baseline alike)', intIn(0, 1_000_000), 1000)
    .option('--reps <n>', 'repetitions; medians are reported', intIn(1, 100), 3)
    .option('--seed <n>', 'PRNG seed of the pattern', parseSeed, 1)
    .option('--json', 'print one JSON object per measurement on stdout', false)
    .action(async (flags: HeapFlags) => {
      await heapBench(flags);
    });

  studyOptions(bench.commands.find((c) => c.name() === 'micro')!, false);
  studyOptions(bench.commands.find((c) => c.name() === 'trace')!, true);
  addStudyCommands(bench);
  addCompareCommand(bench);
  addChaosCommand(bench);
  addPagingBench(bench);
  addRemoteBenchCommand(bench);
}

interface HeapFlags {
  sizes: number[];
  procs: number[];
  live: number;
  rounds: number;
  churn: number;
  warmupRounds: number;
  reps: number;
  seed: number;
  json: boolean;
}

/** Comma-separated object sizes 1 .. 3072 bytes (slab objects). */
export function parseSizeList(text: string): number[] {
  const values = text.split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1 || v > 3072)) throw new InvalidArgumentError(`expected comma-separated sizes 1..3072 (bytes), got "${text}"`);
  return values;
}

/** Comma-separated process counts 1..64. */
export function parseProcList(text: string): number[] {
  const values = text.split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 1 || v > 64)) throw new InvalidArgumentError(`expected comma-separated process counts 1..64, got "${text}"`);
  return values;
}

/**
 * Runs the heap benchmark (src/bench/heap.ts) `reps` times and prints each
 * cell's medians: dmem ns per pair, pairs/s over all processes, MemPool's
 * ns per pair and the ratio.
 */
export async function heapBench(flags: HeapFlags, print = true): Promise<HeapBenchRow[]> {
  const out = new Output(flags.json);
  const runs: HeapBenchRow[] = [];
  let skipped: string | null = null;
  for (let rep = 0; rep < flags.reps; rep++) {
    const r = await runHeapBench({ sizes: flags.sizes, procs: flags.procs, live: flags.live, rounds: flags.rounds, churn: flags.churn, warmupRounds: flags.warmupRounds, seed: flags.seed + rep });
    skipped = r.baselineSkipped;
    runs.push(...r.rows);
    if (print) for (const row of r.rows) out.result({ test: 'heap', rep, ...row }, () => []);
  }
  if (skipped !== null) process.stderr.write(`heap: baseline skipped: ${skipped}\n`);
  const cells: HeapBenchRow[] = [];
  for (const size of flags.sizes) {
    for (const procs of flags.procs) {
      const rs = runs.filter((r) => r.size === size && r.procs === procs);
      const base = rs.every((r) => r.baselineNsPerPair !== null) ? median(rs.map((r) => r.baselineNsPerPair!)) : null;
      cells.push({
        size, procs, dmemNsPerPair: median(rs.map((r) => r.dmemNsPerPair)), dmemPairsPerSec: median(rs.map((r) => r.dmemPairsPerSec)),
        baselineNsPerPair: base, ratio: rs.every((r) => r.ratio !== null) ? median(rs.map((r) => r.ratio!)) : null,
      });
    }
  }
  if (!print) return cells;
  out.lines([
    `heap (frag on objects): ${flags.live} live objects per process, ${flags.churn} freed+allocated per round, ${flags.rounds} rounds; median of ${flags.reps}`,
    ...table(
      [{ header: 'size B' }, { header: 'procs' }, { header: 'dmem ns/pair' }, { header: 'pairs/s (all)' }, { header: 'MemPool ns/pair' }, { header: 'dmem/MemPool' }],
      cells.map((c) => [String(c.size), String(c.procs), fixed(c.dmemNsPerPair, 0), formatCount(c.dmemPairsPerSec),
        c.baselineNsPerPair === null ? '-' : fixed(c.baselineNsPerPair, 0), c.ratio === null ? '-' : fixed(c.ratio, 2)]),
    ),
  ]);
  return cells;
}

interface RecoveryFlags {
  poolSize: number;
  fill: number;
  leaseMs: number[];
  reps: number;
  json: boolean;
}

/** A fraction in (0, 1]; commander's InvalidArgumentError (exit 2) otherwise. */
function parseFraction(text: string): number {
  const v = Number(text);
  if (!(v > 0 && v <= 1)) throw new InvalidArgumentError(`fraction must be in (0, 1], got "${text}"`);
  return v;
}

/** Comma-separated integers >= 10; commander's InvalidArgumentError (exit 2) otherwise. */
function parseIntList(text: string): number[] {
  const values = text.split(',').map(Number);
  if (values.some((v) => !Number.isInteger(v) || v < 10)) throw new InvalidArgumentError(`expected comma-separated integers >= 10, got "${text}"`);
  return values;
}

/**
 * Runs the recovery benchmarks (src/bench/recovery.ts), `reps` times each,
 * printing every run and the medians.
 */
export async function recovery(flags: RecoveryFlags): Promise<{ scan: ScanResult[]; death: DeathResult[] }> {
  const out = new Output(flags.json);
  const scan: ScanResult[] = [];
  for (let i = 0; i < flags.reps; i++) {
    const r = await benchRecoveryScan(flags.poolSize, flags.fill);
    scan.push(r);
    out.result({ test: 'scan', ...r }, () => [
      `scan: ${formatBytes(r.poolBytes)} pool, ${formatCount(r.blocks)} blocks held by the dead client: ${fixed(r.ms, 1)} ms, ${formatCount(r.entriesPerSec)} owner-log entries/s, ${formatCount(r.blocksPerSec)} blocks freed/s`,
    ]);
  }
  const death: DeathResult[] = [];
  for (const lease of flags.leaseMs) {
    for (let i = 0; i < flags.reps; i++) {
      const r = await benchDeathToFree(lease, 200);
      death.push(r);
      out.result({ test: 'death', ...r }, () => [`death-to-free: lease ${lease} ms: ${fixed(r.ms, 0)} ms = ${fixed(r.leases)} leases`]);
    }
  }
  out.lines([
    `median scan: ${formatCount(median(scan.map((r) => r.entriesPerSec)))} entries/s`,
    ...flags.leaseMs.map((l) => `median death-to-free at lease ${l} ms: ${fixed(median(death.filter((d) => d.leaseMs === l).map((d) => d.leases)))} leases`),
  ]);
  return { scan, death };
}

/** Human table rows of micro results (one per class). */
export function microTable(results: readonly MicroResult[]): string[] {
  return table(
    [
      { header: 'class' }, { header: 'block' }, { header: 'ops/s' }, { header: 'lat mean ns' }, { header: 'p50 ns' }, { header: 'p99 ns' },
      { header: 'retries mean' }, { header: 'max' }, { header: 'ops/alloc' }, { header: 'ops/free' }, { header: 'held after' },
    ],
    results.map((r) => [
      String(r.cls), formatBytes(r.blockBytes), formatCount(r.opsPerSec), formatNs(r.latency.meanNs), formatNs(r.latency.p50Ns), formatNs(r.latency.p99Ns),
      fixed(r.casRetries.perAlloc, 3), String(r.casRetries.max), fixed(r.transportOps.perAlloc), fixed(r.transportOps.perFree), String(r.heldChunksAfter),
    ]),
  );
}

/** One line describing a micro run's parameters. */
export function microHeader(r: MicroResult): string {
  return `micro (frag): ${r.procs} process${r.procs === 1 ? '' : 'es'}, ${r.blocks} blocks each, ${r.churn} freed+allocated per epoch, ${r.epochs} epochs, seed ${r.seed}, pool ${r.pool}`;
}

/** Throws when a micro run leaked chunks or had failed frees (after its results were printed). */
export function checkMicro(results: readonly MicroResult[]): void {
  const bad = results.filter((r) => r.heldChunksAfter !== r.heldChunksBefore || r.freeErrors > 0);
  if (bad.length === 0) return;
  const what = bad.map((r) => `class ${r.cls}: ${r.heldChunksAfter - r.heldChunksBefore} chunks still held, ${r.freeErrors} failed frees`).join('; ');
  throw new DmemError('BENCH_LEAK', `blocks were not all released after the run (${what})`);
}

/**
 * Runs the micro benchmark with a progress bar and interrupt handling,
 * prints one row (or JSON line) per class.
 * @throws DmemError BENCH_LEAK after printing when chunks leaked; every error of runMicro
 */
export async function micro(flags: Omit<MicroFlags, 'class' | 'classes'>, classes: number[]): Promise<MicroResult[]> {
  const out = new Output(flags.json);
  const done: MicroResult[] = [];
  const print = (results: MicroResult[]): void => { if (results.length > 0) out.lines([microHeader(results[0]), ...microTable(results)]); };
  const results = await streamed(out, 'micro classes', done, print, (signal, onProgress) => runMicro({
    classes, procs: flags.procs, epochs: flags.epochs, blocks: flags.blocks, churn: flags.churn, seed: flags.seed,
    pool: flags.pool, size: flags.size, signal, onProgress, onResult: (r) => { done.push(r); out.result(r, () => []); },
  }));
  print(results);
  checkMicro(results);
  return results;
}

/**
 * Runs a benchmark whose results arrive one by one (`done` fills as they
 * finish, and --json lines are printed then), with a progress bar and
 * interrupt handling. When the run fails or is interrupted, prints the
 * human table of what finished (`print`) before rethrowing.
 */
async function streamed<T>(
  out: Output, label: string, done: T[], print: (results: T[]) => void,
  run: (signal: AbortSignal, onProgress: (done: number, total: number) => void) => Promise<T[]>,
): Promise<T[]> {
  const bar = progress(label);
  try {
    return await withInterrupt((signal) => run(signal, (n, total) => bar.update(n, total)));
  } catch (err) {
    bar.stop();
    if (done.length > 0) {
      process.stderr.write(`${label}: stopped after ${done.length} finished measurement${done.length === 1 ? '' : 's'}${out.json ? ' (their JSON lines are above)' : ':'}\n`);
      print(done);
    }
    throw err;
  } finally {
    bar.stop();
  }
}

/** Human table rows of trace results (one per trace). */
export function traceTable(results: readonly TraceResult[]): string[] {
  return table(
    [
      { header: 'trace', left: true }, { header: 'requests' }, { header: 'lat mean ns' }, { header: 'p99 ns' }, { header: 'trace ms' },
      { header: 'replay ms' }, { header: 'ratio' }, { header: 'retries mean' }, { header: 'max' }, { header: 'allocs' }, { header: 'errors' },
    ],
    results.map((r) => [
      r.trace, String(r.requests), formatNs(r.latency.meanNs), formatNs(r.latency.p99Ns), fixed(r.traceMs, 1), fixed(r.replayMs.mean, 1),
      r.ratio === null ? '-' : fixed(r.ratio.mean, 3), fixed(r.casRetries.perAlloc, 3), String(r.casRetries.max), String(r.allocs), String(r.errors),
    ]),
  );
}

/** Throws when a replay had errors or leaked chunks (after its results were printed). */
export function checkTrace(results: readonly TraceResult[]): void {
  const bad = results.filter((r) => r.errors > 0 || r.heldChunksAfter !== r.heldChunksBefore);
  if (bad.length === 0) return;
  const what = bad.map((r) => `${r.trace}: ${r.errors} errors${r.firstError ? ` (first: ${r.firstError})` : ''}, ${r.heldChunksAfter - r.heldChunksBefore} chunks still held`).join('; ');
  throw new DmemError('BENCH_ERRORS', `trace replay failed (${what})`);
}

async function trace(files: string[], flags: TraceFlags): Promise<void> {
  const out = new Output(flags.json);
  const done: TraceResult[] = [];
  const print = (results: TraceResult[]): void => {
    if (results.length === 0) return;
    const r0 = results[0];
    out.lines([
      `trace (stage): ${r0.procs} process${r0.procs === 1 ? '' : 'es'}, ${r0.epochs} epoch${r0.epochs === 1 ? '' : 's'}, pool ${r0.pool}`,
      ...traceTable(results),
    ]);
  };
  const results = await streamed(out, 'trace epochs', done, print, (signal, onProgress) => runTrace({
    paths: files, procs: flags.procs, epochs: flags.epochs, pool: flags.pool, size: flags.size, seed: flags.seed,
    signal, onProgress, onResult: (r) => { done.push(r); out.result(r, () => []); },
  }));
  print(results);
  checkTrace(results);
}
