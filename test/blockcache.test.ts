/**
 * The per-client block cache (assembly/cache.ts, issue 10): freed blocks of
 * classes 0..4 stay allocated in their client's name (HELD | CACHED) and
 * are handed out again by that client only. Checked here: what the census,
 * `stats()` and `dmem stat` say about them, that reads, writes and frees of
 * a cached block are refused (use after free, double free, by any client),
 * that close, a flush and an exhausted pool give them back, that the
 * recovery of a kill -9'd client with a full cache frees all of it, and
 * that a client frozen taking a block out of its cache, then revoked and
 * recovered, resumes without handing out anything of its stale cache.
 * Stealing (an exhausted allocation frees other clients' cached blocks):
 * the owner stays open and its stale entries hand out nothing; a stealer
 * frozen or killed between its two steps (crash point `cache.stolen`); an
 * owner frozen inside its pop (`cache.pop`) while its blocks are stolen.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { DoubleFreeError, InvalidAddressError, PoolExhaustedError, openPool, type Pool } from '../src/index.js';
import { fenceOf } from '../src/fencing.js';
import { processState } from '../src/proc.js';
import type { Plan } from './fixtures/recovery-child.js';
import {
  Child, type Held, Sweeper, allocStamped, assertOnlyParentHolds, chunksOf, describePool, fillFreeSpace, killAll, settled, sleep,
} from './harness.js';
import { dmem, is, jsonLines, withPoolName } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/recovery-child.js', import.meta.url));
const CACHE = { DMEM_BLOCK_CACHE: '256' };
/**
 * For the admin client of a test: no block cache, so that what it frees (a
 * fill of all free space, test/harness.ts) is free in the census at once,
 * and the only cached blocks are those of the client under test.
 */
const PLAIN_FREE = { blockCache: 0 };

/** Every chunk of the census is free, held, an orphan or cached. */
function accounted(p: Pool): void {
  const c = p.census();
  assert.is(c.chunks.free + c.chunks.held + c.chunks.orphan + c.cached.chunks, c.chunks.total, `every chunk counted once: ${JSON.stringify(c.chunks)}, cached ${c.cached.chunks}`);
}

test('a pool mapped as several windows, its owner log in the first, has the JS fast path: cached allocs and frees take it, census and flush as with one window', async () => {
  await withPoolName('bc-windows', async (name) => {
    const p = await openPool(`shm:${name}`, { size: '32MiB', windowBytes: 2 ** 20, blockCache: 256 });
    try {
      assert.ok(p.transport.mapped!.windowArrays().words.length > 1, 'several windows');
      const fast = (p as unknown as { fast: { allocs: Float64Array; frees: Float64Array } | null }).fast;
      assert.ok(fast !== null, 'the fast path is there');
      const got = Array.from({ length: 100 }, () => p.allocClass(0));
      for (const g of got) p.free(g);
      const again = Array.from({ length: 100 }, () => p.allocClass(0));
      assert.equal(new Set(again), new Set(got), 'the cached blocks are handed out again');
      for (const g of again) p.free(g);
      assert.is(fast!.allocs[0], 100, 'the second 100 allocations took the fast path');
      assert.is(fast!.frees[0], 200, 'every free took it');
      assert.is(p.census().cached.blocks, 100);
      assert.is(p.flushCache(), 100);
      const c = p.census();
      assert.is(c.chunks.free, c.chunks.total, 'everything is free');
      assert.ok(p.fsck().clean);
    } finally {
      p.close();
    }
  });
});

