/**
 * Far-memory spaces (issue 13): read-after-write across evictions against a
 * plain buffer model for every policy and prefetch, accesses that straddle
 * pages, write-back of dirty pages only (counted at the transport), a space
 * 16x its 8-page cache, LRU and MIN against a textbook reference string,
 * no policy beating Belady's MIN on the same trace, tiering of a hot set
 * near and back when it cools, and a killed holder's pages reclaimed by
 * recovery. Spaces use the debug core (paging asserts on).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  InvalidAddressError, InvalidArgumentError, LeaseMonitor, Pool, PoolClosedError, memoryTransport, openPool, type Transport,
} from '../src/index.js';
import {
  AsyncSpace, POLICIES, PREFETCHES, SpaceClosedError, createAsyncSpace, createSpace, type Space, type SpaceOptions,
} from '../src/space.js';
import { beladyMin } from '../src/paging/belady.js';
import {
  BenchError, BenchMismatchError, DmemError, PagingModuleMissingError, SpaceIoError, SpaceTierError,
} from '../src/errors.js';
import { serveTcp, type TcpServer } from '../src/transports/tcp/server.js';
import { openTcpPool, type RemotePool } from '../src/transports/tcp/index.js';
import { is, rejects, withPoolName } from './helpers.js';

const PAGE = 4096;
const MiB = 1024 * 1024;
const HOLDER = fileURLToPath(new URL('./fixtures/space-holder.js', import.meta.url));
const TOKEN = 'space-test-token-0123';
/** Either kind of space: code written with `await` runs on both. */
type AnySpace = Space | AsyncSpace;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function memPool(t: Transport = memoryTransport(64 * MiB)): Pool {
  return Pool.attach(t, { create: true, seed: 5, debug: true, heartbeatMs: 0 });
}

/** xorshift32: a seeded sequence, so every failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

/** Random reads and writes of random lengths at random offsets, each checked against `model`. */
async function modelRun(space: AnySpace, model: Uint8Array, ops: number, maxLen: number, seed: number): Promise<void> {
  const r = rng(seed);
  for (let i = 0; i < ops; i++) {
    const len = Math.floor(r() * maxLen);
    const off = Math.floor(r() * (model.length - len + 1));
    if (r() < 0.5) {
      const b = new Uint8Array(len);
      for (let j = 0; j < len; j++) b[j] = Math.floor(r() * 256);
      await space.write(off, b);
      model.set(b, off);
    } else {
      const got = await space.read(off, len);
      for (let j = 0; j < len; j++) {
        if (got[j] !== model[off + j]) assert.unreachable(`op ${i}: byte ${off + j} reads ${got[j]}, wrote ${model[off + j]}`);
      }
    }
  }
  const all = await space.read(0, model.length);
  assert.ok(all.every((b, j) => b === model[j]), 'the whole space equals the model at the end');
}

/** A Transport that counts bulk reads and writes of whole pages. */
class CountingTransport implements Transport {
  readonly kind = 'counting';
  pageReads = 0;
  pageWrites = 0;
  constructor(private readonly t: Transport) {}
  get size(): number { return this.t.size; }
  load64(o: number): bigint { return this.t.load64(o); }
  store64(o: number, v: bigint): void { this.t.store64(o, v); }
  cas64(o: number, e: bigint, d: bigint): bigint { return this.t.cas64(o, e, d); }
  faa64(o: number, d: bigint): bigint { return this.t.faa64(o, d); }
  read(o: number, dst: Uint8Array): void {
    if (dst.length === PAGE) this.pageReads++;
    this.t.read(o, dst);
  }
  write(o: number, src: Uint8Array): void {
    if (src.length === PAGE) this.pageWrites++;
    this.t.write(o, src);
  }
  close(): void { this.t.close(); }
}

// ------------------------------------------------------------ correctness

test('read-after-write across evictions, random offsets and lengths, every policy and prefetch', async () => {
  const pool = memPool();
  const held = pool.census().chunks.held;
  for (const policy of POLICIES) {
    for (const prefetch of PREFETCHES) {
      const bytes = 1 * MiB - 123;
      const space = createSpace(pool, bytes, { cacheBytes: 64 * 1024, policy, prefetch, prefetchPages: 8, debug: true });
      const model = new Uint8Array(bytes);
      await modelRun(space, model, 1500, 3 * PAGE, policy.length * 31 + prefetch.length);
      const s = space.stats();
      assert.ok(s.evictions > 100, `${policy}/${prefetch}: the cache of 16 pages evicted (${s.evictions})`);
      assert.is(s.hits + s.misses, s.accesses);
      assert.is(s.allocated, Math.ceil(bytes / PAGE), 'every page was touched once and allocated once');
      if (prefetch === 'sequential') assert.ok(s.prefetched > 0, `${policy}: the final full read prefetched`);
      assert.is(space.close(), s.allocated, 'close frees every page');
      assert.is(pool.census().chunks.held, held, 'nothing left allocated');
    }
  }
  pool.close();
});

