/**
 * The object heap's fast paths (issue 10): where the core reaches the pool
 * directly (a direct window, src/core.ts mapDirect: cxl-shm by default) the
 * common heap alloc and free are one core call each with one CAS
 * (assembly/heap.ts, heapAllocDirect); on another pool mapped into the
 * process (memory:, or `direct: false`) they run in JS with one CAS
 * (src/heapcache.ts). Checked here, for both: that the path is taken; that a seeded mix of
 * allocs and frees gives the census a reference model predicts (objects,
 * cached, requested bytes) with double frees, cached objects and interior
 * addresses refused; that an object this client took goes back to its
 * cache from any slab while other clients' frees clear bitmap bits; that
 * close gives everything back; and that a client paused between its lease
 * check and the pop's CAS, recovered meanwhile and its objects claimed by
 * another client, hands out nothing.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { processState } from '../src/proc.js';
import type { Plan } from './fixtures/recovery-child.js';
import { Child, killAll, sleep, type Msg } from './harness.js';
import { DoubleFreeError, InvalidAddressError, openPool, type Pool } from '../src/index.js';
import { Status } from '../src/abi.js';
import { Prng } from '../src/bench/prng.js';
import { dmem, is, jsonLines, usage, withPoolName } from './helpers.js';

interface FastPath {
  alloc(bytes: number): number;
  free(off: number): boolean;
}

/** The heap's host fast path (null when the pool has none). */
function fastOf(p: Pool): FastPath | null {
  return (p.heap as unknown as { fast: FastPath | null }).fast;
}

/** The two fast paths of an shm pool: the core's direct window (the default) and the host's (`direct: false`). */
const PATHS = [
  { path: 'direct', opts: {} },
  { path: 'host', opts: { direct: false } },
] as const;

/** The core's exports these tests call as a paused client would resume into them. */
interface CoreHeap {
  heapAllocDirect(bytes: number): number;
  heapAlloc(bytes: number): number;
  heapFree(off: number): number;
  heapFreeDirect(off: number): number;
  heapRelease(): number;
  heapCachedObjects(): number;
}

function coreOf(p: Pool): CoreHeap {
  return (p.heap as unknown as { x: CoreHeap }).x;
}

test('the heap takes its fast path: the direct window on an shm pool, the host\'s on a memory: pool and with direct: false', async () => {
  for (const [uri, opts, path] of [['memory:', {}, 'host'], ['shm:', { direct: false }, 'host'], ['shm:', {}, 'direct']] as const) {
    await withPoolName('hc-taken', async (name) => {
      const p = await openPool(uri === 'shm:' ? `shm:${name}` : uri, { size: '32MiB', ...opts });
      try {
        assert.is(p.heap.fastPathOps.path, path, `${uri} ${JSON.stringify(opts)}: the ${path} path`);
        const g = Array.from({ length: 100 }, () => p.heap.alloc(100));
        for (const x of g) p.heap.free(x);
        for (let i = 0; i < 100; i++) p.heap.free(p.heap.alloc(100));
        const ops = p.heap.fastPathOps;
        assert.ok(ops.allocs >= 190 && ops.frees >= 190, `${uri} ${JSON.stringify(opts)}: most of 200 pairs on the fast path: ${JSON.stringify(ops)}`);
      } finally {
        p.close();
      }
    });
  }
});

for (const { path, opts } of PATHS) {
  for (const windowBytes of [undefined, 2 ** 20]) {
    const mapped = windowBytes === undefined ? 'one window' : `${windowBytes / 2 ** 20} MiB windows (slab metadata across a window boundary goes to the core)`;
    test(`${path} path: a seeded mix of sizes 1 B .. 3 KiB against a reference model: census, requested bytes, refusals (${mapped})`, () => modelRun(windowBytes, opts));
  }
}

