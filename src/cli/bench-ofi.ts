/**
 * `dmem bench ofi`: one-sided operations over libfabric from JS and from a
 * C client on the same memory node (src/bench/ofi-bench.ts).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError } from '../errors.js';
import { runOfiBench, runOfiFrag } from '../bench/ofi-bench.js';
import { checkOfiRemote, runOfiRemote, type OfiRemoteOp } from '../bench/ofi-remote.js';
import { readTokenFile } from './serve-tcp.js';
import { fixed, formatCount, table } from './format.js';
import { intIn } from './options.js';
import { Output } from './output.js';

interface OfiBenchFlags {
  url?: string;
  tokenFile?: string;
  provider: string;
  ops: number;
  reps: number;
  inflight: number;
  json: boolean;
  frag: boolean;
}

/** Adds `ofi` under `dmem bench`. */
export function addOfiBenchCommand(bench: Command): void {
  bench
    .command('ofi')
    .description('one-sided 8 B read, 8 B CAS, 4 KiB write and alloc+free over libfabric, from JS (koffi + Wasm core) and from a C client (bench/peers/ofi_client.c) on the same memory node, interleaved')
    .option('--url <url>', 'an existing memory node, ofi+tcp://HOST:PORT (with --token-file); default: start one on 127.0.0.1')
    .option('--token-file <file>', "with --url: the memory node's token file")
    .option('--provider <name>', 'provider of the memory node started here: tcp or sockets', 'tcp')
    .option('--ops <n>', 'operations per measurement', intIn(10, 1e8), 5000)
    .option('--reps <n>', 'repetitions; figures are medians over them', intIn(1, 1000), 3)
    .option('--inflight <n>', "the C client's second in-flight depth (JS runs the synchronous path here: 1; for JS with K in flight see dmem bench remote --url ofi+tcp://127.0.0.1:0)", intIn(1, 64), 16)
    .option('--frag', "instead: FineMem's frag pattern on class 0 (1000 blocks, 250 freed and allocated per epoch, 8 epochs) with 1 and 2 client processes", false)
    .option('--json', 'one JSON object per result row', false)
    .action(async (flags: OfiBenchFlags) => {
      const out = new Output(flags.json);
      if (flags.frag) {
        const rows = await runOfiFrag({ provider: flags.provider, reps: flags.reps });
        for (const row of rows) out.result({ bench: 'ofi-frag', provider: flags.provider, ...row }, () => []);
        if (!flags.json) {
          const cells = rows.map((x) => [String(x.procs), formatCount(x.fillAllocsPerSec), formatCount(x.churnOpsPerSec), String(x.casRetries), fixed(x.opsPerAlloc), fixed(x.opsPerFree)]);
          const cols = ['procs', 'fill allocs/s/proc', 'churn ops/s (all)', 'CAS retries', 'ops/alloc', 'ops/free'].map((header) => ({ header }));
          for (const line of table(cols, cells)) console.log(line);
        }
        return;
      }
      const token = flags.tokenFile ? readFileSync(flags.tokenFile, 'utf8').replace(/\r?\n$/, '') : undefined;
      const r = await runOfiBench({ url: flags.url, token, provider: flags.provider, ops: flags.ops, reps: flags.reps, inflight: flags.inflight });
      for (const row of r.rows) out.result({ bench: 'ofi', url: r.url, provider: r.provider, ...row }, () => []);
      if (!flags.json) {
        const rows = r.rows.map((x) => [x.side, x.op, String(x.inflight), formatCount(x.opsPerSec), fixed(x.p50Us, 1), fixed(x.p99Us, 1)]);
        for (const line of table([{ header: 'side', left: true }, { header: 'op', left: true }, { header: 'inflight' }, { header: 'ops/s' }, { header: 'p50 us' }, { header: 'p99 us' }], rows)) console.log(line);
        if (r.cSkipped) console.log(`C client skipped: ${r.cSkipped}`);
      } else if (r.cSkipped) {
        out.result({ bench: 'ofi', cSkipped: r.cSkipped }, () => []);
      }
    });
}

