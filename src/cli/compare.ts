/**
 * `dmem bench compare`: dmem against Boost.Interprocess and glibc malloc on
 * FineMem's frag pattern and the heap pattern (src/bench/compare.ts), one
 * table of medians and speed ratios, or JSON lines.
 */
import type { Command } from 'commander';
import { COMPARE_FRAG_EPOCHS, COMPARE_WARMUP_EPOCHS, runCompare, workloadLabel, type CompareCell, type CompareOptions, type CompareResult, type Peer, type PeerSkip } from '../bench/compare.js';
import { fixed, formatCount, table } from './format.js';
import { intIn, parseClassList, parseSeed } from './options.js';
import { Output } from './output.js';
import { progress } from './progress.js';
import { withInterrupt } from './interrupt.js';
import { parseProcList, parseSizeList } from './bench.js';

/** Flags of `dmem bench compare`: runCompare's options (one --churn serves both patterns) and --json. */
export type CompareFlags = Omit<CompareOptions, 'heapChurn' | 'heapWarmupRounds' | 'peer' | 'signal' | 'onRun'> & { json: boolean; warmupRounds: number };

/** Adds `compare` to the `bench` command. */
export function addCompareCommand(bench: Command): void {
  bench
    .command('compare')
    .description('dmem against Boost.Interprocess managed_shared_memory and glibc malloc on the frag and heap patterns, interleaved, medians and ratios')
    .option('--classes <list>', 'size classes of the frag pattern, e.g. 0,4,9 or 0-3', parseClassList, [0, 4, 9])
    .option('--objects <bytes>', 'object sizes of the heap pattern, comma-separated (bytes)', parseSizeList, [64, 256, 1024])
    .option('--procs <list>', 'process counts, comma-separated', parseProcList, [1, 2])
    .option('--reps <n>', 'interleaved repetitions; medians are reported', intIn(1, 100), 5)
    .option('--epochs <e>', 'frag: timed epochs per run', intIn(1, 1e9), COMPARE_FRAG_EPOCHS)
    .option('--warmup-epochs <e>', 'frag: untimed epochs of the same loop each process of every side runs first', intIn(0, 1e9), COMPARE_WARMUP_EPOCHS)
    .option('--blocks <n>', 'frag: blocks each process holds', intIn(1, 1e8), 1000)
    .option('--churn <m>', 'frag: blocks freed and allocated per epoch; heap: objects per round', intIn(1, 1e8), 250)
    .option('--live <n>', 'heap: objects each process holds', intIn(1, 1_000_000), 1000)
    .option('--rounds <n>', 'heap: rounds', intIn(1, 1_000_000), 1000)
    .option('--warmup-rounds <n>', 'heap: untimed rounds of the same pattern before the timed ones, on every side', intIn(0, 1_000_000), 1000)
    .option('--seed <s>', 'PRNG seed of the patterns (repetition r uses seed + r)', parseSeed, 1)
    .option('--block-cache <n>', 'blocks per class (classes 0..4) of dmem\'s per-client block cache (0: none, and no "no cache" column)', intIn(0, 256), 256)
    .option('--json', 'print one JSON object per run and per cell on stdout', false)
    .addHelpText('after', [
      '',
      'The peers are bench/peers/alloc_peer.cpp, built with g++ into build/peers/ (rebuilt when the source',
      'changes); without g++ they are skipped with the reason, without the Boost headers (libboost-dev) Boost is.',
      'frag: ops/s = (allocs + frees) / the slowest process\'s loop, every 8th allocation timed (as bench micro);',
      'heap: ns per alloc+free pair, mean over the processes (as bench heap). Ratios are speed ratios dmem / peer',
      '(above 1: dmem is faster), the median of the per-repetition ratios.',
      'dmem runs as configured by default, with the per-client block cache of --block-cache blocks a class (default 256);',
      'on the frag cells of classes 0..4, where the cache changes anything, it also runs with none (column "no cache").',
      `frag warm-up: every process of every side (dmem's workers and the peer alike) first runs --warmup-epochs untimed`,
      `epochs of the same loop, after its setup and before the timed epochs start (default ${COMPARE_WARMUP_EPOCHS}, so the timed`,
      'epochs measure compiled code, not V8 compiling it); --warmup-epochs 0 measures from a cold start on every side.',
      '',
      'Example:',
      '  dmem bench compare --classes 0 --objects 64 --procs 1,2 --reps 3',
    ].join('\n'))
    .action(async (flags: CompareFlags, cmd: Command) => {
      if (flags.churn > flags.blocks) cmd.error(`error: --churn (${flags.churn}) must not exceed --blocks (${flags.blocks})`, { exitCode: 2 });
      await compare(flags);
    });
}