async function modelRun(windowBytes: number | undefined, opts: { direct?: boolean }): Promise<void> {
  await withPoolName('hc-model', async (name) => {
    const p = await openPool(`shm:${name}`, { size: '64MiB', windowBytes, ...opts });
    try {
      assert.is(p.transport.mapped!.windowArrays().words.length > 1, windowBytes !== undefined, 'the mapping has the windows asked for');
      const sizes = p.heap.classSizes;
      const classOf = (n: number): number => sizes.findIndex((s) => s >= n);
      const rng = new Prng(7);
      const live = new Map<number, number>(); // gaddr -> requested bytes
      const freed: number[] = [];
      for (let step = 0; step < 20_000; step++) {
        if (live.size > 0 && rng.below(100) < 48) {
          const keys = [...live.keys()];
          const g = keys[rng.below(keys.length)];
          p.heap.free(g);
          live.delete(g);
          freed.push(g);
        } else {
          const n = 1 + rng.below(3072);
          const g = p.heap.alloc(n);
          assert.not.ok(live.has(g), `step ${step}: ${g} is handed out twice`);
          live.set(g, n);
        }
        if (step % 2000 === 0 && freed.length > 0) {
          // A freed object that is not live again: a double free, whether it
          // sits in this client's cache or went back to its bitmap.
          const g = freed.find((x) => !live.has(x));
          if (g !== undefined) assert.throws(() => p.heap.free(g), is(DoubleFreeError), `step ${step}: double free refused`);
          const [some] = live.keys();
          assert.throws(() => p.heap.free(some + 8), is(InvalidAddressError), `step ${step}: an interior address is refused`);
        }
      }
      const st = p.heap.stats();
      const objects = new Array<number>(sizes.length).fill(0);
      const requested = new Array<number>(sizes.length).fill(0);
      for (const n of live.values()) {
        objects[classOf(n)]++;
        requested[classOf(n)] += n;
      }
      assert.equal(st.perClass.map((c) => c.objects), objects, 'objects per class as the model says');
      assert.equal(st.perClass.map((c) => c.requestedBytes), requested, 'requested bytes per class as the model says');
      assert.is(st.perClass.reduce((a, c) => a + c.cached, 0), st.cachedHere, 'every cached object is in this client\'s cache');
      const ops = p.heap.fastPathOps;
      // The direct window is the first window only: with 1 MiB windows it
      // holds a slab or none, as the random start section falls, and the
      // core's general path carries the rest (the census checks above are
      // what that case is for).
      if (ops.path !== 'direct' || windowBytes === undefined) assert.ok(ops.allocs > 9000 && ops.frees > 9000, `the fast path carried most of it: ${JSON.stringify(ops)}`);
      for (const g of live.keys()) p.heap.free(g);
      p.heap.flush();
      p.heap.trim();
      assert.equal(usage(p), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'everything comes back');
      assert.ok(p.fsck().clean);
    } finally {
      p.close();
    }
  });
}

