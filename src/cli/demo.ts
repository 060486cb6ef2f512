/**
 * `dmem demo`: the README's main job with built-in settings. It creates a
 * temporary shm pool, runs the micro (frag) benchmark with 2 processes over
 * every size class 0..9, prints the table and removes the pool.
 */
import type { Command } from 'commander';
import { micro } from './bench.js';

/** The demo's settings: 2 processes x 1000 blocks, 250 freed and allocated per epoch, 1000 epochs per class. */
export const DEMO = { procs: 2, blocks: 1000, churn: 250, epochs: 1000 } as const;

/** Adds `demo` to `program`. */
export function addDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      `run the micro benchmark on a temporary pool: ${DEMO.procs} processes, size classes 0..9, ${DEMO.blocks} blocks each, ` +
        `${DEMO.churn} freed and allocated per epoch, ${DEMO.epochs} epochs per class`,
    )
    .option('--json', 'print one JSON object per size class on stdout', false)
    .addHelpText('after', '\nThe same run with other settings: dmem bench micro --help')
    .action(async (flags: { json: boolean }) => {
      await micro({ ...DEMO, json: flags.json }, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    });
}
