/**
 * `dmem bench paging`: far-memory spaces under each eviction policy, with
 * Belady's MIN and plain local memory beside them (src/bench/paging.ts).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { openBenchPool, TEMP_POOL_SLACK_BYTES } from '../bench/bench-pool.js';
import { PATTERNS, runPagingBench, type PagingResult, type Pattern } from '../bench/paging.js';
import { runPagingRemoteBench } from '../bench/paging-remote.js';
import { KRON_DEGREE } from '../bench/kronecker.js';
import { POLICIES, PREFETCHES, type PagingPolicy, type Prefetch } from '../space.js';
import { formatBytes } from '../units.js';
import { fixed, formatCount, table } from './format.js';
import { intIn, parsePositiveSize, parseSeed } from './options.js';
import { Output } from './output.js';

/** Flags of `dmem bench paging`. */
export interface PagingFlags {
  space: number;
  cache?: number;
  accesses: number;
  patterns: Pattern[];
  policies: PagingPolicy[];
  prefetch: Prefetch[];
  scale: number;
  prCache?: number;
  iterations: number;
  reps: number;
  seed: number;
  json: boolean;
  /** The tcp run (an AsyncSpace over a loopback tcp pool, and tiered near shm / far tcp); default true. */
  tcp?: boolean;
  /** Its space (default 16 MiB), cache (default a sixteenth), near tier (default an eighth), accesses per pattern (default 50,000) and policies (default linux). */
  tcpSpace?: number;
  tcpCache?: number;
  tcpNear?: number;
  tcpAccesses?: number;
  tcpPolicies?: PagingPolicy[];
}

/** Defaults of the tcp run (a miss costs a loopback round trip, not a memcpy: a smaller run than shm's). */
const TCP_SPACE = 16 * 2 ** 20;
const TCP_ACCESSES = 50_000;

function listOf<T extends string>(all: readonly T[], what: string): (text: string) => T[] {
  return (text) => {
    const items = text.split(',').map((s) => s.trim());
    for (const i of items) if (!all.includes(i as T)) throw new InvalidArgumentError(`unknown ${what} "${i}": use ${all.join(', ')}`);
    return items as T[];
  };
}

/** Adds `paging` to the `bench` command. */
export function addPagingBench(bench: Command): void {
  bench
    .command('paging')
    .description("far-memory spaces: mmapbench's patterns and GAP PageRank per eviction policy, with Belady's MIN (ceiling) and local memory (floor)")
    .option('--space <bytes>', 'space size for the patterns (e.g. 64MiB)', parsePositiveSize, 64 * 2 ** 20)
    .option('--cache <bytes>', 'cache size for the patterns (default: a quarter of --space)', parsePositiveSize)
    .option('--accesses <n>', 'accesses per pattern run (one f64 read each)', intIn(1, 1e9), 1_000_000)
    .option('--patterns <list>', `patterns, comma-separated (${PATTERNS.join(', ')})`, listOf(PATTERNS, 'pattern'), [...PATTERNS])
    .option('--policies <list>', `eviction policies, comma-separated (${POLICIES.join(', ')})`, listOf(POLICIES, 'policy'), [...POLICIES])
    .option('--prefetch <list>', `prefetch policies, comma-separated (${PREFETCHES.join(', ')})`, listOf(PREFETCHES, 'prefetch'), [...PREFETCHES])
    .option('--scale <s>', 'PageRank on a Kronecker graph of 2^s vertices (GAP; 0 skips it)', intIn(0, 22), 18)
    .option('--pr-cache <bytes>', 'PageRank cache size (default: a quarter of its per-vertex arrays, 5 B * 2^s)', parsePositiveSize)
    .option('--iterations <n>', 'PageRank iterations (fixed count, to bound the trace)', intIn(1, 100), 3)
    .option('--reps <n>', 'repetitions; throughput is the median', intIn(1, 100), 3)
    .option('--seed <n>', 'PRNG seed of patterns and graph', parseSeed, 1)
    .option('--no-tcp', 'skip the tcp run (the patterns on a loopback tcp pool, and tiered near shm / far tcp)')
    .option('--tcp-space <bytes>', 'space size of the tcp run (its cache: a quarter)', parsePositiveSize, TCP_SPACE)
    .option('--tcp-cache <bytes>', 'cache of the tcp run (default a sixteenth of --tcp-space: the hot set does not fit)', parsePositiveSize)
    .option('--tcp-near <bytes>', 'near tier of the tiered cells (default an eighth of --tcp-space: the hot set fits)', parsePositiveSize)
    .option('--tcp-accesses <n>', 'accesses per pattern in the tcp run', intIn(1, 1e9), TCP_ACCESSES)
    .option('--tcp-policies <list>', 'eviction policies of the tcp run (hit ratios equal the shm run\'s)', listOf(POLICIES, 'policy'), ['linux'])
    .option('--json', 'print one JSON object per result on stdout', false)
    .addHelpText('after', [
      '',
      'Per (workload, policy, prefetch): hit ratio over every page access of the run (populating the space',
      'included), the hit ratio of Belady\'s MIN replayed offline on the same trace with the same cache',
      '(demand paging: prefetch may beat it), pages fetched, written back and evicted, and throughput',
      '(accesses/s; PageRank: edges traversed/s), median of --reps. Policy "local" is the same workload on',
      'plain local memory. PageRank\'s space holds its CSR and score arrays (about 150 B * 2^s); its cache',
      'is a quarter of the per-vertex arrays (5 B * 2^s) unless --pr-cache. Runs on a temporary shm pool,',
      'removed at the end.',
      '',
      'Then the tcp run (--no-tcp skips it): the same patterns on an AsyncSpace over a tcp pool that the',
      'bench serves itself on 127.0.0.1 (port 0), and tiered with the near tier in the shm pool and the far',
      'tier over tcp (moved: pages promoted/demoted); prefetch none, and sequential with a miss\'s page I/O',
      'overlapped ("overlap": its 32 fetches in flight together) or one after another ("serial"). Its cache is',
      'a sixteenth of its space, so the hot set (a tenth) misses, and its near tier an eighth, so it can hold it.',
      '',
      'Example:',
      '  dmem bench paging --scale 16 --accesses 200000 --reps 1',
    ].join('\n'))
    .action(async (flags: PagingFlags, cmd: Command) => {
      const cache = flags.cache ?? Math.floor(flags.space / 4);
      if (cache < 8 * 4096 || cache > flags.space) cmd.error('error: --cache must be 32 KiB .. --space', { exitCode: 2 });
      await pagingBench(flags);
    });
}