for (const { path, opts } of PATHS) test(`${path} path: an object its client took goes back to that client's cache from any slab; another client's free clears its bit; close returns it all`, async () => {
  await withPoolName('hc-slabs', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '32MiB', ...opts });
    const b = await openPool(`shm:${name}`, { create: false, ...opts });
    try {
      const perSlab = a.heap.stats().perClass[0].objectsPerSlab;
      // Three slabs' worth: the first slab is no longer A's active one.
      const mine = Array.from({ length: 3 * perSlab }, () => a.heap.alloc(64));
      assert.ok(a.heap.stats().perClass[0].slabs >= 3);
      for (const g of mine.slice(0, 40)) a.heap.free(g);
      let st = a.heap.stats();
      assert.is(st.cachedHere, 40, 'the 40 objects of A\'s first slab are in A\'s cache, not back in the bitmap');
      assert.is(st.perClass[0].cached, 40);
      assert.is(st.perClass[0].objects, 3 * perSlab - 40);
      // B frees 30 of A's objects: their bits clear, nobody caches them.
      for (const g of mine.slice(100, 130)) b.heap.free(g);
      st = b.heap.stats();
      assert.is(st.cachedHere, 0, 'B caches nothing of A\'s');
      assert.is(st.perClass[0].objects, 3 * perSlab - 70);
      assert.is(st.perClass[0].cached, 40);
      for (const g of [mine[0], mine[100]]) assert.throws(() => b.heap.free(g), is(DoubleFreeError), 'cached or freed: either is a double free');
      const stat = jsonLines(dmem('stat', '--pool', name, '--json').stdout)[0] as { heap: { objects: number; cached: number; slabs: number } };
      assert.equal(stat.heap, { ...stat.heap, objects: 3 * perSlab - 70, cached: 40 }, 'dmem stat --json counts the same');
      assert.match(dmem('stat', '--pool', name).stdout, new RegExp(`heap objects\\s+${3 * perSlab - 70} handed out .*, 40 in client caches`), 'dmem stat says so');
      // A's next allocs come out of its cache first.
      const again = Array.from({ length: 40 }, () => a.heap.alloc(64));
      assert.equal(new Set(again), new Set(mine.slice(0, 40)), 'the 40 cached objects are handed out again');
      // 100 frees in a row: the full cache (64) spills its older half to the
      // bitmaps, on the fast path too: 64, 32 + 32, 32 + 32, 32 + 4 = 36 left.
      const frees0 = a.heap.fastPathOps.frees;
      for (const g of mine.slice(1000, 1100)) a.heap.free(g);
      assert.is(a.heap.fastPathOps.frees - frees0, 100, 'every free, spills included, on the fast path');
      st = a.heap.stats();
      assert.is(st.cachedHere, 36);
      assert.is(st.perClass[0].cached, 36);
      assert.is(st.perClass[0].objects, 3 * perSlab - 30 - 100, 'the spilled objects are free');
      const back = Array.from({ length: 100 }, () => a.heap.alloc(64));
      assert.is(new Set([...back, ...mine.slice(1100)]).size, 100 + mine.length - 1100, 'none of them is handed out twice');
      a.close();
      b.heap.trim();
      assert.equal(usage(b), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'A closed: its objects and cache are gone');
      assert.ok(b.fsck().clean);
    } finally {
      a.close();
      b.close();
    }
  });
});

/** A client whose cache holds 20 freed objects on top of what its refill claimed, revoked and recovered by `admin` meanwhile. */
async function recoveredWithCache(name: string, opts: { direct?: boolean }): Promise<{ admin: Pool; a: Pool; fast: FastPath | null; x: CoreHeap; freed: Set<number>; held: number[] }> {
  const admin = await openPool(`shm:${name}`, { size: '32MiB' });
  const a = await openPool(`shm:${name}`, { create: false, heartbeatMs: 0, ...opts });
  // The step under test is reached as a paused client would reach it: its
  // guard() passed before the pause, so the test calls the fast path (or the
  // core) itself.
  const fast = fastOf(a);
  assert.is(fast !== null, opts.direct === false, 'the host fast path exactly where the direct window is off');
  const got = Array.from({ length: 30 }, () => a.heap.alloc(64));
  // A refill claims a bitmap word's free objects: some are cached already.
  const before = a.heap.stats().cachedHere;
  for (const g of got.slice(0, 20)) a.heap.free(g);
  assert.is(a.heap.stats().cachedHere, before + 20, 'the 20 freed objects are on top of A\'s cache');
  const slot = admin.clientSlot(a.clientId);
  assert.ok(admin.revokeClient(slot.id, slot.gen));
  const r = admin.recoverClient(slot.id);
  assert.ok(r !== null && r.objects >= 30, `recovery freed A's 10 objects and its cache: ${JSON.stringify(r)}`);
  return { admin, a, fast, x: coreOf(a), freed: new Set(got.slice(0, 20).map((g) => g % 2 ** 40)), held: got.slice(20) };
}