test('typed getters and setters, within a page and straddling two, against a DataView model', () => {
  const pool = memPool();
  for (const policy of POLICIES) {
    const bytes = 40 * PAGE;
    const space = createSpace(pool, bytes, { cacheBytes: 2 * PAGE, policy, debug: true });
    const model = new DataView(new ArrayBuffer(bytes));
    const r = rng(99);
    const kinds = [
      { size: 1, set: 'setU8', get: 'getU8', v: () => Math.floor(r() * 256) },
      { size: 1, set: 'setI8', get: 'getI8', v: () => Math.floor(r() * 256) - 128 },
      { size: 2, set: 'setU16', get: 'getU16', v: () => Math.floor(r() * 65536) },
      { size: 2, set: 'setI16', get: 'getI16', v: () => Math.floor(r() * 65536) - 32768 },
      { size: 4, set: 'setU32', get: 'getU32', v: () => Math.floor(r() * 2 ** 32) },
      { size: 4, set: 'setI32', get: 'getI32', v: () => Math.floor(r() * 2 ** 32) - 2 ** 31 },
      { size: 4, set: 'setF32', get: 'getF32', v: () => Math.fround(r() * 1e6) },
      { size: 8, set: 'setF64', get: 'getF64', v: () => r() * 1e300 },
      { size: 8, set: 'setBigInt64', get: 'getBigInt64', v: () => BigInt(Math.floor(r() * 2 ** 52)) - 2n ** 51n },
      { size: 8, set: 'setBigUint64', get: 'getBigUint64', v: () => (BigInt(Math.floor(r() * 2 ** 32)) << 32n) | 0xFFFFFFFFn },
    ] as const;
    const setModel: Record<string, (o: number, v: never) => void> = {
      setU8: (o, v) => model.setUint8(o, v), setI8: (o, v) => model.setInt8(o, v),
      setU16: (o, v) => model.setUint16(o, v, true), setI16: (o, v) => model.setInt16(o, v, true),
      setU32: (o, v) => model.setUint32(o, v, true), setI32: (o, v) => model.setInt32(o, v, true),
      setF32: (o, v) => model.setFloat32(o, v, true), setF64: (o, v) => model.setFloat64(o, v, true),
      setBigInt64: (o, v) => model.setBigInt64(o, v, true), setBigUint64: (o, v) => model.setBigUint64(o, v, true),
    };
    const written: Array<{ k: typeof kinds[number]; off: number }> = [];
    for (let i = 0; i < 600; i++) {
      const k = kinds[i % kinds.length];
      // Every third access straddles a page boundary.
      const page = 1 + Math.floor(r() * 38);
      const off = i % 3 === 0 ? page * PAGE - 1 - Math.floor(r() * (k.size - 1)) : Math.floor(r() * (bytes - k.size));
      const v = k.v();
      (space[k.set] as (o: number, v: unknown) => void)(off, v);
      setModel[k.set](off, v as never);
      written.push({ k, off });
    }
    for (const { k, off } of written) {
      const want = (new Space2(model) as unknown as Record<string, (o: number) => unknown>)[k.get](off);
      assert.equal((space[k.get] as (o: number) => unknown)(off), want, `${policy}: ${k.get}(${off})`);
    }
    assert.equal(space.read(0, bytes), new Uint8Array(model.buffer), `${policy}: the bytes equal the model`);
    space.close();
  }
  pool.close();
});

/** The getters of a Space, read from a DataView (the model). */
class Space2 {
  constructor(private readonly m: DataView) {}
  getU8(o: number): number { return this.m.getUint8(o); }
  getI8(o: number): number { return this.m.getInt8(o); }
  getU16(o: number): number { return this.m.getUint16(o, true); }
  getI16(o: number): number { return this.m.getInt16(o, true); }
  getU32(o: number): number { return this.m.getUint32(o, true); }
  getI32(o: number): number { return this.m.getInt32(o, true); }
  getF32(o: number): number { return this.m.getFloat32(o, true); }
  getF64(o: number): number { return this.m.getFloat64(o, true); }
  getBigInt64(o: number): bigint { return this.m.getBigInt64(o, true); }
  getBigUint64(o: number): bigint { return this.m.getBigUint64(o, true); }
}

/**
 * Dirty pages are written back, clean ones never: `t` counts whole-page
 * reads and writes at the transport under the space's pool (this process's
 * pool, or the tcp server's).
 */
