/**
 * `dmem bench ofi`: one-sided operations over libfabric from JS and from a
 * C client on the same memory node (src/bench/ofi-bench.ts).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { runOfiBench, runOfiFrag } from '../bench/ofi-bench.js';
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
    .option('--inflight <n>', "the C client's second in-flight depth (JS is synchronous: 1)", intIn(1, 64), 16)
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
