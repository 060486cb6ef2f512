/**
 * The allocator core through the public API: format and attach, every size
 * class, blocks above 2 MiB, exhaustion with nothing leaked, typed errors for
 * double free and bad addresses, refusal of foreign files and other layout
 * versions. Uses the debug core (asserts on).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { shmPath } from '../plugins/cxl-shm/index.js';
import {
  DoubleFreeError, InvalidAddressError, InvalidArgumentError, NotAPoolError, Pool, PoolClosedError,
  PoolExhaustedError, VersionMismatchError, memoryTransport, openPool, toGaddr,
} from '../src/index.js';
import { is, rejects, withPoolName } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** An in-process pool; `blockCache` as the pool option (default: the library's, the cache on). */
function memPool(size: number, seed = 7, blockCache?: number): Pool {
  return Pool.attach(memoryTransport(size), { create: true, seed, debug: true, heartbeatMs: 0, ...(blockCache === undefined ? {} : { blockCache }) });
}

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

test('format, then attach from a second open sees the same geometry and data', async () => {
  await withPoolName('attach', async (name) => {
    const a = await openPool(`shm:${name}`, { size: 64 * MiB, debug: true });
    const g = a.alloc(100);
    a.write(g, new Uint8Array([7, 8, 9]));
    const b = await openPool(`shm:${name}`, { debug: true });
    assert.equal(b.geometry, a.geometry);
    assert.ok(b.clientId !== a.clientId, 'each open is its own client');
    assert.equal(Array.from(b.read(g, 3)), [7, 8, 9]);
    b.free(g);
    assert.throws(() => a.free(g), (e: unknown) => e instanceof DoubleFreeError);
    a.close();
    b.close();
    const c = await openPool(`shm:${name}`, { create: false });
    assert.is(c.census().chunks.held, 0);
    assert.is(c.census().liveClients, 1, 'closed clients released their slots');
    c.close();
  });
});

test('every size class: aligned, inside the data area, readable and writable end to end', () => {
  const pool = memPool(64 * MiB, 7, 256);
  const { dataOffset, dataBytes } = pool.geometry;
  const blocks: Array<[number, number]> = [];
  for (let c = 0; c <= 9; c++) {
    const size = 4 * KiB * 2 ** c;
    const g = pool.allocClass(c);
    assert.ok(g >= dataOffset && g + size <= dataOffset + dataBytes, `class ${c} inside the data area`);
    assert.is((g - dataOffset) % size, 0, `class ${c} naturally aligned`);
    pool.write(g, new Uint8Array([c + 1]));
    pool.write(g + size - 1, new Uint8Array([c + 101]));
    assert.throws(() => pool.read(g + size - 1, 2), is(InvalidAddressError), 'a read past the block is refused');
    blocks.push([g, size]);
  }
  for (const [g, size] of blocks) {
    const [, other] = blocks.find(([h]) => h === g)!;
    assert.is(other, size);
  }
  const sorted = [...blocks].sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < sorted.length; i++) assert.ok(sorted[i - 1][0] + sorted[i - 1][1] <= sorted[i][0], 'no overlap');
  for (let c = 0; c <= 9; c++) {
    const [g, size] = blocks[c];
    assert.is(pool.read(g, 1)[0], c + 1);
    assert.is(pool.read(g + size - 1, 1)[0], c + 101);
    pool.free(g);
  }
  // Classes 0..4 went into this client's block cache; a flush gives them back.
  assert.is(pool.flushCache(), 5, 'the five blocks of classes 0..4 were cached');
  const census = pool.census();
  assert.is(census.chunks.held, 0);
  assert.is(census.chunks.free, census.chunks.total);
  pool.close();
});

test('alloc(bytes) picks the smallest fitting class; above 2 MiB takes contiguous sections', () => {
  const pool = memPool(64 * MiB);
  const cases: Array<[number, number]> = [[1, 1], [4096, 1], [4097, 2], [64 * KiB, 16], [2 * MiB, 512]];
  for (const [bytes, chunks] of cases) {
    const g = pool.alloc(bytes);
    const held = pool.census().perClass.reduce((s, p) => s + p.chunks, 0);
    assert.is(held, chunks, `${bytes} B holds ${chunks} chunks`);
    pool.free(g);
  }
  const big = pool.alloc(5 * MiB + 1);
  assert.is(pool.census().perClass[10].blocks, 1);
  assert.is(pool.census().perClass[10].chunks, 3 * 512, '5 MiB + 1 B takes three sections');
  pool.write(big, new Uint8Array([1]));
  pool.write(big + 6 * MiB - 8, new Uint8Array(8).fill(9));
  assert.equal(Array.from(pool.read(big + 6 * MiB - 8, 8)), Array(8).fill(9));
  pool.free(big);
  assert.is(pool.census().chunks.held, 0);
  pool.close();
});