async function writeBackCheck(label: string, space: AnySpace, t: CountingTransport): Promise<void> {
  const pages = space.pages;
  // First touch of every page: new pages start dirty (their pool memory is not zeroed).
  // (The allocator's own metadata writes during these first touches are
  // not page write-backs; counting starts at the flush.)
  for (let p = 0; p < pages; p++) await space.setU32(p * PAGE, p);
  const writes0 = t.pageWrites;
  assert.is(await space.flush(), 8, `${label}: the 8 cached pages were still dirty`);
  assert.is(t.pageWrites - writes0, 8, `${label}: the flush wrote exactly those pages`);
  let s = space.stats();
  assert.is(s.writtenBack, pages, `${label}: every first-touched page was written once (evicted or flushed)`);
  const w1 = t.pageWrites;

  // Reads only: many evictions, no write.
  const reads0 = t.pageReads;
  const fetched0 = s.fetched;
  const r = rng(3);
  for (let i = 0; i < 3000; i++) {
    const p = Math.floor(r() * pages);
    assert.is(await space.getU32(p * PAGE), p);
  }
  s = space.stats();
  assert.ok(s.evictions > 1000, `${label}: evictions happened (${s.evictions})`);
  assert.is(t.pageWrites, w1, `${label}: no clean page was written back`);
  assert.is(s.writtenBack, pages);
  assert.is(t.pageReads - reads0, s.fetched - fetched0, `${label}: every fetch is one page read at the transport`);

  // Dirty 5 pages, then push everything out with reads of other pages.
  const dirty = [3, 17, 18, 40, 63];
  for (const p of dirty) await space.setU8(p * PAGE + 100, 0xAB);
  for (let round = 0; round < 3; round++) for (let p = 0; p < pages; p++) if (!dirty.includes(p)) await space.getU8(p * PAGE);
  assert.is(t.pageWrites - w1, dirty.length, `${label}: exactly the ${dirty.length} dirtied pages were written back`);
  for (const p of dirty) assert.is(await space.getU8(p * PAGE + 100), 0xAB, `${label}: page ${p} kept its write`);
  assert.is(await space.flush(), 0, 'nothing is dirty after the write-backs and reads');
}

test('dirty pages are written back, clean pages never (counted at the transport)', async () => {
  for (const policy of POLICIES) {
    const t = new CountingTransport(memoryTransport(32 * MiB));
    const pool = memPool(t);
    const space = createSpace(pool, 64 * PAGE, { cacheBytes: 8 * PAGE, policy, debug: true });
    await writeBackCheck(policy, space, t);
    space.close();
    pool.close();
  }
});

test('a space 16x its cache works with a cache of 8 pages', async () => {
  const pool = memPool();
  for (const policy of POLICIES) {
    const bytes = 128 * PAGE;
    const space = createSpace(pool, bytes, { cacheBytes: 8 * PAGE, policy, prefetch: 'sequential', prefetchPages: 4, debug: true });
    assert.is(space.slots, 8);
    const model = new Uint8Array(bytes);
    await modelRun(space, model, 800, 2 * PAGE, 17);
    assert.is(space.stats().resident, 8);
    space.close();
  }
  pool.close();
});

test('same operations, same counters: the policies are deterministic', async () => {
  const pool = memPool();
  for (const policy of POLICIES) {
    const run = async (): Promise<object> => {
      const space = createSpace(pool, 256 * PAGE, { cacheBytes: 16 * PAGE, policy, prefetch: 'sequential', prefetchPages: 4, debug: true });
      await modelRun(space, new Uint8Array(256 * PAGE), 400, 3 * PAGE, 5);
      const s = space.stats();
      space.close();
      return s;
    };
    assert.equal(await run(), await run(), policy);
  }
  pool.close();
});

// ------------------------------------------------------------ policies against MIN

/** The reference string of Silberschatz, Galvin & Gagne (Operating System Concepts, ch. 9/10). */
const TEXTBOOK = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1];

test('textbook reference string, 3 frames: MIN has 9 faults, LRU 12', () => {
  const trace = { pages: Uint32Array.from(TEXTBOOK), runs: new Uint32Array(TEXTBOOK.length).fill(1) };
  const min = beladyMin(trace, 3);
  assert.is(min.misses, 9);
  assert.is(min.hits, 11);
  const pool = memPool();
  const space = createSpace(pool, 8 * PAGE, { cacheBytes: 3 * PAGE, policy: 'lru', trace: true, debug: true });
  for (const p of TEXTBOOK) space.getU8(p * PAGE);
  assert.is(space.stats().misses, 12);
  assert.equal(space.trace(), trace, 'the space recorded the same trace');
  space.close();
  pool.close();
});

