/**
 * `dmem bench chaos`: the chaos run of src/bench/chaos.ts at any length:
 * clients churning stamped memory under a short lease while random SIGSTOP
 * pauses (most past the lease) and kill -9 hit them. Prints what it saw;
 * exits 1 when any block was held twice, any stamp was lost, anything
 * leaked, or fsck is not clean.
 */
import type { Command } from 'commander';
import { DmemError } from '../errors.js';
import { runChaos, type ChaosResult } from '../bench/chaos.js';
import { intIn, parsePositiveSize, parseSeed } from './options.js';
import { pairs } from './format.js';
import { Output } from './output.js';
import { progress } from './progress.js';

interface ChaosFlags {
  events: number;
  clients: number;
  leaseMs: number;
  size: number;
  seed?: number;
  json: boolean;
}

/** Adds `chaos` to the `bench` command. */
export function addChaosCommand(bench: Command): void {
  bench
    .command('chaos')
    .description('clients churn stamped blocks under a short lease while random SIGSTOP pauses (most past the lease) and kill -9 hit them; checks no double hold, no lost stamp, no leak, fsck clean')
    .option('--events <n>', 'pauses and kills to send', intIn(1, 1e9), 1000)
    .option('--clients <n>', 'churning client processes (plus one survivor that is never touched)', intIn(1, 64), 4)
    .option('--lease-ms <ms>', "the temporary pool's lease (ms)", intIn(50, 60_000), 300)
    .option('--size <bytes>', "the temporary pool's size (e.g. 24MiB: a small pool runs out, so allocations flush and steal block caches)", parsePositiveSize, 128 * 2 ** 20)
    .option('--seed <n>', 'seed of the event sequence (default: the clock)', parseSeed)
    .option('--json', 'print the result as one JSON object', false)
    .addHelpText('after', '\nExit status: 0 when nothing was held twice, lost or leaked and fsck is clean; 1 otherwise.\n\nExample:\n  dmem bench chaos --events 10000')
    .action(async (flags: ChaosFlags) => chaos(flags));
}

async function chaos(flags: ChaosFlags): Promise<void> {
  const out = new Output(flags.json);
  const bar = progress('chaos events');
  const r = await runChaos({ events: flags.events, clients: flags.clients, leaseMs: flags.leaseMs, poolBytes: flags.size, seed: flags.seed, onEvent: (n) => bar.update(n, flags.events) });
  bar.stop();
  out.result({ event: 'chaos', ...r }, () => lines(r));
  if (!chaosPassed(r)) throw new DmemError('CHAOS_FAILED', `the chaos run (seed ${r.seed}) found ${r.doubleHolds} double holds, ${r.leakedChunks} leaked chunks, ${r.errors.length} errors, fsck ${r.fsckClean ? 'clean' : 'not clean'}`);
}

/** True when a chaos run found nothing wrong. */
export function chaosPassed(r: ChaosResult): boolean {
  return r.doubleHolds === 0 && r.errors.length === 0 && r.leakedChunks === 0 && r.orphanChunks === 0 && r.fsckClean;
}

function lines(r: ChaosResult): string[] {
  return pairs([
    ['events', `${r.events}: ${r.pauses} pauses (${r.pausesPastLease} past the lease), ${r.kills} kill -9`],
    ['fenced on resume', String(r.fenced)],
    ['recoveries', String(r.recoveries)],
    ['orphans freed', String(r.orphansFreed)],
    ['pool exhausted', `${r.exhausted} allocations skipped`],
    ['double holds', String(r.doubleHolds)],
    ['errors', r.errors.length === 0 ? '0' : `${r.errors.length}: ${r.errors.slice(0, 5).join('; ')}`],
    ['leaked chunks', `${r.leakedChunks} (orphans ${r.orphanChunks})`],
    ['fsck', r.fsckClean ? 'clean' : 'NOT clean'],
    ['survivor checks', `${r.survivorChecks} stamps, all intact`],
    ['took', `${(r.durationMs / 1000).toFixed(1)} s (seed ${r.seed})`],
  ]);
}
