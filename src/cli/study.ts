/**
 * The allocator study's commands (issue 14): `dmem bench memtest`,
 * `dmem bench study` (FineMem's Table 2: class 0, 1..P processes, every
 * allocator), and the study paths of `bench micro` / `bench trace` taken
 * with --allocator, --plot or --all (src/cli/bench.ts calls
 * studyMicroCommand / studyTraceCommand). Every result is one JSON line
 * carrying the run's metadata: on stdout with --json, and in --out FILE
 * whenever given; --plot FILE.svg|.png draws the results (src/study/plot.ts).
 */
import type { Command } from 'commander';
import { appendFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { InvalidArgumentError as UsageError } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { median } from '../bench/percentile.js';
import { parseAllocators, type AllocatorName } from '../study/allocator.js';
import { checkStudy, traceTooLarge, memtest, runMeta, studyMicro, studyTrace, type MemtestRound, type RunMeta, type StudyMicroResult, type StudyTraceResult } from '../study/run.js';
import { writePlot, type Panel } from '../study/plot.js';
import { releaseAllStudyPools } from '../study/pools.js';
import { killAllFleets } from '../study/fleet.js';
import { fixed, formatCount, formatNs, table } from './format.js';
import { intIn, parsePositiveSize, parseSeed } from './options.js';
import { formatBytes } from '../units.js';

let interruptible = false;
/** On SIGINT/SIGTERM: stop servers, remove the temporary pools, exit 130 (workers die with their IPC channel). */
function onInterrupt(): void {
  if (interruptible) return;
  interruptible = true;
  const stop = (): void => {
    process.stderr.write('study: interrupted; removing temporary pools\n');
    killAllFleets();
    void releaseAllStudyPools().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/** Where a study command's results go. */
class Sink {
  readonly meta: RunMeta = runMeta();
  constructor(private readonly json: boolean, private readonly out?: string) {
    if (out) writeFileSync(out, '');
    onInterrupt();
  }
  /** One result: a JSON line with the metadata (stdout with --json, and --out). */
  row(value: object): void {
    const line = `${JSON.stringify({ ...value, meta: this.meta })}\n`;
    if (this.json) process.stdout.write(line);
    if (this.out) appendFileSync(this.out, line);
  }
  /** Human lines (not with --json). */
  lines(lines: readonly string[]): void {
    if (!this.json) for (const l of lines) process.stdout.write(`${l}\n`);
  }
  async plot(file: string | undefined, panels: Panel[]): Promise<void> {
    if (!file) return;
    const written = await writePlot(file, panels, this.meta);
    process.stderr.write(`plot: wrote ${written.join(', ')}\n`);
  }
}

/** Comma-separated process counts 1..1024 (`1-4` for a range). */
export function parseProcs(text: string): number[] {
  const m = /^(\d+)-(\d+)$/.exec(text);
  const v = m ? Array.from({ length: Math.max(0, Number(m[2]) - Number(m[1]) + 1) }, (_, i) => Number(m[1]) + i) : text.split(',').map(Number);
  if (v.length === 0 || v.some((x) => !Number.isInteger(x) || x < 1 || x > 1024)) throw new UsageError(`expected process counts 1..1024 like 1,2,4 or 1-4, got "${text}"`);
  return v;
}

function allocatorOption(text: string): AllocatorName[] {
  try { return parseAllocators(text); } catch (e) { throw new UsageError((e as Error).message); }
}

/** The study flags `bench micro` and `bench trace` take (src/cli/bench.ts). */
export interface StudyFlags { allocator?: AllocatorName[]; plot?: string; out?: string; all?: string }

/** Adds --allocator, --plot, --out (and for trace --all DIR) to `cmd`; any of them selects the study path. */
export function studyOptions(cmd: Command, trace: boolean): void {
  cmd
    .option('--allocator <a>', 'allocator study: dmem, onesided-array, server, comma-separated, or all (runs on temporary pools)', allocatorOption)
    .option('--plot <file>', 'draw the results to FILE.svg or FILE.png (spec and data in FILE.vl.json)')
    .option('--out <file>', 'also write the JSON lines (with run metadata) to this file');
  if (trace) cmd.option('--all <dir>', 'replay every trace file (trace.*) of DIR with every allocator (or those of --allocator); one summary table');
}

// ----------------------------------------------------------------- micro

/** Flags of the study path of `bench micro`. */
export interface StudyMicroFlags { allocator?: AllocatorName[]; procs: number; epochs: number; blocks: number; churn: number; seed?: number; json: boolean; plot?: string; out?: string }

function microRows(rows: readonly StudyMicroResult[]): string[] {
  return table(
    [{ header: 'allocator', left: true }, { header: 'class' }, { header: 'procs' }, { header: 'allocs/s' }, { header: 'lat mean' }, { header: 'p99' },
      { header: 'retries mean' }, { header: 'max' }, { header: 'ops/alloc' }, { header: 'ops/free' }],
    rows.map((r) => [r.allocator, String(r.cls), String(r.procs), formatCount(r.allocsPerSec), formatNs(r.latency.meanNs), formatNs(r.latency.p99Ns),
      fixed(r.retriesMean, 3), String(r.retriesMax), fixed(r.opsPerAlloc, 1), fixed(r.opsPerFree, 1)]),
  );
}

function microPanels(rows: readonly StudyMicroResult[]): Panel[] {
  const byClass = rows.map((r) => ({ allocator: r.allocator, cls: r.cls, procs: r.procs, meanNs: r.latency.meanNs, p99Ns: r.latency.p99Ns, allocsPerSec: r.allocsPerSec, retries: r.retriesMean }));
  const classes = new Set(rows.map((r) => r.cls)).size;
  const procs = new Set(rows.map((r) => r.procs)).size;
  const panels: Panel[] = [];
  if (classes > 1 || procs === 1) panels.push({ title: 'allocation latency against size class', x: { field: 'cls', title: 'size class (4 KiB * 2^c)', type: 'ordinal' }, y: { field: 'meanNs', title: 'mean latency (ns)', log: true }, rows: byClass });
  if (procs > 1) {
    panels.push({ title: 'throughput against processes', x: { field: 'procs', title: 'processes' }, y: { field: 'allocsPerSec', title: 'allocations/s (all processes)' }, rows: byClass });
    panels.push({ title: 'p99 allocation latency against processes', x: { field: 'procs', title: 'processes' }, y: { field: 'p99Ns', title: 'p99 latency (ns)', log: true }, rows: byClass });
  }
  panels.push({ title: 'CAS retries per allocation', x: procs > 1 ? { field: 'procs', title: 'processes' } : { field: 'cls', title: 'size class', type: 'ordinal' }, y: { field: 'retries', title: 'CAS retries per allocation (mean)' }, rows: byClass });
  return panels;
}

/** `bench micro --allocator ...`: the frag test per allocator and class. */
export async function studyMicroCommand(flags: StudyMicroFlags, classes: number[]): Promise<StudyMicroResult[]> {
  const sink = new Sink(flags.json, flags.out);
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rows: StudyMicroResult[] = [];
  for (const cls of classes) {
    for (const a of flags.allocator ?? ['dmem']) {
      const r = await studyMicro(a, { cls, procs: flags.procs, blocks: flags.blocks, churn: flags.churn, epochs: flags.epochs, seed });
      rows.push(r);
      sink.row(r);
    }
  }
  sink.lines([`micro (frag): ${flags.procs} processes, ${flags.blocks} blocks each, ${flags.churn} freed+allocated per epoch, ${flags.epochs} epochs, seed ${seed}`, ...microRows(rows)]);
  await sink.plot(flags.plot, microPanels(rows));
  checkStudy(rows);
  return rows;
}

// ----------------------------------------------------------------- trace

/** Flags of the study path of `bench trace`. */
export interface StudyTraceFlags { allocator?: AllocatorName[]; all?: string; procs: number; epochs: number; seed?: number; json: boolean; plot?: string; out?: string }

/** The trace files of a folder: every regular file named trace.* (sorted). */
export function traceFiles(dir: string): string[] {
  let names: string[];
  try { names = readdirSync(dir); } catch (e) { throw new InvalidArgumentError(`--all ${dir}: cannot read the folder (${(e as Error).message})`); }
  const files = names.filter((n) => n.startsWith('trace.') && statSync(join(dir, n)).isFile()).sort().map((n) => join(dir, n));
  if (files.length === 0) throw new InvalidArgumentError(`--all ${dir}: no trace files (trace.*) in the folder`);
  return files;
}

/**
 * `bench trace --all DIR` / `--allocator`: every trace, every allocator (one
 * after the other per trace, so load changes hit all alike), one summary table.
 * Exhausted allocations (a pool capped by /dev/shm) are counted in `errors`;
 * the exit status is 1 when any replay had errors.
 */
export async function studyTraceCommand(files: string[], flags: StudyTraceFlags): Promise<StudyTraceResult[]> {
  const sink = new Sink(flags.json, flags.out);
  const all = flags.all ? [...files, ...traceFiles(flags.all)] : files;
  const allocators = flags.allocator ?? (flags.all ? ['dmem', 'onesided-array', 'server'] as AllocatorName[] : ['dmem'] as AllocatorName[]);
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rows: StudyTraceResult[] = [];
  const skipped: string[] = [];
  for (const f of all) {
    const tooLarge = traceTooLarge(f, flags.procs);
    if (tooLarge) {
      skipped.push(`${basename(f)}: ${tooLarge}`);
      sink.row({ test: 'trace', trace: basename(f), skipped: tooLarge });
      process.stderr.write(`trace: skipped ${basename(f)}: ${tooLarge}\n`);
      continue;
    }
    for (const a of allocators) {
      const r = await studyTrace(a, f, { procs: flags.procs, epochs: flags.epochs, seed });
      rows.push(r);
      sink.row(r);
      if (!flags.json) process.stderr.write(`trace: ${r.trace} ${a}: ${formatNs(r.latency.meanNs)} mean, ratio ${r.ratio === null ? '-' : fixed(r.ratio, 2)}, ${r.errors} errors\n`);
    }
  }
  sink.lines([
    `trace (stage): ${flags.procs} processes, ${flags.epochs} epoch(s), ${all.length - skipped.length} traces x ${allocators.length} allocators`,
    ...skipped.map((s) => `skipped ${s}`),
    ...table(
      [{ header: 'trace', left: true }, { header: 'allocator', left: true }, { header: 'requests' }, { header: 'lat mean' }, { header: 'p99' }, { header: 'trace ms' },
        { header: 'replay ms' }, { header: 'ratio' }, { header: 'retries mean' }, { header: 'max' }, { header: 'ops/alloc' }, { header: 'errors' }],
      rows.map((r) => [r.trace, r.allocator, String(r.requests), formatNs(r.latency.meanNs), formatNs(r.latency.p99Ns), fixed(r.traceMs, 0), fixed(r.replayMs, 0),
        r.ratio === null ? '-' : fixed(r.ratio, 2), fixed(r.retriesMean, 3), String(r.retriesMax), fixed(r.opsPerAlloc, 1), String(r.errors)]),
    ),
    '',
    'summary over traces (median of per-trace values):',
    ...table(
      [{ header: 'allocator', left: true }, { header: 'lat mean' }, { header: 'ratio' }, { header: 'retries mean' }, { header: 'max retries' }, { header: 'ops/alloc' }, { header: 'traces with errors' }],
      allocators.map((a) => {
        const rs = rows.filter((r) => r.allocator === a);
        return [a, formatNs(median(rs.map((r) => r.latency.meanNs))), fixed(median(rs.map((r) => r.ratio ?? 0)), 2), fixed(median(rs.map((r) => r.retriesMean)), 3),
          String(Math.max(...rs.map((r) => r.retriesMax))), fixed(median(rs.map((r) => r.opsPerAlloc)), 1), String(rs.filter((r) => r.errors > 0).length)];
      }),
    ),
  ]);
  const pts = rows.map((r) => ({ allocator: r.allocator, trace: r.trace.replace(/^trace\.|\.16$/g, ''), meanNs: r.latency.meanNs, ratio: r.ratio ?? 0, retries: r.retriesMean }));
  await sink.plot(flags.plot, [
    { title: 'mean allocation latency per trace', x: { field: 'trace', title: 'trace', type: 'ordinal' }, y: { field: 'meanNs', title: 'mean latency (ns)', log: true }, rows: pts },
    { title: 'replay time / trace duration (1 = kept up)', x: { field: 'trace', title: 'trace', type: 'ordinal' }, y: { field: 'ratio', title: 'ratio' }, rows: pts },
    { title: 'CAS retries per allocation', x: { field: 'trace', title: 'trace', type: 'ordinal' }, y: { field: 'retries', title: 'retries (mean)' }, rows: pts },
  ]);
  checkStudy(rows);
  return rows;
}

// ----------------------------------------------------------------- commands

interface MemtestFlags { allocator: AllocatorName[]; min: number; max: number; rounds: number; count: number; procs: number[]; seed?: number; json: boolean; plot?: string; out?: string }
interface Table2Flags { allocator: AllocatorName[]; procs: number[]; reps: number; epochs: number; blocks: number; churn: number; seed?: number; json: boolean; plot?: string; out?: string }

/** Adds `bench memtest` and `bench study` to the `bench` command. */
export function addStudyCommands(bench: Command): void {
  bench
    .command('memtest')
    .description('the MIND memtest: rounds of allocations of uniformly random sizes in [min, max] by P processes; time, transport operations per allocation, fragmentation (bytes reserved / bytes requested)')
    .option('--allocator <list>', 'dmem, onesided-array, server, comma-separated, or all', allocatorOption, ['dmem'] as AllocatorName[])
    .option('--min <bytes>', 'smallest size (e.g. 128KiB)', parsePositiveSize, 128 * 1024)
    .option('--max <bytes>', 'largest size (e.g. 32MiB)', parsePositiveSize, 32 * 2 ** 20)
    .option('--rounds <n>', 'rounds (each allocates then frees everything)', intIn(1, 1e6), 5)
    .option('--count <n>', 'allocations per process per round', intIn(1, 1e6), 1024)
    .option('--procs <list>', 'process counts, e.g. 1 or 1,2', parseProcs, [1])
    .option('--seed <s>', 'PRNG seed of the sizes (default random)', parseSeed)
    .option('--out <file>', 'also write the JSON lines (with run metadata) to this file')
    .option('--plot <file>', 'draw the results to FILE.svg or FILE.png (spec and data in FILE.vl.json)')
    .option('--json', 'print one JSON line per round (with run metadata)', false)
    .addHelpText('after', '\nThe pool is a temporary sparse file in /dev/shm sized for the expected demand, capped at 90 % of /dev/shm;\nallocations beyond it fail and are counted as errors (exit 1). Defaults need about 16 GiB of address space per process.')
    .action(async (flags: MemtestFlags, cmd: Command) => {
      if (flags.min > flags.max) cmd.error(`error: --min (${flags.min}) is larger than --max (${flags.max})`, { exitCode: 2 });
      await memtestCommand(flags);
    });

  bench
    .command('study')
    .description("FineMem's Table 2: the frag test on class 0 with 1..P processes for every allocator; mean and p99 allocation latency, CAS retries (mean, max), interleaved repetitions, medians")
    .option('--allocator <list>', 'allocators, comma-separated, or all', allocatorOption, ['dmem', 'onesided-array', 'server'] as AllocatorName[])
    .option('--procs <list>', 'process counts, e.g. 1-4', parseProcs, [1, 2, 3, 4])
    .option('--reps <n>', 'repetitions (medians reported)', intIn(1, 100), 3)
    .option('--epochs <e>', 'epochs', intIn(1, 1e9), 200)
    .option('--blocks <n>', 'blocks each process holds', intIn(1, 1e8), 1000)
    .option('--churn <m>', 'blocks freed and allocated per epoch', intIn(1, 1e8), 250)
    .option('--seed <s>', 'PRNG seed (default random)', parseSeed)
    .option('--out <file>', 'also write the JSON lines (with run metadata) to this file')
    .option('--plot <file>', 'draw throughput, p99 latency and CAS retries against processes (FILE.svg or FILE.png)')
    .option('--json', 'print one JSON line per measurement and per median', false)
    .action(async (flags: Table2Flags) => {
      await table2Command(flags);
    });
}

async function memtestCommand(flags: MemtestFlags): Promise<MemtestRound[]> {
  const sink = new Sink(flags.json, flags.out);
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const rows: MemtestRound[] = [];
  for (const procs of flags.procs) {
    for (const a of flags.allocator) {
      rows.push(...await memtest(a, { rounds: flags.rounds, count: flags.count, min: flags.min, max: flags.max, procs, seed, onRound: (r) => sink.row(r) }));
    }
  }
  sink.lines([
    `memtest (MIND): ${flags.count} allocations per process per round, sizes ${formatBytes(flags.min)}..${formatBytes(flags.max)}, seed ${seed}`,
    ...table(
      [{ header: 'allocator', left: true }, { header: 'procs' }, { header: 'round' }, { header: 'round ms' }, { header: 'lat mean' }, { header: 'p99' }, { header: 'ops/alloc' },
        { header: 'requested' }, { header: 'reserved' }, { header: 'frag' }, { header: 'errors' }],
      rows.map((r) => [r.allocator, String(r.procs), String(r.round), fixed(r.roundMs, 1), formatNs(r.latency.meanNs), formatNs(r.latency.p99Ns), fixed(r.opsPerAlloc, 1),
        formatBytes(r.requestedBytes), formatBytes(r.reservedBytes), fixed(r.fragmentation, 3), String(r.errors)]),
    ),
  ]);
  const pts = rows.map((r) => ({ allocator: r.allocator, round: r.round, procs: r.procs, roundMs: r.roundMs, ops: r.opsPerAlloc, frag: r.fragmentation }));
  await sink.plot(flags.plot, [
    { title: 'fragmentation (bytes reserved / bytes requested) per round', x: { field: 'round', title: 'round', type: 'ordinal' }, y: { field: 'frag', title: 'reserved / requested' }, rows: pts, dash: 'procs' },
    { title: 'transport operations per allocation', x: { field: 'round', title: 'round', type: 'ordinal' }, y: { field: 'ops', title: 'operations per allocation', log: true }, rows: pts, dash: 'procs' },
    { title: 'round time', x: { field: 'round', title: 'round', type: 'ordinal' }, y: { field: 'roundMs', title: 'ms (slowest process)', log: true }, rows: pts, dash: 'procs' },
  ]);
  checkStudy(rows);
  return rows;
}

/** One row of Table 2: medians over repetitions. */
export interface Table2Row { test: 'table2'; allocator: AllocatorName; procs: number; reps: number; meanNs: number; p50Ns: number; p99Ns: number; maxNs: number; retriesMean: number; retriesMax: number; allocsPerSec: number; opsPerAlloc: number }

async function table2Command(flags: Table2Flags): Promise<Table2Row[]> {
  const sink = new Sink(flags.json, flags.out);
  const seed = flags.seed ?? Math.floor(Math.random() * 2 ** 32);
  const runs: StudyMicroResult[] = [];
  for (let rep = 0; rep < flags.reps; rep++) {
    for (const procs of flags.procs) {
      for (const a of flags.allocator) {
        const r = await studyMicro(a, { cls: 0, procs, blocks: flags.blocks, churn: flags.churn, epochs: flags.epochs, seed: seed + rep });
        runs.push(r);
        sink.row({ ...r, rep });
        if (!flags.json) process.stderr.write(`study: rep ${rep} procs ${procs} ${a}: ${formatNs(r.latency.meanNs)} mean, ${formatNs(r.latency.p99Ns)} p99, retries ${fixed(r.retriesMean, 3)}\n`);
      }
    }
  }
  checkStudy(runs);
  const rows: Table2Row[] = [];
  for (const procs of flags.procs) {
    for (const a of flags.allocator) {
      const rs = runs.filter((r) => r.procs === procs && r.allocator === a);
      const row: Table2Row = {
        test: 'table2', allocator: a, procs, reps: rs.length, meanNs: median(rs.map((r) => r.latency.meanNs)), p50Ns: median(rs.map((r) => r.latency.p50Ns)), p99Ns: median(rs.map((r) => r.latency.p99Ns)), maxNs: median(rs.map((r) => r.latency.maxNs)),
        retriesMean: median(rs.map((r) => r.retriesMean)), retriesMax: median(rs.map((r) => r.retriesMax)), allocsPerSec: median(rs.map((r) => r.allocsPerSec)), opsPerAlloc: median(rs.map((r) => r.opsPerAlloc)),
      };
      rows.push(row);
      sink.row(row);
    }
  }
  sink.lines([
    `Table 2 (FineMem): class 0 (4 KiB), frag test ${flags.blocks} blocks, churn ${flags.churn}, ${flags.epochs} epochs; median of ${flags.reps} interleaved repetitions; seed ${seed}`,
    ...table(
      [{ header: 'procs' }, { header: 'allocator', left: true }, { header: 'lat mean' }, { header: 'p50' }, { header: 'p99' }, { header: 'max' }, { header: 'retries mean' }, { header: 'retries max' }, { header: 'allocs/s' }, { header: 'ops/alloc' }],
      rows.map((r) => [String(r.procs), r.allocator, formatNs(r.meanNs), formatNs(r.p50Ns), formatNs(r.p99Ns), formatNs(r.maxNs), fixed(r.retriesMean, 3), fixed(r.retriesMax, 0), formatCount(r.allocsPerSec), fixed(r.opsPerAlloc, 1)]),
    ),
  ]);
  await sink.plot(flags.plot, [
    { title: 'throughput against processes (class 0)', x: { field: 'procs', title: 'processes' }, y: { field: 'allocsPerSec', title: 'allocations/s (all processes)', log: true }, rows },
    { title: 'mean allocation latency against processes', x: { field: 'procs', title: 'processes' }, y: { field: 'meanNs', title: 'mean latency (ns)', log: true }, rows },
    { title: 'p99 allocation latency against processes', x: { field: 'procs', title: 'processes' }, y: { field: 'p99Ns', title: 'p99 latency (ns)', log: true }, rows },
    { title: 'CAS retries per allocation', x: { field: 'procs', title: 'processes' }, y: { field: 'retriesMean', title: 'retries (mean)' }, rows },
  ]);
  return rows;
}