/** The flags of `dmem bench remote` that its ofi form reads (src/cli/bench-remote.ts). */
export interface OfiRemoteFlags {
  url?: string;
  tokenFile?: string;
  op?: string;
  inflight: number[];
  durationMs: number;
  reps: number;
  json: boolean;
}

/**
 * `dmem bench remote --url ofi+PROVIDER://HOST:PORT`: the one-sided ops at
 * each --inflight depth next to tcp and the C client (src/bench/ofi-remote.ts);
 * port 0 starts a memory node here.
 * @throws InvalidArgumentError (an op the ofi form does not have, a depth over 64)
 */
export async function ofiRemoteBench(flags: OfiRemoteFlags): Promise<void> {
  const out = new Output(flags.json);
  const all: OfiRemoteOp[] = ['read', 'cas', 'write', 'alloc'];
  if (flags.op !== undefined && !all.includes(flags.op as OfiRemoteOp)) throw new InvalidArgumentError(`--op ${flags.op}: the ofi form measures read (8 B), cas (8 B), write (4 KiB) and alloc (4 KiB + free)`);
  const ops = flags.op === undefined ? all : [flags.op as OfiRemoteOp];
  const token = flags.tokenFile ? readTokenFile(flags.tokenFile).toString() : undefined;
  await checkOfiRemote({ url: flags.url!, token, inflights: flags.inflight });
  out.lines([`dmem bench remote: ${flags.url}, ${ops.join(' ')} at in flight ${flags.inflight.join(' and ')}, ${flags.reps} repetitions of ${flags.durationMs} ms, with tcp and the C client interleaved`]);
  const r = await runOfiRemote({
    url: flags.url!, token, ops, inflights: flags.inflight, reps: flags.reps, durationMs: flags.durationMs,
    onRow: (x) => { if (!flags.json) process.stderr.write(`  ${x.system} ${x.op} x${x.inflight}: ${formatCount(x.opsPerSec)} ops/s\n`); },
  });
  const load = `load average ${r.loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${r.loadAfter.map((x) => x.toFixed(2)).join(' ')} after`;
  for (const row of r.rows) out.result({ bench: 'remote', url: r.url, tcpUrl: r.tcpUrl, ...row }, () => []);
  for (const why of r.skipped) out.result({ bench: 'remote', skipped: why }, () => []);
  out.result({ bench: 'remote', loadBefore: r.loadBefore, loadAfter: r.loadAfter }, () => []);
  if (flags.json) return;
  const cols = ['system', 'op', 'bytes', 'in flight', 'conns', 'ops/s', 'p50 us', 'p99 us', 'vs C', 'node cpu us/op', 'client cpu us/op']
    .map((header, i) => ({ header, left: i < 2 }));
  const cell = (x: number | null, d = 2): string => (x === null ? '' : fixed(x, d));
  const order: Record<string, number> = { 'ofi-c': 0, 'ofi-js': 1, 'ofi-pool': 2, tcp: 3 };
  const sorted = [...r.rows].sort((a, b) => all.indexOf(a.op) - all.indexOf(b.op) || a.inflight - b.inflight || order[a.system] - order[b.system]);
  const lines = table(cols, sorted.map((x) => [x.system, x.op === 'alloc' ? 'alloc+free' : x.op, String(x.bytes), String(x.inflight), String(x.conns),
    formatCount(x.opsPerSec), fixed(x.p50Us, 1), fixed(x.p99Us, 1), x.vsC === null ? '' : `${fixed(x.vsC, 2)}x`, cell(x.serverCpuUsPerOp), cell(x.clientCpuUsPerOp)]));
  out.lines(['', ...lines, ...r.skipped.map((s) => `skipped: ${s}`), load]);
}
