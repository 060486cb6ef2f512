/**
 * The hot path's guesses (issue 10): frees CAS the owner-log entry and the
 * span header from what this client last saw instead of reading them first,
 * heap tags are written by a CAS of the tag word from a per-slab shadow, and
 * a released full slab becomes a candidate again only once a bitmap word
 * has a few free objects. These tests make every guess stale on purpose
 * (another client frees and reallocates behind this client's back) and
 * check that nothing is handed out twice, every double free is still
 * refused, and everything comes back (census, heap stats, fsck). And the
 * JS layer's hot path: the lease check still runs before every call
 * (a revocation anywhere in the 64-call renewal cycle is refused by the
 * next call), every argument error is unchanged, and the block cache's
 * fast path finds an evicted guess's class in the owner-log word without
 * ever acting on a word that changed after it read it.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DoubleFreeError, InvalidAddressError, InvalidArgumentError, LeaseExpiredError, openPool } from '../src/index.js';
import { is, usage, withPoolName } from './helpers.js';


test('stale free guesses: blocks freed and reallocated by another client are never freed twice or handed out twice', async () => {
  await withPoolName('hot-guess', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '64MiB' });
    const b = await openPool(`shm:${name}`, { create: false });
    try {
      for (const cls of [0, 2, 4]) {
        // A allocates (its guesses now say HELD(A, cls) for these chunks and
        // name the span words A wrote); B frees them all and takes the same
        // memory back, so every guess of A is stale.
        const fromA = Array.from({ length: 64 }, () => a.allocClass(cls));
        for (const g of fromA) b.free(g);
        for (const g of fromA) assert.throws(() => a.free(g), is(DoubleFreeError), `class ${cls}: A's stale guess must not free ${g} again`);
        const fromB = Array.from({ length: 64 }, () => b.allocClass(cls));
        const live = new Set(fromB);
        assert.is(live.size, fromB.length, 'B got distinct blocks');
        // A allocates while B holds: never one of B's blocks.
        const more = Array.from({ length: 64 }, () => a.allocClass(cls));
        for (const g of more) assert.not.ok(live.has(g), `class ${cls}: A was handed B's block ${g}`);
        // A frees B's blocks (its guess for those chunks is stale or absent)
        // and B frees A's: every free succeeds exactly once.
        for (const g of fromB) a.free(g);
        for (const g of more) b.free(g);
        for (const g of [...fromB, ...more]) assert.throws(() => b.free(g), is(DoubleFreeError));
      }
      assert.is(usage(a).chunks, 0, 'every chunk came back');
      const f = a.fsck();
      assert.ok(f.clean, JSON.stringify(f));
    } finally {
      a.close();
      b.close();
    }
  });
});

test('heap tags by CAS: objects freed by another client, refused double frees, a full slab released and refilled; all counted and returned', async () => {
  await withPoolName('hot-heap', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '64MiB' });
    const b = await openPool(`shm:${name}`, { create: false });
    try {
      for (const size of [64, 256, 1024]) {
        const objs = Array.from({ length: 600 }, () => a.heap.alloc(size));
        assert.is(new Set(objs).size, objs.length, `${size} B: distinct objects`);
        // A frees half to its cache (tag CAS from the shadow), B frees the
        // other half (bitmap CAS; A's shadow of those tag words is kept).
        for (let i = 0; i < objs.length; i++) (i % 2 === 0 ? a : b).heap.free(objs[i]);
        for (const g of objs.slice(0, 40)) assert.throws(() => a.heap.free(g), is(DoubleFreeError), `${size} B: double free by the taker refused`);
        for (const g of objs.slice(0, 40)) assert.throws(() => b.heap.free(g), is(DoubleFreeError), `${size} B: double free by another client refused`);
        const u = usage(a);
        assert.is(u.objects, 0, `${size} B: nothing handed out after the frees`);
        // Allocate again through the cache and refills: distinct, and none
        // that B holds meanwhile.
        const held = new Set(Array.from({ length: 200 }, () => b.heap.alloc(size)));
        const again = Array.from({ length: 600 }, () => a.heap.alloc(size));
        assert.is(new Set(again).size, again.length, `${size} B: distinct after reuse`);
        for (const g of again) assert.not.ok(held.has(g), `${size} B: A was handed B's object ${g}`);
        assert.is(usage(a).objects, 800, `${size} B: census counts every handed-out object`);
        for (const g of again) b.heap.free(g);
        for (const g of held) a.heap.free(g);
        a.heap.flush();
        b.heap.flush();
        a.heap.trim();
        assert.equal(usage(a), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, `${size} B: every object, cache and slab came back`);
      }
    } finally {
      a.close();
      b.close();
    }
  });
});

test('a released full slab is not stranded: freeing its objects one by one (below and past the refill threshold) lets trim return it', async () => {
  await withPoolName('hot-full', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '64MiB' });
    const b = await openPool(`shm:${name}`, { create: false });
    try {
      const per = a.heap.stats().perClass.find((c) => c.objectBytes === 1024)!.objectsPerSlab;
      // Fill exactly one slab and a bit, then release A's slabs: the first
      // one is released full.
      const objs = Array.from({ length: per + 3 }, () => a.heap.alloc(1024));
      a.heap.flush();
      // Two frees: below the threshold, the slab stays hinted full, so a new
      // allocation by B does not take it (it may take the partly used one).
      b.heap.free(objs[0]);
      b.heap.free(objs[1]);
      const x = b.heap.alloc(1024);
      assert.not.ok(objs.includes(x) && x !== objs[0] && x !== objs[1], 'B never gets an object A still holds');
      b.heap.free(x);
      // Free the rest: the slab comes free entirely and trim returns it.
      for (const g of objs.slice(2)) b.heap.free(g);
      b.heap.flush();
      a.heap.trim();
      assert.equal(usage(a), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'the once-full slab and the other came back');
    } finally {
      a.close();
      b.close();
    }
  });
});

test('the lease check runs before every operation: a revocation at any point of the 64-call renewal cycle is refused by the very next alloc, allocClass or free, before the fast path pops or pushes', async () => {
  await withPoolName('hot-fence-cycle', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '64MiB' });
    try {
      // r: the calls this client made, mod 64, before the call under test.
      // r = 63 makes it a 64th call, whose quick check (lease.ready) defers
      // the slot read to settle(); 62 and 0 are the calls around it.
      for (const r of [0, 1, 62, 63]) {
        for (const op of ['alloc', 'allocClass', 'free'] as const) {
          const a = await openPool(`shm:${name}`, { create: false, blockCache: 256, heartbeatMs: 0 });
          const inner = a as unknown as { fast: { allocs: Float64Array; frees: Float64Array } | null; lease: { ops: number } };
          const fast = inner.fast;
          assert.ok(fast !== null, 'an shm pool with a block cache has the JS fast path');
          // Single calls that pass the check (an allocation, then its free)
          // until the count is right: the cache then has blocks to pop and
          // room to push, and `mine` is a block this client holds.
          const mine = a.allocClass(0);
          let extra: number | null = null;
          for (let i = 0; i < 70 || (inner.lease.ops & 63) !== r; i++) {
            if (extra === null) extra = a.allocClass(0);
            else { a.free(extra); extra = null; }
          }
          const allocs = fast!.allocs[0];
          const frees = fast!.frees[0];
          assert.ok(allocs > 0 && frees > 0, 'the calls before went through the fast path');
          const slot = admin.clientSlot(a.clientId);
          assert.ok(admin.revokeClient(slot.id, slot.gen));
          const run = op === 'alloc' ? () => a.alloc(4096) : op === 'allocClass' ? () => a.allocClass(0) : () => a.free(mine);
          assert.throws(run, is(LeaseExpiredError), `call ${r} + 1 (mod 64): ${op} finds the revocation`);
          assert.throws(run, is(LeaseExpiredError), `call ${r} + 1 (mod 64): and the one after it too`);
          assert.is(fast!.allocs[0], allocs, `call ${r} + 1 (mod 64): ${op} popped nothing`);
          assert.is(fast!.frees[0], frees, `call ${r} + 1 (mod 64): ${op} pushed nothing`);
          a.close();
          assert.ok(admin.recoverClient(slot.id) !== null, 'recovery takes back what it held and cached');
        }
      }
      assert.is(usage(admin).chunks, 0, 'every chunk came back');
      assert.ok(admin.fsck().clean);
    } finally {
      admin.close();
    }
  });
});

test('the hot path keeps every argument check: bad classes, sizes and gaddrs are refused with the same errors, with and without the block cache', async () => {
  await withPoolName('hot-args', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '64MiB', blockCache: 256 });
    const b = await openPool(`shm:${name}`, { create: false, blockCache: 0 });
    try {
      for (const p of [a, b]) {
        // Blocks of every cached class in the cache (for a), so that a check
        // the fast path skipped would hand one out instead of throwing.
        for (let cls = 0; cls <= 4; cls++) p.free(p.allocClass(cls));
        for (const cls of [-1, 10, 1.5, NaN, '0', '4', 0n, null, undefined, true, { valueOf: () => 0 }]) {
          assert.throws(() => p.allocClass(cls as never), (e: unknown) => e instanceof InvalidArgumentError && /allocClass: cls must be an integer from 0 to 9/.test((e as Error).message), `allocClass(${String(cls)})`);
        }
        for (const bytes of [0, -1, 1.5, NaN, '4096', 4096n]) {
          assert.throws(() => p.alloc(bytes as never), is(InvalidArgumentError), `alloc(${String(bytes)})`);
        }
        assert.throws(() => p.free('4096' as never), (e: unknown) => e instanceof InvalidArgumentError && /gaddr must be a number/.test((e as Error).message));
        assert.throws(() => p.free(4096n as never), is(InvalidArgumentError));
        for (const g of [0, -4096, 1.5, NaN, Infinity, 2 ** 53]) {
          assert.throws(() => p.free(g), (e: unknown) => e instanceof InvalidAddressError && /is not a gaddr/.test((e as Error).message), `free(${g})`);
        }
        const g = p.allocClass(4);
        assert.throws(() => p.free(g + 2 ** 40), (e: unknown) => e instanceof InvalidAddressError && /is on node 1, this pool is node 0/.test((e as Error).message), 'a gaddr of another node');
        assert.throws(() => p.free(g + 4096), is(InvalidAddressError), 'not the start of the block (the fast path refuses it, the core names it)');
        p.free(g);
        assert.throws(() => p.free(g), is(DoubleFreeError), 'a double free');
        // The classes the cache does not hold (5..9) still allocate.
        const big = p.allocClass(9);
        p.free(big);
      }
    } finally {
      a.close();
      b.close();
    }
    const c = await openPool(`shm:${name}`, { create: false });
    try {
      assert.is(usage(c).chunks, 0, 'every chunk came back');
    } finally {
      c.close();
    }
  });
});

/** The JS fast path's private state a test looks at (src/blockcache.ts). */
interface FastPathInside {
  halves: Int32Array;
  logWord0: number;
  dataOffset: number;
  guess: Uint8Array;
  guessMask: number;
  frees: Float64Array;
}

