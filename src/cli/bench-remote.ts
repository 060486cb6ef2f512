/**
 * `dmem bench remote`: one measurement (--op) or the whole table against
 * redis (src/bench/remote.ts). Without --url it starts `dmem server
 * --listen` on a temporary shm pool in a child process and stops it at the end.
 */
import { Option, type Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import {
  runRemoteBench, runRemoteTable, runScaleBench, startServerProcess, type RemoteBenchResult, type RemoteOp, type RemoteTableRow,
} from '../bench/remote.js';
import { fixed, formatCount, pairs, table } from './format.js';
import { formatBytes } from '../units.js';
import { intIn, parsePositiveSize } from './options.js';
import { Output } from './output.js';
import { readTokenFile } from './serve-tcp.js';
import { ofiRemoteBench } from './bench-ofi.js';

interface RemoteFlags {
  url?: string;
  tokenFile?: string;
  op?: RemoteOp;
  bytes: number;
  inflight: number[];
  conns: number;
  durationMs: number;
  reps: number;
  redis: boolean;
  scale?: number;
  json: boolean;
}

function parseInflights(value: string): number[] {
  const out = value.split(',').map((v) => intIn(1, 4096)(v.trim()));
  if (out.length === 0) throw new InvalidArgumentError('give at least one in-flight depth');
  return out;
}

/** Adds `bench remote` to the `bench` command. */
export function addRemoteBenchCommand(bench: Command): void {
  bench
    .command('remote')
    .description('ops/s and p50/p99 latency of a pool served over TCP (dmem server --listen), and redis-benchmark of the same shape')
    .option('--url <url>', 'tcp://HOST:PORT of a running server (default: start one on a temporary 1 GiB shm pool in a child process)')
    .option('--token-file <file>', 'with --url: the server\'s token file')
    .addOption(new Option('--op <op>', 'one measurement of this op (default: the whole table: read 64, write 64, cas 8, write 4096, alloc 4096 + free, heap 64 + free)').choices(['read', 'write', 'cas', 'alloc', 'heap']))
    .option('--bytes <n>', 'with --op: bytes per read / write / alloc / heap object (cas: always 8)', parsePositiveSize, 64)
    .option('--inflight <list>', 'requests in flight per connection; with --op the first value, for the table each (comma-separated)', parseInflights, [1, 16])
    .option('--conns <n>', 'connections (each its own client slot on the server)', intIn(1, 4093), 16)
    .option('--duration-ms <ms>', 'measured time per run (after a 300 ms warm-up)', intIn(100, 600_000), 2000)
    .option('--reps <n>', 'table: repetitions, interleaved with redis; medians are reported', intIn(1, 100), 3)
    .option('--no-redis', 'table: do not run redis-benchmark')
    .option('--scale <n>', 'instead: open N connections to a new server process (each its own client slot), alloc+free on each, and report the server\'s memory per connection', intIn(1, 4000))
    .option('--json', 'print one JSON object per result on stdout', false)
    .addHelpText('after', [
      '',
      'An op is one request (read, write, cas) or one alloc+free pair (alloc, heap). Latency per op in us.',
      'Redis (redis-server on a free loopback port, redis-benchmark -t get,set -d 64 -c CONNS -P K) runs',
      'in the same script when installed (apt-get install redis-server redis-tools); "vs redis" is',
      'dmem read / redis GET and dmem write / redis SET ops/s at the same connections and depth.',
      'CPU us/op: user + system time of the server process (when this command started it) and of the',
      'client process (this one; redis-benchmark for redis) over the run, per op: less disturbed by',
      'other load on the machine than ops/s.',
      '',
      'Examples:',
      '  dmem bench remote --op read --bytes 64 --inflight 16 --conns 16',
      '  dmem bench remote --reps 3 --json',
      '  dmem bench remote --url ofi+tcp://127.0.0.1:0 --op read --inflight 1,16 --json   (one-sided over libfabric vs tcp vs C; port 0 starts a node; docs/rdma.md)',
    ].join('\n'))
    .action(async (flags: RemoteFlags) => remote(flags));
}

async function remote(flags: RemoteFlags): Promise<void> {
  if (flags.url?.startsWith('ofi+')) return ofiRemoteBench(flags);
  const out = new Output(flags.json);
  if (flags.scale !== undefined) {
    const r = await runScaleBench(flags.scale);
    out.result({ scale: r }, () => pairs([
      ['connections', `${r.connections} (${r.distinctClients} distinct client slots)`],
      ['open all', `${fixed(r.openMs, 0)} ms (50 at a time)`],
      ['alloc+free on each', `${fixed(r.allocFreeMs, 0)} ms (all at once)`],
      ['server RSS', `${formatBytes(r.serverRssBefore)} -> ${formatBytes(r.serverRssAfter)}`],
      ['per connection', `${formatBytes(r.rssPerConnection)} resident, ${formatBytes(r.vmPerConnection)} virtual`],
    ]));
    return;
  }
  const server = flags.url === undefined ? await startServerProcess() : null;
  const url = flags.url ?? server!.url;
  const token = server?.token ?? (flags.tokenFile ? readTokenFile(flags.tokenFile).toString() : undefined);
  try {
    if (flags.op !== undefined) {
      const r = await runRemoteBench({ url, token, serverPid: server?.pid, op: flags.op, bytes: flags.bytes, inflight: flags.inflight[0], conns: flags.conns, durationMs: flags.durationMs });
      out.result({ url, ...r }, () => lines([{ ...r, vsRedis: null }]));
      return;
    }
    out.lines([`dmem bench remote: ${url}, ${flags.conns} connections, in flight ${flags.inflight.join(' and ')}, ${flags.reps} repetitions of ${flags.durationMs} ms`]);
    const { rows, redisSkipped } = await runRemoteTable({
      url, token, serverPid: server?.pid, conns: flags.conns, inflights: flags.inflight, reps: flags.reps, durationMs: flags.durationMs, redis: flags.redis,
      onRow: (r: RemoteBenchResult) => { if (!flags.json) process.stderr.write(`  ${r.system} ${r.op} ${r.bytes} B x${r.inflight}: ${formatCount(r.opsPerSec)} ops/s\n`); },
    });
    if (redisSkipped !== null) out.lines([`redis: skipped, ${redisSkipped}`]);
    if (flags.json) for (const r of rows) out.result({ url, ...r, redisSkipped }, () => []);
    else out.lines(['', ...lines(rows)]);
  } finally {
    await server?.stop();
  }
}

function lines(rows: RemoteTableRow[]): string[] {
  return table(
    [{ header: 'system', left: true }, { header: 'op', left: true }, { header: 'bytes' }, { header: 'conns' }, { header: 'in flight' },
      { header: 'ops/s' }, { header: 'p50 us' }, { header: 'p99 us' }, { header: 'vs redis' }, { header: 'server cpu us/op' }, { header: 'client cpu us/op' }],
    rows.map((r) => [r.system, r.op === 'alloc' || r.op === 'heap' ? `${r.op}+free` : r.op, String(r.bytes), String(r.conns), String(r.inflight),
      formatCount(r.opsPerSec), fixed(r.p50Us, 1), fixed(r.p99Us, 1), r.vsRedis === null ? '' : `${fixed(r.vsRedis, 2)}x`,
      r.serverCpuUsPerOp === null ? '' : fixed(r.serverCpuUsPerOp, 2), r.clientCpuUsPerOp === null ? '' : fixed(r.clientCpuUsPerOp, 2)]),
  );
}