test('MIN counts a run of accesses to one page as one access and run - 1 hits', () => {
  const min = beladyMin({ pages: Uint32Array.from([1, 2, 1, 3]), runs: Uint32Array.from([5, 1, 2, 1]) }, 1);
  assert.equal(min, { accesses: 9, hits: 5, misses: 4, hitRatio: 5 / 9 });
});

/** Misses of `pages` accessed in order on a fresh space with a cache of `slots` pages under `policy`. */
function missesOf(policy: typeof POLICIES[number], slots: number, warm: number[], probe: number[]): number {
  const pool = memPool();
  const space = createSpace(pool, 64 * PAGE, { cacheBytes: slots * PAGE, policy, debug: true });
  for (const p of warm) space.getU8(p * PAGE);
  const before = space.stats().misses;
  for (const p of probe) space.getU8(p * PAGE);
  const misses = space.stats().misses - before;
  space.close();
  pool.close();
  return misses;
}

test('policies differ where their sources say: heat keeps a frequent page, linux resists a scan', () => {
  // Page 0 used 10 times, then 1 once, then 2 (cache of 2): LRU, CLOCK and
  // (with lists this short) linux evict 0, heat evicts the colder 1.
  const frequent = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2];
  assert.is(missesOf('lru', 2, frequent, [0]), 1);
  assert.is(missesOf('clock', 2, frequent, [0]), 1);
  assert.is(missesOf('heat', 2, frequent, [0]), 0, 'heat kept the frequent page');
  // Pages 0..3 used twice (linux activates them), then a scan of 20 other
  // pages (cache of 8): LRU lost the hot pages, linux's active list kept them.
  const hot = [0, 1, 2, 3, 0, 1, 2, 3];
  const scan = Array.from({ length: 20 }, (_, i) => 10 + i);
  assert.is(missesOf('lru', 8, [...hot, ...scan], [0, 1, 2, 3]), 4);
  assert.is(missesOf('linux', 8, [...hot, ...scan], [0, 1, 2, 3]), 0, 'linux kept the active pages through the scan');
});

test('no policy\'s hit ratio exceeds Belady\'s MIN on the same trace', () => {
  const pool = memPool();
  const pages = 256;
  const patterns: Record<string, (r: () => number, i: number) => number> = {
    uniform: (r) => Math.floor(r() * pages),
    hotset: (r) => (r() < 0.9 ? Math.floor(r() * pages / 10) : Math.floor(r() * pages)),
    loop: (_r, i) => i % 40,
    scanAndHot: (r, i) => (i % 3 === 0 ? (i / 3) % pages : Math.floor(r() * 12)),
  };
  for (const [name, next] of Object.entries(patterns)) {
    for (const policy of POLICIES) {
      const space = createSpace(pool, pages * PAGE, { cacheBytes: 32 * PAGE, policy, trace: true, debug: true });
      const r = rng(name.length);
      for (let i = 0; i < 20_000; i++) {
        const p = next(r, i);
        if (i % 7 === 0) space.setU16(p * PAGE + 8, i);
        else space.getU16(p * PAGE + 8);
      }
      const s = space.stats();
      const min = beladyMin(space.trace(), space.slots);
      assert.is(min.accesses, s.accesses, 'the trace holds every access');
      assert.ok(s.hits <= min.hits, `${name}/${policy}: ${s.hits} hits, MIN ${min.hits}`);
      if (name === 'loop') assert.ok(min.hits > s.hits, `${name}/${policy}: a loop larger than the cache is where MIN wins`);
      space.close();
    }
  }
  pool.close();
});

// ------------------------------------------------------------ tiering

const TIER_OPTS = {
  cacheBytes: 16 * PAGE, nearBytes: 32 * PAGE, policy: 'lru', halfLife: 400, hotHeat: 3, coldHeat: 0.5, sweepEvery: 100, debug: true,
} as const;

/**
 * Drives a 24-page hot set (90% of accesses) through a 16-page cache of a
 * tiered space of 200 pages whose near pool is `near`: the hot set must
 * move near; then other pages are used and it must move back far. Every
 * access is checked against a model, and so is every byte at the end.
 */