/** Frees what `admin` holds and checks the pool is empty and clean. */
function drain(admin: Pool, held: number[]): void {
  for (const g of held) admin.heap.free(g);
  admin.heap.flush();
  admin.heap.trim();
  assert.equal(usage(admin), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'everything is free');
  assert.ok(admin.fsck().clean);
}

/**
 * Another client (`admin`) allocates 64 B objects, each stamped 0xEE, until
 * it holds every object at the pool offsets `targets` (its refills claim
 * them again and write its own tags). Returns what it allocated.
 */
function claimStamped(admin: Pool, targets: Set<number>): number[] {
  const fill: number[] = [];
  const claimed = new Set<number>();
  while (claimed.size < targets.size && fill.length < 20_000) {
    const g = admin.heap.alloc(64);
    admin.write(g, new Uint8Array(64).fill(0xEE));
    fill.push(g);
    if (targets.has(g % 2 ** 40)) claimed.add(g % 2 ** 40);
  }
  assert.is(claimed.size, targets.size, 'the other client holds every object of the stale cache');
  return fill;
}

/** Every object of `fill` still holds the 0xEE stamp of claimStamped. */
function assertStamped(admin: Pool, fill: number[]): void {
  for (const g of fill) assert.ok(admin.read(g, 64).every((v) => v === 0xEE), 'the other client\'s objects are intact');
}

/**
 * The pop of a paused client resumed on `path`: the host's pops each lose
 * their CAS (-1, nothing handed out) and the core's then refuses; the
 * direct window's drops every stale entry and its refill refuses. Either
 * way: LEASE_EXPIRED, and every stale entry is gone.
 */
function resumedPops(path: 'direct' | 'host', fast: FastPath | null, x: CoreHeap): void {
  assert.ok(x.heapCachedObjects() >= 20, 'the stale cache is still there');
  if (path === 'host') {
    for (let i = 0; i < 20; i++) assert.is(fast!.alloc(64), -1, `pop ${i} hands out nothing`);
    // The core's pop, where a resumed call goes next, drops every stale
    // entry; its refill then finds its slab released and takes no other
    // one: the lease is not live.
    assert.is(x.heapAlloc(64), Status.LEASE_EXPIRED, 'the core path refuses: lease expired');
  } else {
    assert.is(x.heapAllocDirect(64), Status.LEASE_EXPIRED, 'every pop of the direct path lost its CAS, and its refill refuses: lease expired');
  }
  assert.is(x.heapCachedObjects(), 0, 'every stale entry was dropped');
}

for (const { path, opts } of PATHS) test(`${path} path: a pop paused between the lease check and its CAS, resumed after the client was recovered, hands out nothing of the stale cache, claimed by another client or not`, async () => {
  await withPoolName('hc-paused', async (name) => {
    const { admin, a, fast, x, held } = await recoveredWithCache(name, opts);
    try {
      // A free of an object A held, resumed the same way: recovery freed it
      // and, the slab then empty and unowned, the slab itself, so the fast
      // path finds no slab there and changes nothing, and the core says the
      // object is free already.
      if (path === 'host') assert.is(fast!.free(held[0] % 2 ** 40), false, 'the host fast path\'s free changes nothing');
      else assert.is(x.heapFreeDirect(held[0] % 2 ** 40), Status.DOUBLE_FREE, 'the direct path finds it free already');
      assert.is(x.heapFree(held[0] % 2 ** 40), Status.DOUBLE_FREE, 'the core finds it free already');
      assert.is(admin.heap.stats().perClass[0].cached, 0, 'it went into no cache');
      // Nobody has claimed the objects again: recovery set their tags to
      // "nobody's", so every pop of the stale cache loses its CAS.
      resumedPops(path, fast, x);
      const fill = Array.from({ length: 100 }, () => admin.heap.alloc(64));
      assert.is(admin.heap.stats().perClass[0].objects, 100, 'only the other client\'s objects are handed out');
      assert.throws(() => a.heap.alloc(64), (e: unknown) => (e as { code?: string }).code === 'LEASE_EXPIRED', 'its next call finds the revocation');
      drain(admin, fill);
    } finally {
      a.close();
      admin.close();
    }
  });
});

