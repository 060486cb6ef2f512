/**
 * Crash recovery through the command line (issue 4): `dmem server
 * --lease-ms` recovering a client killed with SIGKILL, `dmem fsck` refusing
 * a pool in use, reporting a dead client and repairing it, `dmem recover`
 * refusing a running client and recovering a dead one, and the --help texts.
 * The clients are test/fixtures/hold-worker.ts processes holding 50 blocks
 * of classes 0..9 (5115 chunks). Every pool is removed and every child
 * process killed in a `finally`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPool } from '../src/index.js';
import { ROOT, dmem, jsonLines, withPoolName } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const WORKER = fileURLToPath(new URL('./fixtures/hold-worker.js', import.meta.url));
const BLOCKS = 50;

/** What hold-worker reports once it holds its blocks. */
interface Held {
  clientId: number;
  pid: number;
  blocks: number;
  chunks: number;
}

type Line = Record<string, unknown>;

/** The census of `dmem stat --pool name --json`. */
function stat(name: string): { blocks: number; chunks: number; liveClients: number; orphanChunks: number } {
  const r = dmem('stat', '--pool', name, '--json');
  assert.is(r.status, 0, r.stderr);
  const c = jsonLines(r.stdout)[0];
  const a = c.allocated as { blocks: number; chunks: number };
  return { blocks: a.blocks, chunks: a.chunks, liveClients: c.liveClients as number, orphanChunks: c.orphanChunks as number };
}

/** Creates pool `name` (128 MiB, 16 clients) with a 200 ms lease, and lets go of it. */
async function createPool(name: string): Promise<void> {
  const pool = await openPool(`shm:${name}`, { size: '128MiB', clients: 16 });
  pool.setLeaseMs(200);
  pool.close();
}

/** Starts a hold-worker on pool `name`; resolves once it holds its blocks. */
async function holdWorker(name: string, children: ChildProcess[]): Promise<{ child: ChildProcess; held: Held }> {
  const child = fork(WORKER, [name, String(BLOCKS)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  const held = await new Promise<Held>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('hold-worker did not report in 10 s')), 10_000);
    child.once('message', (m) => { clearTimeout(timer); resolve(m as Held); });
    child.once('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`hold-worker exited (${code ?? sig}) before it reported`)); });
  });
  assert.is(held.blocks, BLOCKS);
  return { child, held };
}

/** SIGKILLs `child` (if still running) and waits for it to be gone. */
async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGKILL');
  await exited;
}