async function tieringRun(space: AnySpace, near: Pool): Promise<void> {
  const nearHeld = near.census().chunks.held;
  const pages = space.pages;
  const model = new Uint8Array(pages * PAGE);
  const r = rng(8);
  const hot = Array.from({ length: 24 }, (_, i) => 10 + i * 7);
  const access = async (p: number): Promise<void> => {
    // One access in ten straddles pages p - 1 and p.
    const off = p > 0 && r() < 0.1 ? p * PAGE - 2 : p * PAGE + Math.floor(r() * (PAGE - 4));
    if (r() < 0.3) {
      const v = Math.floor(r() * 2 ** 32);
      await space.setU32(off, v);
      new DataView(model.buffer).setUint32(off, v, true);
    } else {
      assert.is(await space.getU32(off), new DataView(model.buffer).getUint32(off, true));
    }
  };
  // Phase 1: 90% of accesses on 24 pages (more than the 16-page cache, so they are evicted and re-fetched).
  for (let i = 0; i < 20_000; i++) await access(r() < 0.9 ? hot[Math.floor(r() * hot.length)] : Math.floor(r() * pages));
  const nearHot = hot.filter((p) => space.isNear(p)).length;
  let s = space.stats();
  assert.ok(nearHot >= 20, `most of the hot set is near (${nearHot} of ${hot.length})`);
  assert.ok(s.promoted >= nearHot && s.nearPages <= 32, `promoted ${s.promoted}, near ${s.nearPages}`);
  assert.is(near.census().chunks.held - nearHeld, s.nearPages, 'the near pool holds exactly the near pages');

  // Phase 2: the hot set cools; other pages are used.
  const other = Array.from({ length: 100 }, (_, i) => (i * 2 + 1) % pages).filter((p) => !hot.includes(p));
  for (let i = 0; i < 20_000; i++) await access(other[Math.floor(r() * other.length)]);
  const stillNear = hot.filter((p) => space.isNear(p)).length;
  s = space.stats();
  assert.is(stillNear, 0, `the cooled hot set went back to the far pool (${stillNear} still near)`);
  assert.ok(s.demoted >= nearHot, `demoted ${s.demoted}`);
  assert.is(near.census().chunks.held - nearHeld, s.nearPages);
  assert.equal(await space.read(0, pages * PAGE), model, 'every byte survived the moves');
  await space.close();
  assert.is(near.census().chunks.held, nearHeld, 'close freed the near pages');
}

test('tiering: a hot set moves to the near pool, and back to the far pool when it cools', async () => {
  const near = memPool(memoryTransport(16 * MiB));
  const far = memPool(memoryTransport(32 * MiB));
  await tieringRun(createSpace(near, 200 * PAGE, { ...TIER_OPTS, far }), near);
  near.close();
  far.close();
});

// ------------------------------------------------------------ over tcp (AsyncSpace)

/**
 * A loopback memory server (port 0) over a fresh memory pool, and one
 * RemotePool client of it; or over `t`, counted, and then with no lease
 * monitor (whose scans of the pool would count too).
 */
async function withTcp(fn: (remote: RemotePool, srv: TcpServer) => Promise<void>, t?: Transport): Promise<void> {
  const srv = t ? await serveTcp(t, { create: true, token: TOKEN, leaseMs: 1500, monitor: false }) : await serveTcp('memory:', { size: '64MiB', token: TOKEN, leaseMs: 1500 });
  const remote = await openTcpPool(srv.url, { token: TOKEN });
  try {
    await fn(remote, srv);
  } finally {
    await remote.close();
    await srv.close();
  }
}

test('tcp: read-after-write against a buffer model with evictions, every policy, overlapped or not', async () => {
  await withTcp(async (remote, srv) => {
    const held = srv.pool.census().chunks.held;
    const runs: Array<[typeof POLICIES[number], 'none' | 'sequential', boolean]> = [];
    for (const policy of POLICIES) runs.push([policy, 'sequential', true]);
    runs.push(['linux', 'none', true], ['linux', 'sequential', false]);
    for (const [policy, prefetch, overlap] of runs) {
      const label = `${policy}/${prefetch}/${overlap ? 'overlap' : 'serial'}`;
      const bytes = 96 * PAGE - 77;
      const space = createAsyncSpace(remote, bytes, { cacheBytes: 16 * PAGE, policy, prefetch, prefetchPages: 8, overlap, debug: true });
      await modelRun(space, new Uint8Array(bytes), 600, 3 * PAGE, policy.length * 7 + prefetch.length);
      const s = space.stats();
      assert.ok(s.evictions > 50, `${label}: the 16-page cache evicted (${s.evictions})`);
      assert.ok(s.writtenBack > 0 && s.fetched > 0, `${label}: pages went both ways over tcp`);
      assert.is(s.hits + s.misses, s.accesses);
      assert.is(s.allocated, 96, `${label}: every page allocated once`);
      assert.is(srv.pool.census().chunks.held - held, 96, `${label}: the server holds one chunk per page`);
      if (!overlap) assert.is(space.peakInFlight, 1, `${label}: one page operation at a time`);
      assert.is(await space.close(), 96, `${label}: close frees every page`);
      assert.is(srv.pool.census().chunks.held, held, `${label}: nothing left allocated on the server`);
    }
  });
});