for (const { path, opts } of PATHS) test(`${path} path: the same paused pop after another client claimed every object of the stale cache: it loses its CAS, the other client's objects are intact`, async () => {
  await withPoolName('hc-claimed', async (name) => {
    const { admin, a, fast, x, freed } = await recoveredWithCache(name, opts);
    try {
      // Another client claims those objects again (its refills write its
      // own tags), and stamps every one.
      const fill = claimStamped(admin, freed);
      resumedPops(path, fast, x);
      assertStamped(admin, fill);
      assert.throws(() => a.heap.alloc(64), (e: unknown) => (e as { code?: string }).code === 'LEASE_EXPIRED', 'its next call finds the revocation');
      drain(admin, fill);
    } finally {
      a.close();
      admin.close();
    }
  });
});

/** The byte offsets in class 0's cache of the host fast path (core memory), bottom of the stack first. */
function cachedOffsets(fast: FastPath): number[] {
  const f = fast as unknown as { len: Uint32Array; slotOffset(s: number): number };
  return Array.from({ length: f.len[0] }, (_, j) => f.slotOffset(2 * j));
}

test('host path: a spill and a flush resumed after the client was recovered and another client claimed its cached objects free none of them (host fast path and core)', async () => {
  await withPoolName('hc-spill', async (name) => {
    const { admin, a, fast, x } = await recoveredWithCache(name, { direct: false });
    try {
      const stale = new Set(cachedOffsets(fast!));
      assert.ok(stale.size >= 32, `a stale cache of at least half the capacity: ${stale.size}`);
      const fill = claimStamped(admin, stale);
      const objects = admin.heap.stats().perClass[0].objects;
      // The fast path's spill (reached by a free into a full cache), then
      // the core's flush of what is left (close, flush): each object's tag
      // CAS from "cached by me" loses, so no bit is cleared.
      assert.ok((fast as unknown as { spill(k: number): boolean }).spill(0), 'the spill ran');
      assert.is(x.heapRelease(), 0, 'the flush returns nothing');
      assert.is(admin.heap.stats().perClass[0].objects, objects, 'every object the other client holds is still handed out');
      assertStamped(admin, fill);
      drain(admin, fill);
    } finally {
      a.close();
      admin.close();
    }
  });
});

for (const { path, opts } of PATHS) test(`${path} path: a refill resumed after the client was recovered claims nothing from the slab recovery released`, async () => {
  await withPoolName('hc-refill', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB' });
    const a = await openPool(`shm:${name}`, { create: false, heartbeatMs: 0, ...opts });
    try {
      const held: number[] = [a.heap.alloc(64)];
      while (a.heap.stats().cachedHere > 0) held.push(a.heap.alloc(64));
      const slot = admin.clientSlot(a.clientId);
      assert.ok(admin.revokeClient(slot.id, slot.gen));
      assert.ok(admin.recoverClient(slot.id) !== null);
      const before = admin.heap.stats().perClass[0];
      assert.is(before.objects + before.cached, 0, 'recovery freed all of A\'s objects');
      // The cache is empty: the alloc refills, as a paused one resumed
      // would, from its old active slab, which it no longer owns.
      if (path === 'host') assert.is(fastOf(a)!.alloc(64), -1, 'nothing handed out');
      else assert.is(coreOf(a).heapAllocDirect(64), Status.LEASE_EXPIRED, 'nothing handed out: lease expired');
      const after = admin.heap.stats().perClass[0];
      assert.is(after.objects + after.cached, 0, 'nothing claimed');
      drain(admin, []);
    } finally {
      a.close();
      admin.close();
    }
  });
});

// ------------------------------------------- a client frozen at the exact step

const CHILD = fileURLToPath(new URL('./fixtures/recovery-child.js', import.meta.url));

/**
 * Resumes `child`, stopped at its armed crash point (DMEM_CRASH_ACTION=stop),
 * until it reports the outcome of its action ('survived' or 'error'); it may
 * stop there again on the way (the general path behind a fast one passes
 * the same point), and is resumed each time.
 */