test('freed blocks are cached and counted as cached by their client; reads, writes and frees of them are refused; they are handed out again; close returns them all', async () => {
  await withPoolName('bc-basic', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '64MiB', blockCache: 256 });
    const b = await openPool(`shm:${name}`, { create: false, blockCache: 0 });
    try {
      const freed = new Map<number, number>();
      for (let cls = 0; cls <= 4; cls++) {
        for (let i = 0; i < 20; i++) freed.set(a.allocClass(cls), cls);
      }
      for (const g of freed.keys()) a.free(g);
      const s = a.stats();
      assert.equal(s.cache.perClass, [20, 20, 20, 20, 20], 'stats: 20 blocks of each class cached');
      assert.is(s.cache.chunks, 20 * (1 + 2 + 4 + 8 + 16));
      const c = b.census();
      assert.equal(c.cached.byClient, [{ client: a.clientId, blocks: 100, chunks: 620 }], 'census: cached by client A');
      assert.is(c.chunks.held, 0, 'a cached block is not held');
      assert.is(c.chunks.orphan, 0, 'nor an orphan');
      accounted(b);
      const st = jsonLines(dmem('stat', '--pool', name, '--json').stdout)[0] as { cached: { blocks: number }; allocated: { chunks: number } };
      assert.is(st.cached.blocks, 100, 'dmem stat --json lists them');
      assert.is(st.allocated.chunks, 0);
      const human = dmem('stat', '--pool', name).stdout;
      assert.match(human, new RegExp(`cached by client ${a.clientId}\\s+100 blocks, 620 chunks`), 'dmem stat names the client');

      for (const g of freed.keys()) {
        for (const p of [a, b]) {
          assert.throws(() => p.read(g, 8), is(InvalidAddressError), 'a cached block is not readable (use after free)');
          assert.throws(() => p.write(g, new Uint8Array(8)), is(InvalidAddressError), 'nor writable');
          assert.throws(() => p.free(g), is(DoubleFreeError), 'its free is a double free, by any client');
        }
        assert.throws(() => a.heap.free(g), is(DoubleFreeError), 'heap.free too');
      }
      assert.equal(a.stats().cache.perClass, [20, 20, 20, 20, 20], 'the refused frees changed nothing');
      assert.equal(b.scanOrphans(), [], 'cached blocks are not orphans (the sweep leaves them alone)');
      assert.ok(b.fsck().clean, 'fsck is clean with blocks cached by a live client');

      const again = Array.from({ length: 20 }, () => a.allocClass(2));
      for (const g of again) assert.is(freed.get(g), 2, 'class 2 comes from the cache');
      assert.is(a.stats().cache.perClass[2], 0);
      for (const g of again) a.write(g, new Uint8Array(16384).fill(7));
      const fromB = Array.from({ length: 20 }, () => b.allocClass(0));
      for (const g of fromB) assert.not.ok(freed.has(g), 'another client never gets a cached block');
      for (const g of fromB) b.free(g);
      for (const g of again) a.free(g);

      const closed = a.close();
      assert.is(closed, 100, 'close frees the 100 cached blocks');
      const after = b.census();
      assert.is(after.cached.blocks, 0);
      assert.is(after.chunks.free, after.chunks.total, 'everything is free');
      assert.ok(b.fsck().clean, 'fsck clean');
    } finally {
      a.close();
      b.close();
    }
  });
});

test('a delayed free of a cached block is refused: it was freed already', async () => {
  await withPoolName('bc-ring', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '32MiB', blockCache: 256 });
    try {
      const g = a.allocClass(0);
      const others = Array.from({ length: 8 }, () => a.allocClass(0));
      for (const o of others) a.free(o);
      a.free(g);
      assert.is(a.stats().cache.perClass[0], 9);
      // An application bug: a delayed free of a block it freed already.
      assert.throws(() => a.heap.freeDelayed(g), is(InvalidAddressError), 'refused, as for a block freed to the pool');
      assert.is(a.epochState().pending, 0, 'nothing queued');
      const got = Array.from({ length: 9 }, () => a.allocClass(0));
      assert.ok(got.includes(g), 'the block stayed in the cache');
      // A delayed free of a held block still works, and the block never comes back from the cache meanwhile.
      a.heap.freeDelayed(g);
      for (const o of got) if (o !== g) a.free(o);
      const again = Array.from({ length: 20 }, () => a.allocClass(0));
      assert.not.ok(again.includes(g), 'the ring\'s block is not handed out');
      for (const o of again) a.free(o);
      for (let i = 0; i < 4; i++) a.reclaim();
      assert.is(a.epochState().pending, 0, 'the ring freed it');
      a.flushCache();
      const c = a.census();
      assert.is(c.chunks.held, 32, 'only the ring itself (pool-owned, one 128 KiB block) is held');
      assert.is(c.chunks.free + c.chunks.held, c.chunks.total, 'everything else came back');
    } finally {
      a.close();
    }
  });
});