test('tcp: operations run in call order without awaiting; a sequential scan has its prefetches in flight together', async () => {
  await withTcp(async (remote) => {
    const pages = 256;
    const space = remote.space(pages * PAGE, { cacheBytes: 96 * PAGE, policy: 'lru', prefetch: 'sequential', debug: true });
    // Not awaited: each write is queued behind the one before, the read after all of them.
    const writes: Array<Promise<void>> = [];
    for (let p = 0; p < pages; p++) writes.push(space.setU32(p * PAGE + 12, p * 3 + 1));
    const first = space.getU32(12);
    await Promise.all(writes);
    assert.is(await first, 1, 'the read queued after the writes sees them');
    await space.flush();
    const fetched0 = space.stats().fetched;
    for (let p = 0; p < pages; p++) assert.is(await space.getU32(p * PAGE + 12), p * 3 + 1);
    const s = space.stats();
    assert.ok(s.prefetched >= 128, `the scan prefetched (${s.prefetched})`);
    assert.is(s.fetched - fetched0, pages - 1, 'each page fetched once, by prefetch or on its miss (page 0 was cached by the read)');
    assert.ok(space.peakInFlight >= 32, `a prefetch's 32 fetches were in flight together (peak ${space.peakInFlight})`);
    // A straddling value over two uncached pages, and a write copied at the call.
    const b = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const w = space.write(5 * PAGE - 4, b);
    b.fill(0);
    await w;
    assert.equal(await space.read(5 * PAGE - 4, 8), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), 'write copies its bytes when called');
    assert.is(await space.getBigUint64(5 * PAGE - 4), 0x0807060504030201n);
    await space.close();
  });
});

test('same operations, same counters on a Space over memory and an AsyncSpace over tcp; a hit settles in the calling tick', async () => {
  const pool = memPool();
  await withTcp(async (remote) => {
    for (const policy of POLICIES) {
      const opts = { cacheBytes: 16 * PAGE, policy, prefetch: 'sequential', prefetchPages: 4, debug: true } as const;
      const local = createSpace(pool, 200 * PAGE, opts);
      const far = createAsyncSpace(remote, 200 * PAGE, opts);
      await modelRun(local, new Uint8Array(200 * PAGE), 300, 3 * PAGE, 11);
      await modelRun(far, new Uint8Array(200 * PAGE), 300, 3 * PAGE, 11);
      assert.equal(far.stats(), local.stats(), `${policy}: the decisions are shared, so are the counters`);
      local.close();
      await far.close();
    }
    const space = createAsyncSpace(remote, 4 * PAGE, { cacheBytes: 4 * PAGE, debug: true });
    await space.setU8(0, 9);
    const before = space.stats().hits;
    let settled = false;
    void space.getU8(1).then(() => { settled = true; });
    assert.is(space.stats().hits, before + 1, 'the hit ran at once');
    await Promise.resolve();
    assert.ok(settled, 'and its Promise was already settled');
    await space.close();
  });
  pool.close();
});

test('tcp: dirty pages are written back, clean pages never (counted at the server\'s transport)', async () => {
  for (const policy of ['lru', 'heat'] as const) {
    const t = new CountingTransport(memoryTransport(32 * MiB));
    await withTcp(async (remote) => {
      const space = createAsyncSpace(remote, 64 * PAGE, { cacheBytes: 8 * PAGE, policy, debug: true });
      await writeBackCheck(`tcp/${policy}`, space, t);
      await space.close();
    }, t);
  }
});

test('tcp: tiering with a near memory pool and a far tcp pool moves a hot set near and back', async () => {
  await withTcp(async (remote, srv) => {
    const farHeld = srv.pool.census().chunks.held;
    const near = memPool(memoryTransport(16 * MiB));
    const space = createAsyncSpace(near, 200 * PAGE, { ...TIER_OPTS, far: remote });
    await tieringRun(space, near);
    assert.is(srv.pool.census().chunks.held, farHeld, 'close freed the far pages on the server');
    near.close();
  });
});

test('a cache larger than the allocator core could keep (its 1 MiB held ~30,000 pages): 40,000 pages, no eviction', () => {
  const slots = 40_000;
  const pool = Pool.attach(memoryTransport(200 * MiB), { create: true, seed: 5, heartbeatMs: 0 });
  const space = createSpace(pool, 48_000 * PAGE, { cacheBytes: slots * PAGE, policy: 'linux' });
  assert.is(space.slots, slots);
  for (let p = 0; p < slots; p++) space.setU32(p * PAGE + 4, p ^ 0x5A5A);
  for (let p = 0; p < slots; p++) if (space.getU32(p * PAGE + 4) !== (p ^ 0x5A5A)) assert.unreachable(`page ${p}`);
  let s = space.stats();
  assert.is(s.evictions, 0, 'all 40,000 pages stayed cached');
  assert.is(s.resident, slots);
  assert.is(s.hits, slots, 'the second pass only hit');
  // One page more: now the policy evicts, and the evicted page comes back intact.
  space.setU32(slots * PAGE + 4, 7);
  s = space.stats();
  assert.is(s.evictions, 1);
  for (let p = 0; p < slots; p += 997) assert.is(space.getU32(p * PAGE + 4), p ^ 0x5A5A);
  assert.is(space.close(), slots + 1);
  pool.close();
});