test('server --lease-ms 200 recovers a SIGKILLed client within 3 s; stat then shows nothing held', async () => {
  await withPoolName('cli-rec', async (name) => {
    const children: ChildProcess[] = [];
    const server = spawn(process.execPath, [CLI, 'server', '--pool', name, '--size', '128MiB', '--clients', '16', '--lease-ms', '200', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(server);
    try {
      let stdout = '';
      let stderr = '';
      server.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
      const exited = new Promise<number | null>((resolve) => server.on('exit', (code) => resolve(code)));
      const waiters: Array<() => void> = [];
      server.stdout!.on('data', (d: Buffer) => {
        stdout += d.toString();
        for (const w of waiters) w();
      });
      /** Resolves with the first complete stdout line that `pred` accepts; rejects after `ms`, or when the server exits first. */
      const lineWhere = (pred: (l: Line) => boolean, ms: number, what: string): Promise<Line> => new Promise((resolve, reject) => {
        const look = (): boolean => {
          const hit = jsonLines(stdout.slice(0, stdout.lastIndexOf('\n') + 1)).find(pred);
          if (hit === undefined) return false;
          clearTimeout(timer);
          const i = waiters.indexOf(look);
          if (i >= 0) waiters.splice(i, 1);
          resolve(hit);
          return true;
        };
        const timer = setTimeout(() => reject(new Error(`no ${what} line in ${ms} ms; stdout ${stdout}; stderr ${stderr}`)), ms);
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`server exited (${code}) before a ${what} line; stdout ${stdout}; stderr ${stderr}`));
        });
        if (!look()) waiters.push(look);
      });

      const started = await lineWhere((l) => l.event === 'started', 10_000, 'started');
      assert.is(started.leaseMs, 200);
      assert.is(started.monitor, true);

      const { child, held } = await holdWorker(name, children);
      assert.is(stat(name).blocks, BLOCKS);
      await kill(child);
      const t0 = Date.now();
      const ev = await lineWhere((l) => l.event === 'recovered' && l.client === held.clientId, 3_000, 'recovered');
      const report = ev.report as { blocks: number; chunks: number };
      assert.is(report.blocks, BLOCKS);
      assert.is(report.chunks, held.chunks);
      assert.is(ev.pid, held.pid);
      assert.is(ev.reason, 'process-gone');
      assert.ok((ev.durationMs as number) >= 0);
      assert.ok(Date.now() - t0 < 3_000);
      assert.match(stderr, /client recovered/, 'the recovery is logged on stderr through pino');

      const after = stat(name);
      assert.is(after.chunks, 0);
      assert.is(after.blocks, 0);
      assert.is(after.orphanChunks, 0);

      server.kill('SIGTERM');
      assert.is(await exited, 0, stderr);
      assert.is(jsonLines(stdout).at(-1)!.event, 'stopped');
    } finally {
      for (const c of children) await kill(c);
    }
  });
});

test('fsck: clean pool exits 0; refuses a live client; reports it dead once killed; --repair recovers it', async () => {
  await withPoolName('cli-fsck', async (name) => {
    const children: ChildProcess[] = [];
    try {
      await createPool(name);
      const clean = dmem('fsck', '--pool', name);
      assert.is(clean.status, 0, clean.stderr);
      assert.match(clean.stdout, /^clean$/m);
      assert.match(clean.stdout, /orphan chunks +0/);
      const cleanJson = jsonLines(dmem('fsck', '--pool', name, '--json').stdout);
      assert.is(cleanJson.length, 1);
      assert.is(cleanJson[0].clean, true);
      assert.is(cleanJson[0].pass, 'check');

      const { child, held } = await holdWorker(name, children);
      const busy = dmem('fsck', '--pool', name);
      assert.is(busy.status, 1);
      assert.ok(busy.stderr.includes(`pid ${held.pid}`), busy.stderr);
      assert.ok(busy.stderr.includes('--force'), busy.stderr);
      const busyJson = jsonLines(dmem('fsck', '--pool', name, '--json').stdout);
      assert.is((busyJson[0].error as { code: string }).code, 'POOL_IN_USE');
      assert.is(stat(name).blocks, BLOCKS, 'the refusal changed nothing');

      await kill(child);
      const dead = dmem('fsck', '--pool', name, '--json');
      assert.is(dead.status, 1, dead.stderr);
      const deadLines = jsonLines(dead.stdout);
      assert.equal((deadLines[0].deadClients as Array<{ client: number }>).map((d) => d.client), [held.clientId]);
      assert.is((deadLines.at(-1)!.error as { code: string }).code, 'CORRUPT_POOL');

      const repair = dmem('fsck', '--pool', name, '--repair', '--json');
      assert.is(repair.status, 0, repair.stderr + repair.stdout);
      const lines = jsonLines(repair.stdout);
      const rec = lines.find((l) => l.event === 'recovered')!;
      assert.ok(rec, repair.stdout);
      assert.is(rec.client, held.clientId);
      assert.is((rec.report as { blocks: number }).blocks, BLOCKS);
      const last = lines.at(-1)!;
      assert.is(last.pass, 'after repair');
      assert.is(last.clean, true);

      const again = dmem('fsck', '--pool', name);
      assert.is(again.status, 0, again.stderr);
      assert.match(again.stdout, /^clean$/m);
      assert.is(stat(name).chunks, 0);
    } finally {
      for (const c of children) await kill(c);
    }
  });
});

