/**
 * CLI hardening (issue 9, findings 10, 11 and 14), the real `dmem` program
 * as a child process: the server never changes a pool's lease unless
 * --lease-ms says so, attaches without --size, and --remove-on-exit keeps a
 * pool another client still uses; `bench trace` refuses empty and absurd
 * traces (exit 1, typed error) before touching any pool; an interrupted
 * bench keeps the results that finished; a truncated pool's error names the
 * file and both sizes. Every refusal is checked to leave the pool file
 * byte for byte as it was (sha-256 before and after).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openPool } from '../src/index.js';
import { shmPath } from '../plugins/cxl-shm/index.js';
import { CLI, dmem, jsonLines, withPoolName } from './helpers.js';


function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Creates pool `name` (32 MiB) with lease `leaseMs` and lets go of it. */
async function makePool(name: string, leaseMs: number): Promise<void> {
  const p = await openPool(`shm:${name}`, { size: '32MiB', clients: 8, heartbeatMs: 0 });
  p.setLeaseMs(leaseMs);
  p.close();
}

/** A running `dmem server ... --json`, its first (started) line, and a way to stop it. */
async function startServer(args: string[]): Promise<{ child: ChildProcessWithoutNullStreams; started: Record<string, unknown>; stop: () => Promise<{ code: number | null; lines: Array<Record<string, unknown>>; stdout: string }> }> {
  const child = spawn(process.execPath, [CLI, 'server', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server printed nothing in 15 s: ${stderr}`)), 15_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('\n')) { clearTimeout(timer); resolve(); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited ${code}: ${stderr}`)); });
  });
  const started = jsonLines(stdout)[0];
  return {
    child, started,
    stop: async () => {
      child.kill('SIGTERM');
      const code = await exited;
      return { code, lines: jsonLines(stdout), stdout };
    },
  };
}