test('a client revoked and recovered between two calls hands out nothing of its cache: its next call is refused and the cache dropped', async () => {
  await withPoolName('bc-revoked', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
    const a = await openPool(`shm:${name}`, { create: false, blockCache: 256, heartbeatMs: 0 });
    try {
      const got = Array.from({ length: 30 }, () => a.allocClass(0));
      for (const g of got) a.free(g);
      assert.is(a.stats().cache.blocks, 30);
      const slot = admin.clientSlot(a.clientId);
      assert.ok(admin.revokeClient(slot.id, slot.gen));
      const r = admin.recoverClient(slot.id);
      assert.ok(r !== null && r.blocks === 30, `recovery freed the 30 cached blocks: ${JSON.stringify(r)}`);
      const fill = fillFreeSpace(admin, true);
      assert.throws(() => a.allocClass(0), (e: unknown) => (e as { code?: string }).code === 'LEASE_EXPIRED', 'the next call finds the revocation');
      assert.throws(() => a.allocClass(0), (e: unknown) => (e as { code?: string }).code === 'LEASE_EXPIRED', 'and every later one');
      for (const b of fill.blocks) assert.ok(admin.read(b.g, 16).every((x) => x === 0xEE), 'the fill, which took the cached blocks, is intact');
      for (const b of fill.blocks) admin.free(b.g);
      a.close();
      const c = admin.census();
      assert.is(c.chunks.free, c.chunks.total, 'everything is free');
      assert.is(c.cached.blocks, 0);
      assert.ok(admin.fsck().clean);
    } finally {
      a.close();
      admin.close();
    }
  });
});

test('the JS fast path, paused between its lease check and its CAS while the client is recovered and its blocks reused, hands out and caches nothing', async () => {
  await withPoolName('bc-fast-paused', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
    const a = await openPool(`shm:${name}`, { create: false, blockCache: 256, heartbeatMs: 0 });
    try {
      // The step under test, reached as a paused client would reach it: its
      // guard() already passed before the pause, so call the fast path itself.
      const fast = (a as unknown as { fast: { alloc(cls: number): number; free(off: number): boolean } | null }).fast;
      assert.ok(fast !== null, 'an shm pool with a block cache has the JS fast path');
      const got = Array.from({ length: 20 }, () => a.allocClass(0));
      const kept = a.allocClass(0);
      for (const g of got) a.free(g);
      assert.is(a.stats().cache.blocks, 20);
      const slot = admin.clientSlot(a.clientId);
      assert.ok(admin.revokeClient(slot.id, slot.gen));
      const r = admin.recoverClient(slot.id);
      assert.ok(r !== null && r.blocks === 21, `recovery freed the 20 cached blocks and the held one: ${JSON.stringify(r)}`);
      const fill = fillFreeSpace(admin, true);
      // Resumed: every pop loses its CAS (the fill holds those chunks now).
      for (let i = 0; i < 20; i++) assert.is(fast!.alloc(0), -1, `pop ${i} hands out nothing`);
      // And a push of the block it held (now the admin's) loses too.
      const keptOff = kept % 2 ** 40;
      assert.is(fast!.free(keptOff), false, "the push of a block recovery took back changes nothing");
      for (const b of fill.blocks) assert.ok(admin.read(b.g, 16).every((x) => x === 0xEE), "the fill is intact");
      assert.throws(() => a.allocClass(0), (e: unknown) => (e as { code?: string }).code === 'LEASE_EXPIRED', 'its next call finds the revocation');
      for (const b of fill.blocks) admin.free(b.g);
      const c = admin.census();
      assert.is(c.chunks.free, c.chunks.total, 'everything is free');
      assert.ok(admin.fsck().clean);
    } finally {
      a.close();
      admin.close();
    }
  });
});