async function resumeToOutcome(child: Child): Promise<Msg> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const m = child.messages.find((x) => x.type === 'survived' || x.type === 'error');
    if (m !== undefined) return m;
    assert.ok(Date.now() < deadline, `no outcome: ${child.describe()}`);
    if (processState(child.pid) === 'T') child.proc.kill('SIGCONT');
    await sleep(5);
  }
}

/** Waits until `child` is stopped at its crash point. */
async function stoppedAt(child: Child, point: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (processState(child.pid) !== 'T') {
    assert.ok(Date.now() < deadline, `the child did not stop at ${point}: ${child.describe()}`);
    await sleep(5);
  }
}

/** The child's environment for each path (a crash point turns the host fast path off: the core's general path is under test then). */
const FROZEN_PATHS = [
  { path: 'direct', env: {} },
  { path: 'core', env: { DMEM_DIRECT: '0' } },
] as const;

for (const { path, env } of FROZEN_PATHS) test(`${path} path, a child frozen at heap.pop (its cache read, before the tag CAS), recovered by force, its cached objects claimed by another client: resumed, it hands out nothing`, async () => {
  await withPoolName('hc-frozen-pop', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB' });
    try {
      // 100 objects taken (a refill claims a bitmap word of 64 at a time:
      // 28 are left cached), then 30 freed into the cache (58, no spill).
      const plan: Plan = { prep: [{ h: 64, n: 100 }, { hf: 30 }], action: [{ h: 64 }] };
      // Every heap alloc passes heap.pop once: the 100 of the prep are let through.
      const child = new Child(CHILD, [name, JSON.stringify(plan)], { ...env, DMEM_CRASH_POINT: 'heap.pop:100', DMEM_CRASH_ACTION: 'stop' });
      const prepared = await child.take('prepared');
      const stale = new Set((prepared.freedObjects as number[]).map((g) => g % 2 ** 40));
      assert.is(stale.size, 30);
      assert.is(admin.heap.stats().perClass[0].cached, 58, `the 30 freed objects are in the child's cache: ${JSON.stringify(admin.heap.stats().perClass[0])}`);
      child.send('go');
      await stoppedAt(child, 'heap.pop');
      const id = prepared.clientId as number;
      assert.ok(admin.revokeClient(id, prepared.gen as number), 'the frozen child is revoked');
      const r = admin.recoverClient(id);
      assert.ok(r !== null && r.objects >= 100, `recovered by force: its objects and cache freed: ${JSON.stringify(r)}`);
      const fill = claimStamped(admin, stale);
      const outcome = await resumeToOutcome(child);
      assert.is(outcome.type, 'error', `resumed, its alloc fails: ${child.describe()}`);
      assert.is(outcome.code, 'LEASE_EXPIRED', 'every pop lost its CAS and the refill refused: lease expired');
      await child.exitWithin();
      assertStamped(admin, fill);
      assert.is(admin.heap.stats().perClass[0].objects, fill.length, 'only the other client\'s objects are handed out');
      drain(admin, fill);
    } finally {
      await killAll();
      admin.close();
    }
  });
});