test('a second server attaches without --size and keeps the pool\'s lease; --lease-ms changes it and says so', async () => {
  await withPoolName('lease', async (name) => {
    await makePool(name, 60_000);
    const a = await startServer(['--pool', name, '--json']);
    assert.is(a.started.created, false);
    assert.is(a.started.leaseMs, 60_000, 'attaching leaves the lease alone');
    assert.is(a.started.leaseChanged, false);
    const sa = await a.stop();
    assert.is(sa.code, 0);
    const p = await openPool(`shm:${name}`, { create: false, heartbeatMs: 0 });
    assert.is(p.leaseMs, 60_000, 'still 60000 ms after the server stopped');
    p.close();

    const b = await startServer(['--pool', name, '--lease-ms', '2000', '--json']);
    assert.is(b.started.leaseMs, 2000);
    assert.is(b.started.leaseChanged, true);
    assert.is(b.started.previousLeaseMs, 60_000);
    assert.is((await b.stop()).code, 0);

    const human = spawn(process.execPath, [CLI, 'server', '--pool', name, '--lease-ms', '3000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    await new Promise<void>((resolve) => human.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('serving')) resolve(); }));
    human.kill('SIGTERM');
    await new Promise((resolve) => human.on('exit', resolve));
    assert.match(out, /3000 ms, set by --lease-ms \(was 2000 ms/);
  });
});

test('server without --size on a pool that does not exist: exit 1, typed error, nothing created', async () => {
  await withPoolName('nosize', (name) => {
    const r = dmem('server', '--pool', name, '--json');
    assert.is(r.status, 1, r.stderr);
    const err = jsonLines(r.stdout)[0].error as { code: string; message: string };
    assert.is(err.code, 'INVALID_ARGUMENT');
    assert.match(err.message, /does not exist: give --size/);
    assert.not.ok(existsSync(shmPath(name)));
  });
});

test('--remove-on-exit keeps a pool another client still uses, and removes it once none is left', async () => {
  await withPoolName('remove', async (name) => {
    await makePool(name, 2000);
    const user = await openPool(`shm:${name}`, { create: false });
    try {
      const s = await startServer(['--pool', name, '--remove-on-exit', '--json']);
      const r = await s.stop();
      assert.is(r.code, 0);
      const stopped = r.lines.at(-1)!;
      assert.is(stopped.removed, false);
      const others = stopped.otherClients as Array<{ id: number; pid: number }>;
      assert.equal(others.map((o) => o.id), [user.clientId], 'names the client that still uses the pool');
      assert.is(others[0].pid, process.pid);
      assert.ok(existsSync(shmPath(name)), 'the pool file is kept');
      assert.ok(user.alloc(4096) > 0, 'the other client goes on working');
    } finally {
      user.close();
    }
    const s2 = await startServer(['--pool', name, '--remove-on-exit', '--json']);
    const r2 = await s2.stop();
    assert.is(r2.lines.at(-1)!.removed, true);
    assert.not.ok(existsSync(shmPath(name)), 'removed once no other client was live');
  });
});

test('bench trace refuses an empty or absurd trace with exit 1 and changes no byte of the pool', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmem-trace-'));
  try {
    const empty = join(dir, 'empty.trace');
    writeFileSync(empty, '\n\n');
    const absurd = join(dir, 'absurd.trace');
    writeFileSync(absurd, '0 1\n999999999999999999 2\n');
    const huge = join(dir, 'huge.trace');
    writeFileSync(huge, Array.from({ length: 4096 }, (_, i) => `${i} 9`).join('\n'));
    await withPoolName('trace', async (name) => {
      await makePool(name, 2000);
      const before = sha(shmPath(name));
      for (const [file, re] of [[empty, /holds no request/], [absurd, /past 86400000000 us/]] as const) {
        const r = dmem('bench', 'trace', file, '--pool', name, '--procs', '1', '--json');
        assert.is(r.status, 1, `${file}: ${r.stderr}`);
        const err = jsonLines(r.stdout)[0].error as { code: string; message: string };
        assert.is(err.code, 'INVALID_ARGUMENT');
        assert.match(err.message, re);
        assert.is(sha(shmPath(name)), before, `${file}: no byte of the pool changed`);
      }
    });
    const r = dmem('bench', 'trace', huge, '--procs', '1024', '--json');
    assert.is(r.status, 1, r.stderr);
    assert.match((jsonLines(r.stdout)[0].error as { message: string }).message, /more than a pool can address/);
    const human = dmem('bench', 'trace', empty);
    assert.is(human.status, 1);
    assert.match(human.stderr, /holds no request/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an interrupted bench keeps every finished measurement (JSON lines streamed as they finish)', async () => {
  const child = spawn(process.execPath, [CLI, 'bench', 'micro', '--classes', '0-9', '--procs', '1', '--epochs', '20000', '--blocks', '64', '--churn', '16', '--seed', '7', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no result line in 60 s: ${stderr}`)), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('\n')) { clearTimeout(timer); resolve(); }
    });
  });
  child.kill('SIGINT');
  const code = await exited;
  const lines = jsonLines(stdout).filter((l) => 'cls' in l);
  assert.is(code, 130, `interrupted: exit 130 (${stderr})`);
  assert.ok(lines.length >= 1 && lines.length < 10, `finished classes kept: ${lines.length}`);
  assert.is(lines[0].cls, 0);
  assert.ok((lines[0].opsPerSec as number) > 0);
  assert.match(stderr, /stopped after \d+ finished measurement/);
});

test('a truncated pool: exit 1 naming the file, its size and the size the superblock expects; file unchanged', async () => {
  await withPoolName('trunc', async (name) => {
    await makePool(name, 2000);
    const path = shmPath(name);
    truncateSync(path, 16 * 2 ** 20);
    const before = sha(path);
    const r = dmem('stat', '--pool', name, '--json');
    assert.is(r.status, 1, r.stderr);
    const err = jsonLines(r.stdout)[0].error as { code: string; message: string };
    assert.is(err.code, 'CORRUPT_POOL');
    assert.ok(err.message.includes(path), err.message);
    assert.match(err.message, /is 16777216 bytes but its superblock says the pool is 33554432 bytes/);
    assert.is(sha(path), before, 'nothing was written');
    const s = dmem('server', '--pool', name, '--json');
    assert.is(s.status, 1);
    assert.is((jsonLines(s.stdout)[0].error as { code: string }).code, 'CORRUPT_POOL');
    assert.is(sha(path), before, 'the server wrote nothing either');
  });
});

test('a fresh devdax device is formatted with its size from sysfs', () => {
  const devices = existsSync('/dev') ? readdirSync('/dev').filter((f) => /^dax\d+\.\d+$/.test(f)) : [];
  if (devices.length === 0) {
    console.log('skip: no /dev/daxX.Y device here (the sysfs lookup and the format claim are tested in api-contract.test.ts)');
    return;
  }
  console.log(`skip: /dev/${devices[0]} exists, but formatting a real device would destroy its contents; run by hand: dmem server --pool /dev/${devices[0]}`);
});

test.run();