test('an allocation that finds the pool exhausted first flushes its own cache; flushCache gives everything back', async () => {
  // One section: a 2 MiB block needs every chunk of it.
  const p = await openPool('memory:', { size: 2_200_000, blockCache: 256 });
  try {
    assert.is(p.geometry.sections, 1);
    const got: number[] = [];
    for (;;) {
      try { got.push(p.allocClass(0)); } catch { break; }
    }
    for (const g of got) p.free(g);
    assert.is(p.stats().cache.blocks, 256, 'the cache is full');
    accounted(p);
    const big = p.allocClass(9);
    assert.ok(big > 0, 'a 2 MiB block fits once the cache is flushed');
    assert.is(p.stats().cache.blocks, 0, 'flushed');
    p.free(big);
    for (let i = 0; i < 10; i++) p.free(p.allocClass(1));
    assert.is(p.stats().cache.perClass[1], 1);
    assert.is(p.flushCache(), 1);
    const c = p.census();
    assert.is(c.chunks.free, c.chunks.total, 'all free after the flush');
  } finally {
    p.close();
  }
});

test('a kill -9\'d client with a full cache: its recovery frees every cached block, fsck clean', async () => {
  await withPoolName('bc-kill', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '64MiB', ...PLAIN_FREE });
    try {
      const mine = allocStamped(admin, [0, 2, 4]);
      const plan: Plan = { prep: [{ churn: 0, n: 300 }, { churn: 3, n: 300 }, { a: 1, n: 5 }], action: [] };
      const child = new Child(CHILD, [name, JSON.stringify(plan)], CACHE);
      const prepared = await child.take('prepared');
      const c = admin.census();
      const mineInCache = c.cached.byClient.find((x) => x.client === prepared.clientId);
      assert.ok(mineInCache !== undefined && mineInCache.blocks >= 256, `the child caches its freed blocks: ${JSON.stringify(c.cached)}`);
      assert.is(c.chunks.held, chunksOf(mine) + (prepared.chunks as number), 'held: what the parent and the child hold, without the cache');
      child.proc.kill('SIGKILL');
      await child.exitWithin();
      const slot = admin.clientSlot(prepared.clientId as number);
      assert.ok(admin.revokeClient(slot.id, slot.gen), 'revoked');
      const verdict = fenceOf(admin, admin.clientSlot(slot.id));
      assert.ok(verdict.fenced, `the dead child is fenced: ${JSON.stringify(verdict)}`);
      const r = admin.recoverClient(slot.id);
      assert.ok(r !== null && r.blocks >= mineInCache.blocks + 5, `recovery freed the cache and the held blocks: ${JSON.stringify(r)}`);
      assert.is(admin.census().cached.blocks, 0, 'nothing cached any more');
      assertOnlyParentHolds(admin, mine, 'after the recovery of a full cache');
    } finally {
      await killAll();
      admin.close();
    }
  });
});

test('fencing: a client frozen taking a block out of its cache, revoked and recovered meanwhile, resumes and hands out nothing of its stale cache', async () => {
  await withPoolName('bc-fence', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
    try {
      admin.setLeaseMs(300);
      const mine = allocStamped(admin, [0, 4]);
      const plan: Plan = { prep: [{ churn: 0, n: 40 }], action: [{ a: 0 }, { a: 0 }] };
      const child = new Child(CHILD, [name, JSON.stringify(plan)], { ...CACHE, DMEM_CRASH_POINT: 'cache.pop', DMEM_CRASH_ACTION: 'stop' });
      const prepared = await child.take('prepared');
      const id = prepared.clientId as number;
      assert.is(admin.census().cached.byClient.find((x) => x.client === id)?.blocks, 40, '40 blocks in the child\'s cache');
      child.send('go');
      const deadline = Date.now() + 10_000;
      while (processState(child.pid) !== 'T') {
        assert.ok(Date.now() < deadline, `the child did not stop at cache.pop: ${child.describe()}`);
        await sleep(5);
      }
      assert.ok(admin.revokeClient(id, prepared.gen as number), 'the frozen child is revoked');
      const verdict = fenceOf(admin, admin.clientSlot(id));
      assert.not.ok(verdict.fenced, 'a paused client is not fenced: only an operator (or a cut transport) lets its recovery run now');
      // The worst case: recovered while frozen inside the pop (dmem recover --force).
      const r = admin.recoverClient(id);
      assert.ok(r !== null && r.blocks >= 40, `its cached blocks were freed: ${JSON.stringify(r)}`);
      const fill = fillFreeSpace(admin, true);
      child.proc.kill('SIGCONT');
      const err = await child.take('error');
      assert.is(err.code, 'POOL_EXHAUSTED', `resumed, every pop lost its CAS and the full pool had nothing for it: ${child.describe()}`);
      await child.exitWithin();
      const bad = fill.blocks.filter((b) => {
        const got = admin.read(b.g, 16);
        return !got.every((x) => x === 0xEE);
      });
      assert.is(bad.length, 0, 'no block of the admin\'s fill (which took the stale cache\'s blocks) was touched by the child');
      for (const b of fill.blocks) admin.free(b.g);
      assert.is(admin.census().cached.blocks, 0, `nothing cached: ${describePool(admin)}`);
      assertOnlyParentHolds(admin, mine, 'after the frozen cache');
    } finally {
      await killAll();
      admin.close();
    }
  });
});