/**
 * Human table of compare cells: `dmem` is dmem as configured (the block
 * cache side where it ran, else the side without it); `no cache` is dmem
 * with blockCache 0 where that is a different run (frag classes 0..4).
 */
export function compareTable(cells: readonly CompareCell[]): string[] {
  const value = (c: CompareCell, v: number | null): string => (v === null ? '-' : c.unit === 'ops/s' ? formatCount(v) : fixed(v, 0));
  const ratio = (v: number | null): string => (v === null ? '-' : `${fixed(v, 2)}x`);
  const cached = (c: CompareCell): boolean => c.dmemCache !== null;
  return table(
    [{ header: 'workload', left: true }, { header: 'procs' }, { header: 'unit', left: true }, { header: 'dmem' }, { header: 'no cache' }, { header: 'Boost' }, { header: 'malloc' },
      { header: 'dmem/Boost' }, { header: 'no cache/Boost' }, { header: 'dmem/malloc' }],
    cells.map((c) => [workloadLabel(c), String(c.procs), c.unit,
      value(c, cached(c) ? c.dmemCache : c.dmem), value(c, cached(c) ? c.dmem : null), value(c, c.boost), value(c, c.malloc),
      ratio(cached(c) ? c.cacheVsBoost : c.dmemVsBoost), ratio(cached(c) ? c.dmemVsBoost : null), ratio(cached(c) ? c.cacheVsMalloc : c.dmemVsMalloc)]),
  );
}

/**
 * Runs the comparison and prints it: skip lines for peers that cannot run,
 * then (human) one header and table, or (--json) one line per run and per cell.
 * @throws every error of runCompare
 */
export async function compare(flags: CompareFlags, peer?: Peer | PeerSkip): Promise<CompareResult> {
  const out = new Output(flags.json);
  const bar = progress('compare runs');
  let result: CompareResult;
  try {
    result = await withInterrupt((signal) => runCompare({
      classes: flags.classes, objects: flags.objects, procs: flags.procs, reps: flags.reps,
      epochs: flags.epochs, warmupEpochs: flags.warmupEpochs, blocks: flags.blocks, churn: flags.churn, live: flags.live, rounds: flags.rounds, heapChurn: flags.churn,
      heapWarmupRounds: flags.warmupRounds,
      seed: flags.seed, blockCache: flags.blockCache, peer, signal,
      onRun: (run, done, total) => {
        bar.update(done, total);
        out.result({ test: 'compare', ...run }, () => []);
      },
    }));
  } finally {
    bar.stop();
  }
  for (const [side, reason] of Object.entries(result.skipped)) {
    out.result({ test: 'compare', skipped: side, reason }, () => [`skip: ${side === 'boost' ? 'Boost.Interprocess' : 'glibc malloc'}: ${reason}`]);
  }
  if (out.json) for (const c of result.cells) out.result({ test: 'compare-cell', ...c }, () => []);
  out.lines([
    `compare: frag ${flags.blocks} blocks, ${flags.churn} churn, ${flags.epochs} epochs after ${flags.warmupEpochs ?? COMPARE_WARMUP_EPOCHS} untimed;`
      + ` heap ${flags.live} live, ${flags.churn} churn, ${flags.rounds} rounds after ${flags.warmupRounds} untimed;`
      + ` median of ${flags.reps} interleaved repetitions${result.boostVersion ? `; Boost ${result.boostVersion}` : ''}; ratios: speed dmem / peer (>1: dmem faster)`,
    ...compareTable(result.cells),
  ]);
  return result;
}