/** Runs the paging bench on a temporary shm pool and prints the results; returns them. */
export async function pagingBench(flags: PagingFlags, print = true): Promise<PagingResult[]> {
  const out = new Output(flags.json);
  const cacheBytes = flags.cache ?? Math.floor(flags.space / 4);
  const graphBytes = flags.scale > 0 ? 2 ** flags.scale * (KRON_DEGREE * 2 * 4 + 24) : 0;
  const nearBytes = flags.tcp === false ? 0 : flags.tcpNear ?? Math.floor((flags.tcpSpace ?? TCP_SPACE) / 8);
  const bench = await openBenchPool(undefined, undefined, Math.max(flags.space, graphBytes, nearBytes) * 1.1 + TEMP_POOL_SLACK_BYTES, 1);
  let results: PagingResult[];
  const onRun = flags.json || !process.stderr.isTTY ? undefined : (what: string): void => { process.stderr.write(`\r\x1b[K${what}`); };
  try {
    results = await runPagingBench({
      pool: bench.pool, spaceBytes: flags.space, cacheBytes, accesses: flags.accesses, patterns: flags.patterns,
      policies: flags.policies, prefetches: flags.prefetch, scale: flags.scale, prCacheBytes: flags.prCache, iterations: flags.iterations,
      reps: flags.reps, seed: flags.seed, onRun,
    });
    if (flags.tcp !== false) {
      const tcpSpace = flags.tcpSpace ?? TCP_SPACE;
      results.push(...await runPagingRemoteBench({
        pool: bench.pool, spaceBytes: tcpSpace, cacheBytes: flags.tcpCache ?? Math.max(8 * 4096, Math.floor(tcpSpace / 16)),
        nearBytes: flags.tcpNear ?? Math.max(4096, Math.floor(tcpSpace / 8)), accesses: flags.tcpAccesses ?? TCP_ACCESSES,
        patterns: flags.patterns, policies: flags.tcpPolicies ?? ['linux'], reps: flags.reps, seed: flags.seed, onRun,
      }));
    }
  } finally {
    if (!flags.json && process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    bench.release();
  }
  if (!print) return results;
  if (out.json) {
    for (const r of results) out.result(r, () => []);
    return results;
  }
  out.lines(pagingTable(results, flags));
  return results;
}

/** The human table of paging results: the shm run, then the tcp run (when there is one). */
export function pagingTable(results: readonly PagingResult[], flags: Pick<PagingFlags, 'reps' | 'accesses' | 'iterations' | 'tcpAccesses'>): string[] {
  const ratio = (v: number | null): string => (v === null ? '-' : fixed(v, 3));
  const count = (v: number | null): string => (v === null ? '-' : formatCount(v));
  const sizes = (r: PagingResult | undefined): string => (r ? `, space ${formatBytes(r.spaceBytes)}, cache ${formatBytes(r.cacheBytes)}` : '');
  const shm = results.filter((r) => r.backing === 'shm');
  const tcp = results.filter((r) => r.backing !== 'shm');
  const columns = [{ header: 'workload', left: true }, { header: 'policy', left: true }, { header: 'prefetch', left: true }, { header: 'hit ratio' },
    { header: 'MIN (demand)' }, { header: 'fetched' }, { header: 'written back' }, { header: 'evictions' }, { header: 'prefetched' }, { header: 'throughput' }, { header: 'unit', left: true }];
  const cells = (r: PagingResult): string[] => [r.workload, r.policy, r.prefetch ?? '-', ratio(r.hitRatio), ratio(r.minHitRatio), count(r.fetched), count(r.writtenBack),
    count(r.evictions), count(r.prefetched), formatCount(r.opsPerSec), r.unit];
  const lines = [
    `paging on shm: patterns ${flags.accesses} accesses each${sizes(shm[0])}; pagerank ${flags.iterations} iterations; throughput median of ${flags.reps}`,
    ...table(columns, shm.map(cells)),
    "MIN (demand): Belady's optimal replacement on the same trace and cache, fetching only on a miss: the ceiling of every row without prefetch (a prefetching row may pass it)",
  ];
  if (tcp.length === 0) return lines;
  return [
    ...lines,
    '',
    `paging over loopback tcp (AsyncSpace): patterns ${flags.tcpAccesses ?? TCP_ACCESSES} accesses each${sizes(tcp[0])}; tiered: near shm, far tcp; throughput median of ${flags.reps}`,
    ...table(
      [{ header: 'backing', left: true }, { header: 'I/O', left: true }, ...columns, { header: 'moved', left: true }],
      tcp.map((r) => [r.backing, r.prefetch === 'none' ? '-' : r.overlap ? 'overlap' : 'serial', ...cells(r),
        r.promoted === null ? '-' : `${formatCount(r.promoted)}/${formatCount(r.demoted ?? 0)}`]),
    ),
  ];
}
