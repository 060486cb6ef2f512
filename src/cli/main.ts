#!/usr/bin/env node
/**
 * `dmem`: the command line (docs/design.md, "Layers").
 *
 *   dmem server --pool NAME --size BYTES    create or attach a shm pool, recover dead clients, serve until SIGINT/SIGTERM
 *   dmem stat --pool NAME                   census of a pool
 *   dmem fsck --pool NAME [--repair]        check (and repair) every invariant of a pool no other client uses
 *   dmem recover --pool NAME --client ID    force one client's recovery
 *   dmem bench micro | trace                FineMem's frag and stage benchmarks
 *   dmem demo                               the micro benchmark on a temporary pool
 *
 * Exit status: 0 success; 1 a failed operation (a DmemError: `error: <message>`
 * on stderr, or `{"error":{code,message}}` on stdout with --json); 2 bad usage
 * (commander's errors and invalid option values); 130 interrupted.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { DmemError } from '../errors.js';
import { addServerCommand } from './server.js';
import { addStatCommand } from './stat.js';
import { addFsckCommand } from './fsck.js';
import { addRecoverCommand } from './recover.js';
import { addBenchCommands } from './bench.js';
import { addDemoCommand } from './demo.js';
import { addClientCommand } from './client.js';
import { printError } from './output.js';

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The `dmem` program; subcommands inherit its exit override (errors are thrown, not exited on). */
export function program(): Command {
  const p = new Command('dmem')
    .description('disaggregated memory pool: one-sided FineMem-style allocator over CXL-style shared memory')
    .version(version(), '-V, --version', 'print the version')
    .exitOverride()
    .showSuggestionAfterError(true)
    .addHelpText('after', '\nEvery command takes --help (flags, units, defaults) and --json (one JSON object per result line).\nExit status: 0 ok, 1 failed operation, 2 bad usage.');
  addServerCommand(p);
  addStatCommand(p);
  addFsckCommand(p);
  addRecoverCommand(p);
  addBenchCommands(p);
  addDemoCommand(p);
  addClientCommand(p);
  return p;
}

async function main(argv: string[]): Promise<number> {
  try {
    await program().parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    printError(err, argv.includes('--json'));
    if (err instanceof DmemError && err.code === 'ABORTED') return 130;
    return 1;
  }
}

process.exitCode = await main(process.argv);