// ------------------------------------------------------------ errors

test('bad arguments and closed spaces: typed errors', () => {
  const pool = memPool();
  const bad = (opts: unknown, bytes: unknown = 1 * MiB): void => {
    const what = `${String(bytes)} B, ${opts === undefined ? 'no options' : Object.keys(opts as object).join(',')}`;
    assert.throws(() => createSpace(pool, bytes as number, opts as SpaceOptions), is(InvalidArgumentError), what);
  };
  bad({ cacheBytes: 100 });
  bad({});
  bad(undefined);
  bad({ cacheBytes: 8 * PAGE, policy: 'fifo' });
  bad({ cacheBytes: 8 * PAGE, prefetch: 'random' });
  bad({ cacheBytes: 8 * PAGE, prefetch: 'sequential' }, 1 * MiB);
  bad({ cacheBytes: 8 * PAGE, halfLife: 0 });
  bad({ cacheBytes: 8 * PAGE, nearBytes: 4096 });
  bad({ cacheBytes: 8 * PAGE, far: pool });
  bad({ cacheBytes: '8GiB' }, 16 * 1024 * MiB);
  bad({ cacheBytes: 8 * PAGE }, 0);
  bad({ cacheBytes: 8 * PAGE }, -5);
  bad({ cacheBytes: 8 * PAGE }, '12 apples');
  const space = createSpace(pool, 10 * PAGE, { cacheBytes: '16KiB', debug: true });
  assert.throws(() => space.read(10 * PAGE - 3, 4), is(InvalidAddressError));
  assert.throws(() => space.getU32(-4), is(InvalidAddressError));
  assert.throws(() => space.setU8(10 * PAGE, 1), is(InvalidAddressError));
  assert.throws(() => space.getF64(1.5), is(InvalidAddressError));
  assert.throws(() => space.trace(), is(InvalidArgumentError));
  space.setU8(0, 1);
  assert.is(space.close(), 1);
  assert.is(space.close(), 0, 'close is idempotent');
  assert.throws(() => space.getU8(0), is(SpaceClosedError));
  assert.throws(() => space.write(0, new Uint8Array(1)), is(SpaceClosedError));
  assert.throws(() => space.flush(), is(SpaceClosedError));

  // The pool closes first: its close freed the pages, the space's close has nothing left to do,
  // and an access that needs the pool fails with the pool's error from then on.
  const orphan = createSpace(pool, 10 * PAGE, { cacheBytes: 2 * PAGE, debug: true });
  for (let p = 0; p < 3; p++) orphan.setU8(p * PAGE, p + 1);
  pool.close();
  assert.throws(() => orphan.getU8(0), is(PoolClosedError), 'page 0 was evicted: its fetch needs the pool');
  assert.throws(() => orphan.getU8(2 * PAGE), is(PoolClosedError), 'after a failed fetch even a cached page is refused');
  assert.is(orphan.close(), 0);
});

test('typed error classes of paging, and the async space\'s errors as rejections', async () => {
  for (const [cls, code] of [
    [SpaceIoError, 'SPACE_IO'], [SpaceTierError, 'SPACE_TIER'], [BenchError, 'BENCH'], [BenchMismatchError, 'BENCH_MISMATCH'],
    [PagingModuleMissingError, 'PAGING_MISSING'], [SpaceClosedError, 'SPACE_CLOSED'],
  ] as const) {
    const e = new cls('m');
    assert.ok(e instanceof DmemError, cls.name);
    assert.is(e.code, code);
    assert.is(e.name, cls.name);
  }
  await withTcp(async (remote) => {
    assert.throws(() => createSpace(remote as unknown as Pool, 8 * PAGE, { cacheBytes: 2 * PAGE }), is(InvalidArgumentError), 'a Space refuses a tcp pool');
    assert.throws(() => createAsyncSpace(remote, 8 * PAGE, { cacheBytes: 2 * PAGE, overlap: 'yes' as unknown as boolean }), is(InvalidArgumentError));
    const space = createAsyncSpace(remote, 8 * PAGE, { cacheBytes: 2 * PAGE, debug: true });
    await rejects(space.getU8(8 * PAGE), is(InvalidAddressError));
    await rejects(space.read(-1, 2), is(InvalidAddressError));
    for (let p = 0; p < 4; p++) await space.setU8(p * PAGE, p + 1);
    assert.is(await space.close(), 4);
    assert.is(await space.close(), 0, 'close is idempotent');
    await rejects(space.getU8(0), is(SpaceClosedError));
    await rejects(space.flush(), is(SpaceClosedError));
    // The pool closes under a space: the next miss rejects with the pool's error, and so does every access after it.
    const orphan = createAsyncSpace(remote, 8 * PAGE, { cacheBytes: 2 * PAGE, debug: true });
    for (let p = 0; p < 3; p++) await orphan.setU8(p * PAGE, p + 1);
    await remote.close();
    await rejects(orphan.getU8(0), is(PoolClosedError));
    await rejects(orphan.getU8(2 * PAGE), is(PoolClosedError));
    assert.is(await orphan.close(), 0);
  });
});