// ------------------------------------------------------------------ stealing

/** Allocates blocks of class `cls` until the pool is exhausted; returns them. */
function allocAll(p: Pool, cls: number): number[] {
  const got: number[] = [];
  for (;;) {
    try {
      got.push(p.allocClass(cls));
    } catch (e) {
      if (e instanceof PoolExhaustedError) return got;
      throw e;
    }
  }
}

/** Waits until process `pid` is stopped at its armed crash point (state T). */
async function stopped(pid: number, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (processState(pid) !== 'T') {
    assert.ok(Date.now() < deadline, `${what} did not stop at its crash point`);
    await sleep(5);
  }
}

/** Blocks of a fill whose first 16 bytes are no longer the fill pattern. */
function brokenFill(p: Pool, blocks: Array<{ g: number }>): number {
  return blocks.filter((b) => !p.read(b.g, 16).every((x) => x === 0xEE)).length;
}

test('an allocation that finds the pool exhausted steals other clients\' cached blocks while they stay open; the owner then allocates normally, its stale entries dropped, nothing handed out twice', async () => {
  await withPoolName('bc-steal', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '32MiB', blockCache: 256 });
    const b = await openPool(`shm:${name}`, { create: false, blockCache: 0 });
    try {
      // Every held block carries (holder id, serial); checked at the end.
      const holder = new Map<number, { p: Pool; serial: number }>();
      let serial = 0;
      const take = (p: Pool, g: number): void => {
        assert.not.ok(holder.has(g), `block ${g} handed out while ${holder.get(g)?.p.clientId} holds it`);
        const s = new Uint8Array(8);
        new DataView(s.buffer).setUint32(0, p.clientId, true);
        new DataView(s.buffer).setUint32(4, ++serial, true);
        p.write(g, s);
        holder.set(g, { p, serial });
      };
      const give = (p: Pool, g: number): void => {
        assert.is(holder.get(g)?.p, p, `block ${g} is freed by its holder`);
        holder.delete(g);
        p.free(g);
      };
      const held2 = Array.from({ length: 1000 }, () => a.allocClass(2));
      for (const g of held2) take(a, g);
      const held0 = allocAll(a, 0);
      for (const g of held0) take(a, g);
      const cached2 = held2.filter((g, i) => i % 7 === 0).slice(0, 20);
      const cached0 = held0.slice(-40);
      for (const g of [...cached2, ...cached0]) give(a, g);
      assert.equal(a.stats().cache.perClass, [40, 0, 20, 0, 0], 'A caches 40 blocks of class 0 and 20 of class 2');
      assert.is(b.census().chunks.free, 0, 'nothing else is free');

      // B: the pool is exhausted for it; it takes A's cached blocks, A stays open.
      const first = b.allocClass(0);
      assert.is(b.census().cached.blocks, 0, "B's first allocation stole all of A's cache");
      take(b, first);
      const rest = allocAll(b, 0);
      for (const g of rest) take(b, g);
      const bHeld = [first, ...rest];
      const stolenChunks = new Set<number>([...cached0, ...cached2.flatMap((g) => [0, 1, 2, 3].map((k) => g + k * 4096))]);
      assert.is(bHeld.length, 40 + 20 * 4, "B got exactly the chunks of A's cached blocks");
      for (const g of bHeld) assert.ok(stolenChunks.has(g), `B's block ${g} was one of A's cached chunks`);
      assert.equal(a.stats().cache.perClass, [40, 0, 20, 0, 0], "A's stacks still list them (stale entries)");
      accounted(b);
      assert.ok(b.fsck().clean, 'fsck clean after the steal');

      // A allocates normally: every stale entry loses its CAS and is dropped.
      const back = bHeld.slice(0, 60);
      for (const g of back) give(b, g);
      const again = allocAll(a, 0);
      assert.is(a.stats().cache.perClass[0], 0, 'the stale class-0 entries were dropped');
      assert.is(again.length, 60, "A got the 60 blocks B freed, and nothing of its stale cache");
      for (const g of again) {
        assert.ok(back.includes(g), `A's block ${g} is one B freed`);
        take(a, g);
      }
      assert.throws(() => a.allocClass(2), is(PoolExhaustedError), 'no class-2 block for A: its stale entries hand out nothing');
      assert.is(a.stats().cache.perClass[2], 0, 'the stale class-2 entries were dropped');

      const bad: string[] = [];
      for (const [g, h] of holder) {
        const v = new DataView(h.p.read(g, 8).buffer);
        if (v.getUint32(0, true) !== h.p.clientId || v.getUint32(4, true) !== h.serial) bad.push(`block ${g}`);
      }
      assert.equal(bad, [], 'every held block carries its holder\'s stamp (none was handed out twice)');
      for (const [g, h] of holder) h.p.free(g);
      a.flushCache();
      const c = b.census();
      assert.is(c.chunks.free, c.chunks.total, 'everything is free');
      assert.ok(b.fsck().clean, 'fsck clean');
    } finally {
      a.close();
      b.close();
    }
  });
});