test('exhaustion: PoolExhaustedError, and every chunk comes back (nothing leaked)', () => {
  // The core's plain free path: every free is back in the census at once (no block cache).
  const pool = memPool(12 * MiB, 7, 0);
  const total = pool.census().chunks.total;
  for (const cls of [0, 3, 6, 9]) {
    const got: number[] = [];
    let err: unknown;
    try {
      for (;;) got.push(pool.allocClass(cls));
    } catch (e) {
      err = e;
    }
    assert.instance(err, PoolExhaustedError, `class ${cls} ends in PoolExhaustedError`);
    const census = pool.census();
    assert.is(census.chunks.held, got.length * 2 ** cls, `class ${cls}: held = what was handed out`);
    assert.is(census.chunks.orphan, 0);
    assert.is(got.length * 2 ** cls, total, `class ${cls}: the whole pool was usable`);
    for (const g of got) pool.free(g);
    assert.is(pool.census().chunks.free, total, `class ${cls}: all free again`);
  }
  const one = pool.allocClass(0);
  assert.throws(() => pool.alloc(pool.geometry.dataBytes), is(PoolExhaustedError), 'the whole data area, with one chunk taken');
  pool.free(one);
  assert.is(pool.census().chunks.held, 0, 'a failed large alloc leaves nothing behind');
  assert.throws(() => pool.alloc(64 * MiB), is(InvalidArgumentError), 'more than the pool holds is an invalid argument, not exhaustion');
  pool.close();
});

test('mixed classes reuse sections: chunk sections are retired for 2 MiB blocks', () => {
  const pool = memPool(12 * MiB);
  const small: number[] = [];
  assert.throws(() => { for (;;) small.push(pool.allocClass(0)); }, is(PoolExhaustedError));
  assert.is(pool.census().sections.chunk, pool.geometry.sections, 'every section serves chunks');
  assert.throws(() => pool.allocClass(9), is(PoolExhaustedError));
  for (const g of small) pool.free(g);
  const big = [];
  for (let i = 0; i < pool.geometry.sections; i++) big.push(pool.allocClass(9));
  assert.is(pool.census().sections.large, pool.geometry.sections);
  for (const g of big) pool.free(g);
  pool.close();
});

test('double free and addresses inside no allocation are typed errors that change nothing', () => {
  const pool = memPool(16 * MiB);
  const keep = pool.allocClass(2);
  const g = pool.allocClass(1);
  pool.free(g);
  const before = pool.census();
  assert.throws(() => pool.free(g), is(DoubleFreeError));
  assert.throws(() => pool.free(keep + 4096), is(InvalidAddressError), 'interior of a block');
  assert.throws(() => pool.free(keep + 1), is(InvalidAddressError), 'unaligned');
  assert.throws(() => pool.free(0), is(InvalidAddressError));
  assert.throws(() => pool.free(-4096), is(InvalidAddressError));
  assert.throws(() => pool.free(1.5), is(InvalidAddressError));
  assert.throws(() => pool.free(pool.geometry.poolBytes + 4096), is(InvalidAddressError));
  assert.throws(() => pool.free(toGaddr(3, keep)), is(InvalidAddressError), 'another node');
  assert.throws(() => pool.read(g, 1), is(InvalidAddressError), 'read of a freed block');
  assert.throws(() => pool.write(pool.geometry.dataOffset - 8, new Uint8Array(8)), is(InvalidAddressError), 'metadata is not writable');
  assert.throws(() => pool.cas(keep + 4, 0n, 1n), is(InvalidAddressError), 'unaligned cas');
  assert.equal(pool.census(), before, 'nothing changed');
  assert.throws(() => pool.alloc(0), is(InvalidArgumentError));
  assert.throws(() => pool.alloc(-1), is(InvalidArgumentError));
  assert.throws(() => pool.alloc(Number.NaN), is(InvalidArgumentError));
  assert.throws(() => pool.allocClass(10), is(InvalidArgumentError));
  pool.free(keep);
  pool.close();
  assert.throws(() => pool.alloc(1), is(PoolClosedError));
});

