/**
 * The allocator study (issue 14): the three allocators (dmem, the one-sided
 * array, the allocation server) pass one correctness suite on shm pools:
 * alloc/free of every size class with the data written and read back,
 * exhaustion and recovery from it, double free, invalid addresses, and two
 * processes churning and stamping their blocks on one pool (an overlap shows
 * as a stamp mismatch). Then the study's CLI runs on tiny inputs: memtest
 * and trace --all print well-formed JSON lines with the run's metadata, and
 * their plots are written as SVG and PNG with one series per allocator.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DoubleFreeError, InvalidAddressError, NotAPoolError, PoolExhaustedError } from '../src/errors.js';
import { ALLOCATORS, type AllocatorName } from '../src/study/allocator.js';
import { attachAllocator, createStudyPool } from '../src/study/pools.js';
import { openOnesided } from '../src/baselines/onesided.js';
import { ROOT, is } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const STAMP = join(ROOT, 'dist', 'test', 'fixtures', 'study-stamp.js');
const MiB = 2 ** 20;

for (const name of ALLOCATORS) {
  test(`${name}: every class allocates, holds its bytes and frees`, async () => {
    const pool = await createStudyPool(name, 64 * MiB, 2);
    const a = await attachAllocator(pool.spec, 1);
    try {
      const blocks: number[] = [];
      for (let c = 0; c <= 9; c++) {
        const g = a.allocClass(c);
        const bytes = new Uint8Array(64).fill(c + 1);
        a.write(g, bytes);
        a.write(g + 4096 * 2 ** c - 64, bytes);
        blocks.push(g);
      }
      assert.is(new Set(blocks).size, 10);
      for (let c = 0; c <= 9; c++) {
        assert.equal(a.read(blocks[c], 64), new Uint8Array(64).fill(c + 1), `class ${c} start`);
        assert.equal(a.read(blocks[c] + 4096 * 2 ** c - 64, 64), new Uint8Array(64).fill(c + 1), `class ${c} end`);
      }
      assert.ok(pool.reservedBytes() >= 4096 * (2 ** 10 - 1), 'reserved bytes cover the blocks');
      for (const g of blocks) a.free(g);
      const s = a.stats();
      assert.is(s.allocs, 10);
      assert.is(s.frees, 10);
      assert.ok(s.allocOps >= 10, `transport operations counted (${s.allocOps})`);
      // Every class fits again once freed (the pool is not leaking).
      for (let c = 9; c >= 0; c--) a.free(a.allocClass(c));
    } finally {
      a.close();
      await pool.release();
    }
  });

  test(`${name}: exhaustion, then freeing makes room again`, async () => {
    const pool = await createStudyPool(name, 16 * MiB, 2);
    const a = await attachAllocator(pool.spec, 2);
    try {
      const held: number[] = [];
      let err: unknown;
      for (let i = 0; i < 10_000; i++) {
        try { held.push(a.allocClass(4)); } catch (e) { err = e; break; }
      }
      assert.ok(err instanceof PoolExhaustedError, `exhausted with PoolExhaustedError, got ${String(err)}`);
      assert.ok(held.length >= 64, `most of the 16 MiB pool was handed out (${held.length} x 64 KiB)`);
      a.free(held.pop()!);
      held.push(a.allocClass(4));
      for (const g of held) a.free(g);
    } finally {
      a.close();
      await pool.release();
    }
  });

  test(`${name}: double free and invalid addresses are refused`, async () => {
    const pool = await createStudyPool(name, 32 * MiB, 2);
    const a = await attachAllocator(pool.spec, 3);
    try {
      const g = a.allocClass(1);
      assert.throws(() => a.free(g + 4096), is(InvalidAddressError), 'inside a block');
      assert.throws(() => a.free(g + 8), is(InvalidAddressError), 'unaligned');
      assert.throws(() => a.read(g + 8192, 8), is(InvalidAddressError), 'read past the block');
      a.free(g);
      assert.throws(() => a.free(g), is(DoubleFreeError), 'second free');
      const h = a.allocClass(0);
      a.free(h);
    } finally {
      a.close();
      await pool.release();
    }
  });

  test(`${name}: two processes stamping their blocks never share one`, async () => {
    const pool = await createStudyPool(name, 128 * MiB, 2);
    try {
      const kids = [1, 2].map((id) => fork(STAMP, [name, pool.spec.name, String(id), '1500', '48'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
      const reports = kids.map((k) => new Promise<{ allocs: number; frees: number; mismatches: number }>((resolve, reject) => {
        k.on('message', (m: { ready?: boolean; allocs?: number }) => { if (m.allocs !== undefined) resolve(m as never); });
        k.on('exit', (code) => { if (code !== 0) reject(new Error(`stamp child exited ${code}`)); });
      }));
      await Promise.all(kids.map((k) => new Promise<void>((resolve) => k.once('message', () => resolve()))));
      for (const k of kids) k.send('go');
      const rs = await Promise.all(reports);
      for (const r of rs) {
        assert.is(r.mismatches, 0, 'no block overlapped another process\'s');
        assert.is(r.allocs, r.frees);
        assert.ok(r.allocs > 300, `churned (${r.allocs} allocations)`);
      }
      assert.is(pool.reservedBytes(), 0, 'everything freed');
    } finally {
      await pool.release();
    }
  });
}

test('onesided-array refuses a dmem pool', async () => {
  const pool = await createStudyPool('dmem', 16 * MiB, 1);
  try {
    assert.throws(() => openOnesided(pool.spec.name), is(NotAPoolError));
  } finally {
    await pool.release();
  }
});

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Checks the SVG, the PNG's magic bytes and the spec's data: one series per allocator. */
function checkPlot(file: string, allocators: readonly AllocatorName[]): void {
  const spec = JSON.parse(readFileSync(`${file}.vl.json`, 'utf8')) as { usermeta: { meta: { cpus: number } }; vconcat: Array<{ data: { values: Array<{ allocator: string }> } }> };
  assert.ok(spec.usermeta.meta.cpus >= 1);
  for (const panel of spec.vconcat) assert.equal([...new Set(panel.data.values.map((v) => v.allocator))].sort(), [...allocators].sort());
  if (file.endsWith('.svg')) {
    const svg = readFileSync(file, 'utf8');
    assert.ok(svg.startsWith('<svg'), 'an SVG document');
    for (const a of allocators) assert.ok(svg.includes(`>${a}</text>`), `legend names ${a}`);
  } else {
    const png = readFileSync(file);
    assert.equal([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG magic');
  }
}

function checkLines(stdout: string, kind: string, allocators: readonly AllocatorName[]): Array<Record<string, unknown>> {
  const rows = stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { meta: Record<string, unknown> });
  assert.ok(rows.length >= allocators.length);
  for (const r of rows) {
    assert.is(r.test, kind);
    assert.type(r.meta.version, 'string');
    assert.ok(!Number.isNaN(Date.parse(r.meta.time as string)), 'ISO time');
    assert.type(r.meta.host, 'string');
    assert.ok((r.meta.cpus as number) >= 1);
    assert.type(r.meta.node, 'string');
  }
  assert.equal([...new Set(rows.map((r) => r.allocator))].sort(), [...allocators].sort());
  return rows;
}

test('bench memtest: JSON lines with metadata, fragmentation >= 1, SVG and PNG plots', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmem-study-'));
  try {
    const out = join(dir, 'mt.jsonl');
    const r = cli(['bench', 'memtest', '--allocator', 'all', '--min', '4096', '--max', '1MiB', '--count', '16', '--rounds', '2', '--procs', '1', '--seed', '5', '--json', '--out', out, '--plot', join(dir, 'mt.svg')]);
    assert.is(r.status, 0, r.stderr);
    const rows = checkLines(r.stdout, 'memtest', ALLOCATORS);
    assert.is(rows.length, 6);
    for (const row of rows) {
      assert.ok((row.fragmentation as number) >= 1, `reserved covers requested (${row.fragmentation})`);
      assert.ok((row.opsPerAlloc as number) > 0);
      assert.is(row.errors, 0);
    }
    assert.is(readFileSync(out, 'utf8'), r.stdout, '--out holds the same lines');
    checkPlot(join(dir, 'mt.svg'), ALLOCATORS);
    const p = cli(['bench', 'memtest', '--allocator', 'dmem,server', '--min', '4096', '--max', '64KiB', '--count', '8', '--rounds', '1', '--json', '--plot', join(dir, 'mt.png')]);
    assert.is(p.status, 0, p.stderr);
    checkPlot(join(dir, 'mt.png'), ['dmem', 'server']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bench trace --all: every trace of a folder, every allocator, JSON and plot', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmem-study-'));
  try {
    writeFileSync(join(dir, 'trace.a.1'), '0 0\n10 1\n20 3\n30 0\n');
    writeFileSync(join(dir, 'trace.b.1'), '0 2\n5 9\n');
    writeFileSync(join(dir, 'README.md'), 'not a trace\n');
    const r = cli(['bench', 'trace', '--all', dir, '--procs', '2', '--json', '--plot', join(dir, 'tr.svg')]);
    assert.is(r.status, 0, r.stderr);
    const rows = checkLines(r.stdout, 'trace', ALLOCATORS);
    assert.is(rows.length, 6, 'two traces x three allocators');
    assert.equal([...new Set(rows.map((x) => x.trace))].sort(), ['trace.a.1', 'trace.b.1']);
    for (const row of rows) {
      assert.is(row.allocs, row.trace === 'trace.a.1' ? 8 : 4, 'every process allocated every request');
      assert.is(row.errors, 0);
    }
    checkPlot(join(dir, 'tr.svg'), ALLOCATORS);
    const human = cli(['bench', 'trace', '--all', dir, '--allocator', 'onesided-array', '--procs', '1']);
    assert.is(human.status, 0, human.stderr);
    assert.match(human.stdout, /summary over traces/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bench micro --allocator and bench study produce rows per allocator', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmem-study-'));
  try {
    const r = cli(['bench', 'micro', '--allocator', 'all', '--classes', '0,3', '--procs', '2', '--epochs', '5', '--blocks', '40', '--churn', '10', '--json', '--plot', join(dir, 'mi.svg')]);
    assert.is(r.status, 0, r.stderr);
    const rows = checkLines(r.stdout, 'micro', ALLOCATORS);
    assert.is(rows.length, 6);
    checkPlot(join(dir, 'mi.svg'), ALLOCATORS);
    const s = cli(['bench', 'study', '--procs', '1,2', '--reps', '1', '--epochs', '3', '--blocks', '20', '--churn', '5', '--json', '--plot', join(dir, 'st.svg')]);
    assert.is(s.status, 0, s.stderr);
    const lines = s.stdout.trim().split('\n').map((l) => JSON.parse(l) as { test: string });
    assert.is(lines.filter((l) => l.test === 'table2').length, 6, 'one Table 2 row per allocator and process count');
    checkPlot(join(dir, 'st.svg'), ALLOCATORS);
    const bad = cli(['bench', 'micro', '--allocator', 'nope', '--class', '0']);
    assert.is(bad.status, 2);
    assert.match(bad.stderr, /unknown allocator "nope"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