/** A pool with an admin (no cache, lease 300 ms) holding stamped blocks `mine`; at the end only they may be left. */
async function withAdmin(tag: string, fn: (name: string, admin: Pool, mine: Held[]) => Promise<void>): Promise<void> {
  await withPoolName(tag, async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
    try {
      admin.setLeaseMs(300);
      await fn(name, admin, allocStamped(admin, [0, 4]));
    } finally {
      await killAll();
      admin.close();
    }
  });
}

/**
 * Client A (blockCache 256) takes every free chunk in 4 KiB blocks and frees
 * its last `cached` ones into its cache; then a child, with `env`, is told
 * to allocate one 4 KiB block, which only a steal can give it. The last
 * block A allocated is the first a steal finds in its span, and that span's
 * commit log still names A's ALLOC of it.
 */
async function stealScene(name: string, cached: number, env: Record<string, string>): Promise<{ a: Pool; victims: number[]; child: Child; clientId: number }> {
  const a = await openPool(`shm:${name}`, { create: false, blockCache: 256 });
  const victims = allocAll(a, 0).slice(-cached);
  for (const g of victims) a.free(g);
  assert.is(a.census().cached.blocks, cached, `${cached} blocks in A's cache, nothing free`);
  assert.is(a.census().chunks.free, 0);
  const child = new Child(CHILD, [name, JSON.stringify({ prep: [], action: [{ a: 0 }] } satisfies Plan)], env);
  const prepared = await child.take('prepared');
  child.send('go');
  return { a, victims, child, clientId: prepared.clientId as number };
}

