/**
 * CLI tests: the real `dmem` program (dist/src/cli/main.js) run as a child
 * process, checking exit statuses (0 ok, 1 failed operation, 2 bad usage),
 * --help texts, --json result lines, the server's signal handling, and the
 * two benchmarks end to end on temporary shm pools. Every pool a test
 * creates has a unique name and is removed in a `finally`.
 *
 * The trace test replays ../shared/traces/trace.sys.xmalloc-test.16 (about
 * 5 s of arrivals) and is skipped, with a printed reason, where that folder
 * is absent.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dmem } from './helpers.js';
import { removeShm, shmPath } from '../plugins/cxl-shm/index.js';

/** The project root: the nearest folder above this file with a package.json. */
function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('no package.json above the test file');
    dir = up;
  }
  return dir;
}

const ROOT = projectRoot();
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const TRACE = join(ROOT, '..', 'shared', 'traces', 'trace.sys.xmalloc-test.16');


function uniqueName(): string {
  return `clitest-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The JSON objects of a --json run's stdout, one per line. */
function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('--help of every command exits 0 and describes its flags', () => {
  const cases: Array<[string[], string[]]> = [
    [[], ['server', 'stat', 'bench', 'demo']],
    [['server'], ['--pool', '--size', '--clients', '--remove-on-exit', '--json']],
    [['stat'], ['--pool', '--json']],
    [['bench', 'micro'], ['--pool', '--class', '--classes', '--procs', '--epochs', '--blocks', '--churn', '--seed', '--json', 'default: 1000', 'default: 250']],
    [['bench', 'trace'], ['--procs', '--epochs', '--pool', '--json', 'default: 2', 'default: 1']],
    [['demo'], ['--json']],
  ];
  for (const [cmd, flags] of cases) {
    const r = dmem(...cmd, '--help');
    assert.is(r.status, 0, `dmem ${cmd.join(' ')} --help: ${r.stderr}`);
    for (const f of flags) assert.ok(r.stdout.includes(f), `dmem ${cmd.join(' ')} --help should mention ${f}`);
  }
});

test('bad usage exits 2', () => {
  const cases: string[][] = [
    ['no-such-command'],
    ['server', '--size', '1GiB'],
    ['server', '--pool', 'x', '--size', 'lots'],
    ['stat'],
    ['stat', '--pool', '../etc'],
    ['bench', 'micro', '--class', '10'],
    ['bench', 'micro', '--classes', '3-1'],
    ['bench', 'micro', '--class', '1', '--classes', '0-9'],
    ['bench', 'micro', '--blocks', '10', '--churn', '20'],
    ['bench', 'micro', '--procs', '0'],
    ['bench', 'trace'],
    ['bench', 'trace', '/no/such/trace'],
  ];
  for (const args of cases) {
    const r = dmem(...args);
    assert.is(r.status, 2, `dmem ${args.join(' ')}: status ${r.status}, stderr ${r.stderr}`);
    assert.ok(r.stderr.length > 0, `dmem ${args.join(' ')} should say what is wrong`);
  }
});

test('stat on a missing pool exits 1 and names the pool', () => {
  const name = uniqueName();
  const r = dmem('stat', '--pool', name);
  assert.is(r.status, 1);
  assert.match(r.stderr, /^error: /);
  assert.ok(r.stderr.includes(name), r.stderr);
  const j = dmem('stat', '--pool', name, '--json');
  assert.is(j.status, 1);
  const [line] = jsonLines(j.stdout);
  const err = line.error as { code: string; message: string };
  assert.is(err.code, 'TRANSPORT_UNAVAILABLE');
  assert.ok(err.message.includes(name));
});

test('server prints geometry, stops on SIGTERM with exit 0 and keeps the pool; stat shows it empty', async () => {
  const name = uniqueName();
  try {
    const child = spawn(process.execPath, [CLI, 'server', '--pool', name, '--size', '64MiB', '--clients', '8', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`server printed no geometry in 10 s: ${stderr}`)), 10_000);
      child.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.includes('\n')) { clearTimeout(timer); resolve(); }
      });
    });
    const started = jsonLines(stdout)[0];
    assert.is(started.event, 'started');
    assert.is(started.created, true);
    assert.is(started.poolBytes, 64 * 2 ** 20);
    assert.is(started.maxClients, 8);
    assert.is(started.path, shmPath(name));
    assert.ok((started.sections as number) > 0 && (started.dataBytes as number) > 0);

    const stat = dmem('stat', '--pool', name, '--json');
    assert.is(stat.status, 0, stat.stderr);
    const census = jsonLines(stat.stdout)[0];
    const allocated = census.allocated as { blocks: number; chunks: number };
    assert.is(allocated.blocks, 0);
    assert.is(allocated.chunks, 0);
    assert.is(census.liveClients, 1, 'the server is the one live client');

    child.kill('SIGTERM');
    assert.is(await exited, 0, stderr);
    const stopped = jsonLines(stdout).at(-1)!;
    assert.is(stopped.event, 'stopped');
    assert.is(stopped.removed, false);
    assert.ok(existsSync(shmPath(name)), 'the pool file persists after the server stops');
  } finally {
    removeShm(name);
  }
});

test('bench micro: 2 processes, class 0, ops/s > 0 and no chunk held after', () => {
  const r = dmem('bench', 'micro', '--class', '0', '--procs', '2', '--epochs', '3', '--json');
  assert.is(r.status, 0, r.stderr + r.stdout);
  const lines = jsonLines(r.stdout);
  assert.is(lines.length, 1);
  const m = lines[0];
  assert.is(m.cls, 0);
  assert.is(m.procs, 2);
  assert.ok((m.opsPerSec as number) > 0);
  assert.is(m.allocs, 2 * 3 * 250);
  assert.is(m.frees, 2 * 3 * 250);
  assert.is(m.heldChunksAfter, 0);
  assert.is(m.freeErrors, 0);
  const lat = m.latency as { samples: number; p50Ns: number; p99Ns: number };
  assert.is(lat.samples, 2 * Math.ceil((3 * 250) / 8), 'every 8th allocation is timed');
  assert.ok(lat.p50Ns > 0 && lat.p99Ns >= lat.p50Ns);
  assert.not.ok(existsSync(shmPath(`dmem-bench-${String(m.pool).split('-').at(-1)}`)), 'the temporary pool is removed');
});

test('bench micro on a named pool leaves it as it was', () => {
  const name = uniqueName();
  try {
    const r = dmem('bench', 'micro', '--pool', name, '--size', '128MiB', '--classes', '0,5', '--procs', '1', '--epochs', '2', '--blocks', '100', '--churn', '10');
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /ops\/s/);
    const stat = dmem('stat', '--pool', name, '--json');
    assert.is((jsonLines(stat.stdout)[0].allocated as { chunks: number }).chunks, 0);
  } finally {
    removeShm(name);
  }
});

test('bench trace replays a real trace with 2 processes and no errors', () => {
  if (!existsSync(TRACE)) {
    console.log(`skipped: ${TRACE} not found (the traces live in ../shared/traces next to the project)`);
    return;
  }
  const r = dmem('bench', 'trace', TRACE, '--procs', '2', '--json');
  assert.is(r.status, 0, r.stderr + r.stdout);
  const [t] = jsonLines(r.stdout);
  assert.is(t.trace, 'trace.sys.xmalloc-test.16');
  assert.is(t.errors, 0);
  assert.is(t.allocs, 2 * (t.requests as number));
  assert.is(t.heldChunksAfter, 0);
  const ratio = t.ratio as { mean: number };
  assert.ok(ratio.mean >= 0.99, `replay cannot finish before the last arrival: ratio ${ratio.mean}`);
  assert.ok((t.latency as { meanNs: number }).meanNs > 0);
});

test.run();
