/**
 * The object heap (issue 5): slab objects and chunk blocks through
 * pool.heap, reuse, cross-client frees, bad addresses, a model-checked mix of
 * sizes from 1 B to 8 MiB, recovery of a dead client's objects, and the
 * 16-process hand-off test (after HPE gull's heap tests, in our own code).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  DoubleFreeError, InvalidAddressError, InvalidArgumentError, LeaseMonitor, openPool,
} from '../src/index.js';
import { is, usage, withPoolName } from './helpers.js';

const PASS = fileURLToPath(new URL('./fixtures/heap-pass.js', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/heap-holder.js', import.meta.url));
const KiB = 1024;
const MiB = 1024 * KiB;


test('a freed object is reused by the next alloc of the same size', async () => {
  const p = await openPool('memory:', { size: '16MiB' });
  try {
    const a = p.heap.alloc(100);
    p.heap.alloc(100);
    p.heap.free(a);
    assert.is(p.heap.alloc(100), a, 'same size class, same object');
    p.heap.free(a);
    assert.is(p.heap.alloc(120), a, '120 B is the same 128 B class');
  } finally {
    p.close();
  }
});

test('sizes from 1 B: 64-byte granularity at the small end, distinct objects, reads back', async () => {
  const p = await openPool('memory:', { size: '16MiB' });
  try {
    assert.is(p.heap.classSizes[0], 64);
    const sizes = [1, 63, 64, 65, 127, 128, 129, 200, 500, 1000, 2000, 3000, 3072];
    const got = sizes.map((n) => ({ n, g: p.heap.alloc(n) }));
    const sorted = [...got].sort((x, y) => x.g - y.g);
    for (let i = 1; i < sorted.length; i++) {
      assert.ok(sorted[i].g - sorted[i - 1].g >= 64 || sorted[i].g !== sorted[i - 1].g, 'distinct');
    }
    for (const { n, g } of got) p.write(g, new Uint8Array(n).fill(n & 255));
    for (const { n, g } of got) assert.ok(p.read(g, n).every((b) => b === (n & 255)), `${n} B object intact`);
    const st = p.heap.stats();
    assert.is(st.requestedBytes, sizes.reduce((a, b) => a + b, 0), 'stats count requested bytes');
    assert.ok(st.reservedBytes >= st.requestedBytes);
    assert.is(st.perClass[0].objects, 3, '1, 63 and 64 B in the 64 B class');
    for (const { g } of got) p.heap.free(g);
    assert.is(p.heap.stats().requestedBytes, 0);
  } finally {
    p.close();
  }
});

test('bad input: non-positive sizes, interior and foreign addresses, double frees, slab blocks refused by pool.free', async () => {
  const p = await openPool('memory:', { size: '16MiB' });
  try {
    assert.throws(() => p.heap.alloc(0), is(InvalidArgumentError));
    assert.throws(() => p.heap.alloc(-5), is(InvalidArgumentError));
    assert.throws(() => p.heap.alloc(Number.NaN), is(InvalidArgumentError));
    const g = p.heap.alloc(64);
    assert.throws(() => p.heap.free(g + 8), is(InvalidAddressError));
    assert.throws(() => p.free(g), is(InvalidAddressError), 'pool.free does not free heap objects');
    const slab = g - ((g - p.geometry.dataOffset) % (64 * KiB));
    assert.throws(() => p.free(slab), is(InvalidAddressError), 'a slab is not a client block');
    assert.throws(() => p.heap.free(slab), is(InvalidAddressError), 'nor a heap object');
    const before = usage(p);
    p.heap.free(g);
    assert.throws(() => p.heap.free(g), is(DoubleFreeError));
    const big = p.heap.alloc(5000);
    p.heap.free(big);
    assert.throws(() => p.heap.free(big), is(DoubleFreeError));
    assert.is(usage(p).chunks, before.chunks, 'nothing changed by the refused calls');
  } finally {
    p.close();
  }
});

test('1 MiB objects: distinct, intact, freed', async () => {
  const p = await openPool('memory:', { size: '64MiB' });
  try {
    const objs = Array.from({ length: 20 }, (_, i) => {
      const g = p.heap.alloc(MiB);
      p.write(g, new Uint8Array(MiB).fill(i + 1));
      return g;
    });
    assert.is(new Set(objs).size, 20);
    objs.forEach((g, i) => assert.ok(p.read(g, MiB).every((b) => b === i + 1), `object ${i} intact`));
    for (const g of objs) p.heap.free(g);
    assert.is(p.census().chunks.held, 0);
  } finally {
    p.close();
  }
});

test('mixed sizes 1 B .. 8 MiB against a reference model; everything comes back', async () => {
  const p = await openPool('memory:', { size: '256MiB', seed: 7n });
  try {
    let x = 12345;
    const rnd = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
    const live = new Map<number, { size: number; fill: number }>();
    let ops = 0;
    for (let i = 0; i < 6000; i++) {
      const r = rnd();
      if (live.size > 0 && (r & 1) === 0) {
        const keys = [...live.keys()];
        const g = keys[(r >>> 2) % keys.length];
        const o = live.get(g)!;
        const back = p.read(g, Math.min(o.size, 4096));
        assert.ok(back.every((b) => b === o.fill), `object at ${g} (${o.size} B) intact before its free`);
        p.heap.free(g);
        live.delete(g);
      } else {
        // Mostly small, some chunk-sized, a few up to 8 MiB.
        const pick = (r >>> 4) % 100;
        const size = pick < 80 ? 1 + ((r >>> 8) % 3072) : pick < 98 ? 3073 + ((r >>> 8) % (512 * KiB)) : 1 + ((r >>> 8) % (8 * MiB));
        const g = p.heap.alloc(size);
        assert.not.ok(live.has(g), 'a live gaddr is never handed out twice');
        const fill = (i % 251) + 1;
        p.write(g, new Uint8Array(Math.min(size, 4096)).fill(fill));
        live.set(g, { size, fill });
      }
      ops++;
    }
    // No two live objects overlap.
    const spans = [...live].map(([g, o]) => [g, g + o.size] as const).sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) assert.ok(spans[i][0] >= spans[i - 1][1], `objects overlap at ${spans[i][0]}`);
    const st = p.heap.stats();
    const smallLive = [...live.values()].filter((o) => o.size <= 3072);
    assert.is(st.perClass.reduce((a, c) => a + c.objects, 0), smallLive.length, 'stats count the live slab objects');
    assert.is(st.requestedBytes, smallLive.reduce((a, o) => a + o.size, 0));
    for (const g of live.keys()) p.heap.free(g);
    p.heap.flush();
    p.heap.trim();
    const u = usage(p);
    assert.equal(u, { chunks: 0, objects: 0, cached: 0, slabs: 0 }, `after ${ops} ops everything is free`);
    assert.ok(p.fsck().clean, 'fsck clean');
  } finally {
    p.close();
  }
});

test('cross-client frees on one shm pool; close frees what a client allocated; trim frees emptied slabs', async () => {
  await withPoolName('heap-x', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '32MiB' });
    const b = await openPool(`shm:${name}`, { create: false });
    try {
      const mine = Array.from({ length: 300 }, () => a.heap.alloc(200));
      for (const g of mine.slice(0, 200)) b.heap.free(g);
      assert.throws(() => b.heap.free(mine[0]), is(DoubleFreeError), 'the other client sees it freed');
      const fromB = b.heap.alloc(200);
      assert.not.ok(mine.slice(200).includes(fromB), 'B never gets an object A still holds');
      b.heap.free(fromB);
      assert.ok(usage(a).objects >= 100);
      a.close();
      b.heap.flush();
      b.heap.trim();
      assert.equal(usage(b), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'A closed: its 100 objects, its cache and the slabs are gone');
    } finally {
      a.close();
      b.close();
    }
  });
});

test('recovery covers heap objects: a killed client\'s objects and cache come back', async () => {
  await withPoolName('heap-rec', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB' });
    try {
      admin.setLeaseMs(200);
      const keep = admin.heap.alloc(64);
      admin.write(keep, new Uint8Array([9]));
      const child = fork(CHILD, [name], { stdio: 'inherit' });
      const msg = await new Promise<{ objects: number }>((resolve) => child.once('message', (m) => resolve(m as { objects: number })));
      assert.ok(msg.objects > 0);
      const during = usage(admin);
      assert.ok(during.objects >= msg.objects + 1, `the child's ${msg.objects} objects are live`);
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const monitor = new LeaseMonitor(admin);
      let objects = 0;
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        for (const ev of monitor.sweep().recovered) objects += ev.report.objects;
        if (objects > 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.ok(objects >= msg.objects, `recovery freed the child's objects and cache (${objects} >= ${msg.objects})`);
      admin.heap.trim();
      const after = usage(admin);
      assert.is(after.objects, 1, 'only the admin\'s object is left');
      assert.is(admin.read(keep, 1)[0], 9);
      assert.ok(admin.fsck().clean, 'fsck clean');
    } finally {
      admin.close();
    }
  });
});

/**
 * PROCS child processes pass ROUNDS objects of `size` bytes each through a
 * mailbox in the pool (test/fixtures/heap-pass.ts); every object is stamped
 * and checked, and nothing is left held at the end.
 */