test('cas and faa are 64-bit atomics on pool memory', () => {
  const pool = memPool(16 * MiB);
  const g = pool.alloc(64);
  assert.is(pool.cas(g, 0n, 5n), 0n);
  assert.is(pool.cas(g, 0n, 9n), 5n, 'failed cas returns the word found');
  assert.is(pool.faa(g, 10n), 5n);
  assert.is(pool.faa(g, -1n), 15n);
  assert.is(pool.cas(g, 14n, -1n), 14n);
  assert.is(pool.faa(g, 1n), -1n, 'wraps as signed 64-bit');
  assert.is(pool.cas(g, 0n, 0n), 0n);
  pool.close();
});

test('a file that is not a pool is refused and left unchanged', async () => {
  await withPoolName('foreign', async (name) => {
    const path = shmPath(name);
    const junk = Buffer.alloc(8 * MiB);
    for (let i = 0; i < junk.length; i += 4096) junk.writeUInt32LE((i ^ 0xdeadbeef) >>> 0, i);
    writeFileSync(path, junk);
    const before = sha(path);
    await rejects(openPool(`shm:${name}`, { size: 8 * MiB }), (e) => e instanceof NotAPoolError);
    assert.is(sha(path), before);
  });
});

test('a pool of another layout version is refused and left unchanged', async () => {
  await withPoolName('version', async (name) => {
    const pool = await openPool(`shm:${name}`, { size: 8 * MiB });
    pool.close();
    const path = shmPath(name);
    const bytes = readFileSync(path);
    bytes.writeUInt32LE(bytes.readUInt32LE(8) + 1, 8);
    writeFileSync(path, bytes);
    const before = sha(path);
    await rejects(openPool(`shm:${name}`), (e) => e instanceof VersionMismatchError && /layout version/.test(e.message));
    assert.is(sha(path), before);
  });
});

test('a 5 GiB pool spans several mapping windows: every section is usable end to end', async () => {
  await withPoolName('big', async (name) => {
    const pool = await openPool(`shm:${name}`, { size: '5GiB' });
    const { sections } = pool.geometry;
    assert.ok(sections * 2 * MiB > 4 * 1024 * MiB, 'data reaches past 4 GiB');
    const blocks: number[] = [];
    for (let i = 0; i < sections; i++) blocks.push(pool.allocClass(9));
    assert.throws(() => pool.allocClass(0), is(PoolExhaustedError));
    const tag = new Uint8Array(8);
    const view = new DataView(tag.buffer);
    for (const g of blocks) {
      view.setFloat64(0, g, true);
      pool.write(g, tag);
      pool.write(g + 2 * MiB - 8, tag);
    }
    for (const g of blocks) {
      assert.is(new DataView(pool.read(g, 8).buffer).getFloat64(0, true), g);
      assert.is(new DataView(pool.read(g + 2 * MiB - 8, 8).buffer).getFloat64(0, true), g);
    }
    const last = blocks.reduce((a, b) => Math.max(a, b));
    assert.is(pool.faa(last + 8, 5n), 0n);
    assert.is(pool.cas(last + 8, 5n, 6n), 5n);
    for (const g of blocks) pool.free(g);
    assert.is(pool.census().chunks.held, 0);
    pool.close();
  });
});

test('two clients in one process never share a chunk', () => {
  const t = memoryTransport(32 * MiB);
  const a = Pool.attach(t, { create: true, seed: 1, debug: true, heartbeatMs: 0 });
  const b = Pool.attach(t, { create: false, seed: 2, debug: true, heartbeatMs: 0 });
  const owner = new Map<number, number>();
  const live: Array<[Pool, number, number]> = [];
  let x = 12345;
  for (let i = 0; i < 4000; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    const p = x & 1 ? a : b;
    if (live.length > 200 || (live.length > 0 && (x >>> 8) % 3 === 0)) {
      const [, g, chunks] = live.splice((x >>> 4) % live.length, 1)[0];
      for (let k = 0; k < chunks; k++) owner.delete(g + k * 4096);
      p.free(g);
    } else {
      const cls = (x >>> 12) % 5;
      const g = p.allocClass(cls);
      for (let k = 0; k < 2 ** cls; k++) {
        assert.not.ok(owner.has(g + k * 4096), 'chunk handed out twice');
        owner.set(g + k * 4096, p.clientId);
      }
      live.push([p, g, 2 ** cls]);
    }
  }
  assert.is(a.census().chunks.held, owner.size);
  for (const [p, g] of live) p.free(g);
  assert.is(a.census().chunks.held, 0);
  a.close();
  b.close();
});

test.run();