test('a stealer frozen between its FREED write and its bit clear: the owner hands nothing out and its close leaves the block; resumed, the stealer finishes and takes exactly that block', async () => {
  await withAdmin('bc-steal-frozen', async (name, admin, mine) => {
    const { a, victims: [victim], child } = await stealScene(name, 1, { DMEM_CRASH_POINT: 'cache.stolen', DMEM_CRASH_ACTION: 'stop' });
    await stopped(child.pid, 'the stealer');
    let c = admin.census();
    assert.is(c.cached.blocks, 0, "the block left A's cache");
    assert.is(c.chunks.orphan, 1, 'FREED by the stealer with its bit still set: a free in flight');
    assert.throws(() => a.allocClass(0), is(PoolExhaustedError), 'the owner: its pop loses, nothing else is free');
    assert.is(a.stats().cache.blocks, 0, 'and the entry is dropped');
    a.close();
    c = admin.census();
    assert.is(c.chunks.orphan, 1, "A's close left the half-stolen block to its stealer (not taken for A's unlogged allocation)");
    const fill = fillFreeSpace(admin, true);
    assert.not.ok(fill.chunkSet.has(victim), 'the half-stolen block is not handed out');
    child.proc.kill('SIGCONT');
    const done = await child.take('survived');
    assert.is(done.chunks, 1, 'resumed, the stealer finished its steal and allocated');
    const stamp = new DataView(admin.read(victim, 8).buffer);
    assert.is(stamp.getUint32(0, true), 0x524543ff, 'the stealer got the block it stole');
    assert.is(brokenFill(admin, fill.blocks), 0, "no block of the admin's fill was touched");
    await child.exitWithin();
    const sweeper = new Sweeper(admin);
    assert.ok(await sweeper.until(settled(admin, chunksOf(mine) + fill.chunks), 5000), describePool(admin));
    for (const b of fill.blocks) admin.free(b.g);
    assertOnlyParentHolds(admin, mine, 'after the frozen stealer');
  });
});

test('a stealer killed between its FREED write and its bit clear leaves an orphan that the grace sweep frees: census consistent, fsck clean', async () => {
  await withAdmin('bc-steal-killed', async (name, admin, mine) => {
    const { a, child, clientId } = await stealScene(name, 10, { DMEM_CRASH_POINT: 'cache.stolen' });
    assert.is((await child.exitWithin()).signal, 'SIGKILL', `the stealer dies at cache.stolen: ${child.describe()}`);
    const c = admin.census();
    assert.is(c.chunks.orphan, 1, 'the half-stolen block is an orphan');
    assert.is(c.cached.blocks, 9, "the other nine are still in A's cache");
    accounted(admin);
    a.close();
    const sweeper = new Sweeper(admin);
    assert.ok(await sweeper.until(settled(admin, chunksOf(mine)), 5000), describePool(admin));
    assert.ok(sweeper.events.some((e) => e.client === clientId), 'the stealer was recovered');
    assert.ok(sweeper.results.some((r) => r.orphansFreed === 1), 'the grace sweep freed the half-stolen block');
    assertOnlyParentHolds(admin, mine, 'after the killed stealer');
  });
});

test('an owner frozen taking a block out of its cache while another client steals it: resumed, it hands out nothing of its stale cache', async () => {
  await withAdmin('bc-steal-pop', async (name, admin, mine) => {
    const plan: Plan = { prep: [{ churn: 0, n: 40 }], action: [{ a: 0 }] };
    const child = new Child(CHILD, [name, JSON.stringify(plan)], { ...CACHE, DMEM_CRASH_POINT: 'cache.pop', DMEM_CRASH_ACTION: 'stop' });
    const prepared = await child.take('prepared');
    const id = prepared.clientId as number;
    assert.is(admin.census().cached.byClient.find((x) => x.client === id)?.blocks, 40, "40 blocks in the child's cache");
    child.send('go');
    await stopped(child.pid, 'the owner');
    // Not revoked: a live owner, slow at the wrong moment.
    const fill = fillFreeSpace(admin, true);
    assert.is(admin.census().cached.blocks, 0, "the fill stole the child's whole cache");
    assert.is(admin.census().chunks.free, 0, 'and took every chunk');
    child.proc.kill('SIGCONT');
    const err = await child.take('error');
    assert.is(err.code, 'POOL_EXHAUSTED', `resumed, every pop lost its CAS and the full pool had nothing for it: ${child.describe()}`);
    await child.exitWithin();
    assert.is(brokenFill(admin, fill.blocks), 0, "no block of the admin's fill (which took the child's cached blocks) was touched");
    for (const b of fill.blocks) admin.free(b.g);
    const sweeper = new Sweeper(admin);
    assert.ok(await sweeper.until(settled(admin, chunksOf(mine)), 5000), describePool(admin));
    assertOnlyParentHolds(admin, mine, 'after the frozen owner');
  });
});

test.run();