async function passObjects(name: string, PROCS: number, ROUNDS: number, size?: number): Promise<void> {
  const admin = await openPool(`shm:${name}`, { size: '512MiB' });
  try {
    const box = admin.alloc(PROCS * 64 * 8 + 16);
    admin.write(box, new Uint8Array(PROCS * 64 * 8 + 16));
    const held0 = admin.census().chunks.held;
    const kids = Array.from({ length: PROCS }, (_, i) => fork(PASS, [name, String(box), String(i), String(PROCS), String(ROUNDS), ...(size === undefined ? [] : [String(size)])], { stdio: 'inherit' }));
    const reports = await Promise.all(kids.map((k) => new Promise<{ sent: number; received: number; mismatches: number; errors: string[] }>((resolve, reject) => {
      k.once('message', (m) => resolve(m as never));
      k.once('exit', (code) => reject(new Error(`child exited ${code} before reporting`)));
    })));
    await Promise.all(kids.map((k) => (k.exitCode !== null ? null : new Promise((r) => k.once('exit', r)))));
    assert.equal(reports.flatMap((r) => r.errors), [], 'no child failed');
    assert.is(reports.reduce((a, r) => a + r.sent, 0), PROCS * ROUNDS);
    assert.is(reports.reduce((a, r) => a + r.received, 0), PROCS * ROUNDS, 'every object was received');
    assert.is(reports.reduce((a, r) => a + r.mismatches, 0), 0, 'zero mismatches');
    assert.is(admin.census().chunks.held, held0, 'zero leaks: only the mailbox is held');
    assert.ok(admin.fsck().clean, 'fsck clean');
  } finally {
    admin.close();
  }
}

test('16 processes x 500 rounds pass 128 KiB objects through a list in the pool: zero mismatches, zero leaks', async () => {
  await withPoolName('heap-pass', (name) => passObjects(name, 16, 500));
});

test('4 processes x 2000 rounds pass 64 B slab objects (the host fast path: own frees to the cache, cross-client frees to the bitmaps) and churn their own: zero mismatches, zero leaks', async () => {
  await withPoolName('heap-pass64', (name) => passObjects(name, 4, 2000, 64));
});

test.run();