test('a free whose class guess was evicted from the direct-mapped table is cached by the fast path from its owner-log word; a word changed after that read loses the CAS and changes nothing', async () => {
  await withPoolName('hot-evicted', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '64MiB', blockCache: 256 });
    const b = await openPool(`shm:${name}`, { create: false, blockCache: 0 });
    const fast = (a as unknown as { fast: FastPathInside | null }).fast;
    assert.ok(fast !== null, 'an shm pool with a block cache has the JS fast path');
    const chunkOf = (g: number): number => (g % 2 ** 40 - fast!.dataOffset) / 4096;
    // Another chunk with the same low bits took the guess slot and cleared it
    // (what a free of that chunk does): the guess says nothing.
    const evict = (g: number): void => { fast!.guess[chunkOf(g) & fast!.guessMask] = 0; };
    const realLoad = Atomics.load;
    try {
      for (const cls of [0, 3, 4]) {
        const g = a.allocClass(cls);
        evict(g);
        const frees = fast!.frees[cls];
        const cached = a.stats().cache.perClass[cls];
        a.free(g);
        assert.is(fast!.frees[cls], frees + 1, `class ${cls}: the fast path cached it`);
        assert.is(a.stats().cache.perClass[cls], cached + 1);
        assert.throws(() => a.free(g), is(DoubleFreeError), `class ${cls}: a cached block is freed already`);
        assert.is(a.allocClass(cls), g, `class ${cls}: and handed out again`);

        // Frozen between that read and its CAS: B frees the block meanwhile.
        evict(g);
        const at = 2 * (fast!.logWord0 + chunkOf(g));
        let paused = 0;
        (Atomics as { load: typeof Atomics.load }).load = ((arr: Int32Array, i: number): number => {
          const v = realLoad(arr, i);
          if (arr === fast!.halves && i === at && paused++ === 0) b.free(g);
          return v;
        }) as typeof Atomics.load;
        const before = fast!.frees[cls];
        assert.throws(() => a.free(g), is(DoubleFreeError), `class ${cls}: the CAS lost, and the core finds the block freed`);
        (Atomics as { load: typeof Atomics.load }).load = realLoad;
        assert.is(paused, 1, `class ${cls}: the fast path read the word once`);
        assert.is(fast!.frees[cls], before, `class ${cls}: nothing was cached`);
        assert.is(a.stats().cache.perClass[cls], cached, `class ${cls}: the cache holds what it held`);
      }
    } finally {
      (Atomics as { load: typeof Atomics.load }).load = realLoad;
      a.close();
      b.close();
    }
    const c = await openPool(`shm:${name}`, { create: false });
    try {
      assert.is(usage(c).chunks, 0, 'every chunk came back');
      assert.ok(c.fsck().clean);
    } finally {
      c.close();
    }
  });
});

test.run();