test('tiering: a cooled near page that cannot go back to an exhausted far pool is a SpaceTierError', () => {
  const near = memPool(memoryTransport(16 * MiB));
  const far = memPool(memoryTransport(8 * MiB));
  const pages = 64;
  const space = createSpace(near, pages * PAGE, { ...TIER_OPTS, far, cacheBytes: 4 * PAGE, nearBytes: 16 * PAGE, halfLife: 50, sweepEvery: 20 });
  for (let p = 0; p < pages; p++) space.setU8(p * PAGE, p);
  // Heat pages 0..7 until they are near (a far page's heat counts while it is cached: 4 accesses a visit).
  for (let i = 0; i < 400; i++) space.getU8(((i >> 2) % 8) * PAGE);
  const nearNow = space.stats().nearPages;
  assert.ok(nearNow > 0, `some pages moved near (${nearNow})`);
  // Another client of the far pool takes every chunk the promotions freed, and more.
  const grabbed: number[] = [];
  for (;;) {
    try { grabbed.push(far.allocClass(0)); } catch { break; }
  }
  // Only the other (far, allocated) pages now: the near ones cool and a sweep must demote them.
  let err: unknown;
  try {
    for (let i = 0; i < 2000; i++) space.getU8((8 + (i % (pages - 8))) * PAGE);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof SpaceTierError, `the sweep could not demote: ${String(err)}`);
  assert.throws(() => space.getU8(0), is(SpaceTierError), 'the space is broken from then on');
  for (const g of grabbed) far.free(g);
  space.close();
  near.close();
  far.close();
});

// ------------------------------------------------------------ crash

test('a client holding a space is killed: recovery reclaims its pages', async () => {
  await withPoolName('space-kill', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: 64 * MiB, debug: true });
    admin.setLeaseMs(300);
    const before = admin.census().chunks.held;
    const pages = 50;
    const child = fork(HOLDER, [name, String(pages)], { stdio: 'inherit' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const m = await new Promise<{ clientId: number; allocated: number; pid: number }>((resolve, reject) => {
        child.once('message', (msg) => resolve(msg as { clientId: number; allocated: number; pid: number }));
        child.once('exit', (code) => reject(new Error(`holder exited early (${code})`)));
      });
      assert.is(m.allocated, pages);
      assert.is(admin.census().chunks.held - before, pages, 'the holder\'s space holds one chunk per page');
      child.kill('SIGKILL');
      await exited;
      const monitor = new LeaseMonitor(admin);
      const deadline = Date.now() + 10_000;
      let recovered = false;
      while (!recovered && Date.now() < deadline) {
        recovered = monitor.sweep().recovered.some((e) => e.client === m.clientId && e.pid === m.pid);
        if (!recovered) await sleep(50);
      }
      assert.ok(recovered, 'the killed holder was recovered');
      assert.is(admin.census().chunks.held, before, 'its pages are free again');
      assert.ok(admin.fsck().clean);
    } finally {
      child.kill('SIGKILL');
      admin.close();
    }
  });
});

test('a client holding a tcp space is killed: the server reclaims its pages after the lease', async () => {
  await withTcp(async (_remote, srv) => {
    const before = srv.pool.census().chunks.held;
    const pages = 40;
    const child = fork(HOLDER, [srv.url, String(pages), TOKEN], { stdio: 'inherit' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const m = await new Promise<{ allocated: number }>((resolve, reject) => {
        child.once('message', (msg) => resolve(msg as { allocated: number }));
        child.once('exit', (code) => reject(new Error(`holder exited early (${code})`)));
      });
      assert.is(m.allocated, pages);
      assert.is(srv.pool.census().chunks.held - before, pages, 'the holder\'s space holds one chunk per page on the server');
      child.kill('SIGKILL');
      await exited;
      const deadline = Date.now() + 15_000;
      while (srv.pool.census().chunks.held !== before && Date.now() < deadline) await sleep(100);
      assert.is(srv.pool.census().chunks.held, before, 'its pages are free again (the server fenced the cut session after its lease)');
      assert.ok(srv.pool.fsck().clean);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

test.run();