for (const { path, env } of FROZEN_PATHS) test(`${path} path, a child frozen at heap.free (its checks done, before its spill of a full cache and its tag CAS), recovered by force: resumed, its free hands nothing to anyone and the pool stays whole`, async () => {
  await withPoolName('hc-frozen-free', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB' });
    try {
      // 100 taken (28 left cached after the refills), 36 freed into the
      // cache: it is full (64), so the free under test spills half of it
      // after its checks; resumed after the recovery, each spilled object's
      // tag CAS from "cached by me" finds recovery's 0 and clears nothing.
      // Each free passes heap.free once: the 36 of the prep are let through.
      const plan: Plan = { prep: [{ h: 64, n: 100 }, { hf: 36 }], action: [{ hf: 1 }, { h: 64 }] };
      const child = new Child(CHILD, [name, JSON.stringify(plan)], { ...env, DMEM_CRASH_POINT: 'heap.free:36', DMEM_CRASH_ACTION: 'stop' });
      const prepared = await child.take('prepared');
      assert.is(admin.heap.stats().perClass[0].cached, 64, 'the child\'s cache is full');
      child.send('go');
      await stoppedAt(child, 'heap.free');
      const id = prepared.clientId as number;
      assert.ok(admin.revokeClient(id, prepared.gen as number));
      const r = admin.recoverClient(id);
      assert.ok(r !== null && r.objects >= 64 + 64, `recovered by force: ${JSON.stringify(r)}`);
      assert.equal(usage(admin), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'recovery left nothing of the child');
      const outcome = await resumeToOutcome(child);
      // The free finds its object as it left it (recovery cleared its bit
      // and released the slab; nobody took it since): whatever the free
      // does with it then is in the child's own stale cache, which no call
      // reaches any more: its next call, the alloc, finds the revocation.
      assert.is(outcome.type, 'error', `resumed: ${child.describe()}`);
      assert.is(outcome.code, 'LEASE_EXPIRED', 'the next call finds the revocation');
      await child.exitWithin();
      assert.equal(usage(admin), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'the resumed free handed nothing out and claimed nothing');
      const fill = Array.from({ length: 2000 }, () => admin.heap.alloc(64));
      assert.is(new Set(fill).size, 2000, 'no object is handed out twice');
      drain(admin, fill);
    } finally {
      await killAll();
      admin.close();
    }
  });
});

// Direct path only: its free spills a full cache after its checks and
// before its tag CAS; the core's freeOwn CASes the tag first and is refused
// before any spill (the test above covers that path).
test(`direct path, a child frozen at heap.free with a full cache, recovered by force, another client holding every object of its old slab: resumed, its spill clears none of their bits and its free is refused`, async () => {
  await withPoolName('hc-frozen-spill', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB' });
    try {
      // As above: a full cache (64), and the free under test spills half of it.
      const plan: Plan = { prep: [{ h: 64, n: 100 }, { hf: 36 }], action: [{ hf: 1 }, { h: 64 }] };
      const child = new Child(CHILD, [name, JSON.stringify(plan)], { DMEM_CRASH_POINT: 'heap.free:36', DMEM_CRASH_ACTION: 'stop' });
      const prepared = await child.take('prepared');
      const underFree = (prepared.objects as number[])[0];
      child.send('go');
      await stoppedAt(child, 'heap.free');
      const id = prepared.clientId as number;
      assert.ok(admin.revokeClient(id, prepared.gen as number));
      assert.ok(admin.recoverClient(id) !== null);
      // The other client takes the whole old slab again (its 128 first
      // objects: the child's 100 and the 28 its refills had cached), stamps
      // them, and keeps the object under the child's free in its own cache.
      const fill = claimStamped(admin, new Set((prepared.freedObjects as number[]).map((g) => g % 2 ** 40)));
      while (fill.length < 300) {
        const g = admin.heap.alloc(64);
        admin.write(g, new Uint8Array(64).fill(0xEE));
        fill.push(g);
      }
      const mine = fill.findIndex((g) => g % 2 ** 40 === underFree % 2 ** 40);
      assert.ok(mine >= 0, 'the other client holds the object under the child\'s free');
      admin.heap.free(fill[mine]);
      fill.splice(mine, 1);
      const outcome = await resumeToOutcome(child);
      assert.is(outcome.code, 'DOUBLE_FREE', `the free finds the object in another client's cache and is refused: ${child.describe()}`);
      await child.exitWithin();
      assert.is(admin.heap.stats().perClass[0].objects, fill.length, 'the spill cleared no bit of the other client\'s objects');
      assertStamped(admin, fill);
      drain(admin, fill);
    } finally {
      await killAll();
      admin.close();
    }
  });
});

test.run();