test('recover --client refuses a running client (naming its pid), recovers it once killed, then finds its slot free', async () => {
  await withPoolName('cli-recover', async (name) => {
    const children: ChildProcess[] = [];
    try {
      await createPool(name);
      const { child, held } = await holdWorker(name, children);
      const id = String(held.clientId);
      const alive = dmem('recover', '--pool', name, '--client', id);
      assert.is(alive.status, 1);
      assert.ok(alive.stderr.includes(`client ${id} (pid ${held.pid}`) && alive.stderr.includes(`pid ${held.pid} is alive`), alive.stderr);
      const aliveJson = jsonLines(dmem('recover', '--pool', name, '--client', id, '--json').stdout);
      assert.is((aliveJson[0].error as { code: string }).code, 'CLIENT_ALIVE');
      const before = stat(name);
      assert.is(before.blocks, BLOCKS, 'the refusal changed nothing');
      assert.is(before.liveClients, 1);

      await kill(child);
      const r = dmem('recover', '--pool', name, '--client', id, '--json');
      assert.is(r.status, 0, r.stderr + r.stdout);
      const [ev] = jsonLines(r.stdout);
      assert.is(ev.client, held.clientId);
      assert.is(ev.reason, 'process-gone');
      assert.is((ev.report as { blocks: number }).blocks, BLOCKS);
      assert.is((ev.report as { chunks: number }).chunks, held.chunks);
      assert.ok(typeof ev.durationMs === 'number' && ev.durationMs >= 0);
      assert.is(stat(name).chunks, 0);

      const human = dmem('recover', '--pool', name, '--client', id);
      assert.is(human.status, 1);
      assert.match(human.stderr, /slot is free: nothing to recover/);
      assert.is(dmem('fsck', '--pool', name).status, 0);
    } finally {
      for (const c of children) await kill(c);
    }
  });
});

test('recover --force on a running client revokes it and recovers once it acknowledges', async () => {
  await withPoolName('cli-force', async (name) => {
    const children: ChildProcess[] = [];
    try {
      await createPool(name);
      const { held } = await holdWorker(name, children);
      const r = dmem('recover', '--pool', name, '--client', String(held.clientId), '--force');
      assert.is(r.status, 0, r.stderr + r.stdout);
      assert.match(r.stdout, /it acknowledged its revocation/);
      assert.match(r.stdout, new RegExp(`blocks freed +${BLOCKS}\\b`));
      assert.match(r.stdout, /took +[\d.]+ ms/);
      const after = stat(name);
      assert.is(after.chunks, 0);
      assert.is(after.liveClients, 0);
    } finally {
      for (const c of children) await kill(c);
    }
  });
});

test('--help of server, fsck and recover explains the recovery flags; bad values exit 2', () => {
  const cases: Array<[string, string[]]> = [
    ['server', ['--lease-ms', 'milliseconds', 'default: 1000', '--no-monitor']],
    ['fsck', ['--pool', '--repair', '--force', '--json']],
    ['recover', ['--pool', '--client', '--force', '--json']],
  ];
  for (const [cmd, words] of cases) {
    const r = dmem(cmd, '--help');
    assert.is(r.status, 0, r.stderr);
    for (const w of words) assert.ok(r.stdout.includes(w), `dmem ${cmd} --help should mention ${w}`);
  }
  const bad: string[][] = [
    ['server', '--pool', 'x', '--size', '64MiB', '--lease-ms', '5'],
    ['fsck'],
    ['recover', '--pool', 'x'],
    ['recover', '--pool', 'x', '--client', '0'],
  ];
  for (const args of bad) {
    const r = dmem(...args);
    assert.is(r.status, 2, `dmem ${args.join(' ')}: status ${r.status}, stderr ${r.stderr}`);
  }
});

test.run();
