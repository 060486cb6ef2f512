/**
 * Crash recovery (issue 4, "Tests"), on real shm pools with child processes
 * and a lease of 200 ms. The parent is a live client that holds stamped
 * blocks of its own and drives a LeaseMonitor on its admin client.
 *
 *  1. Every crash point of src/crash.ts: a child holding memory dies there
 *     (SIGKILL, checked); after the monitor recovers it the pool holds
 *     exactly the parent's blocks, no orphans, fsck is clean, the parent's
 *     stamps are intact, and every free chunk can be allocated again.
 *     recover.* are reached by a child that is itself recovering another
 *     dead client (4. below).
 *  2. 20 rounds of kill -9 on 3 churning children while a 4th checks its
 *     own stamped blocks: nobody sees a stamp overwritten, every killed
 *     child is recovered, and in the end the pool is empty and clean.
 *  3. SIGSTOP beyond the lease: the stopped client is revoked but its memory
 *     is not reclaimed while it may still write; after SIGCONT it gets
 *     LeaseExpiredError, is recovered, and none of its later write attempts
 *     lands in the memory now handed to the parent.
 *  4. recover.claimed / recover.partial / recover.reclaimed: a recoverer dies
 *     in the middle of a recovery; the monitor recovers it and takes over.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fileURLToPath } from 'node:url';
import { CRASH_POINTS, openPool, type Pool } from '../src/index.js';
import { processState } from '../src/proc.js';
import type { Op, Plan } from './fixtures/recovery-child.js';
import {
  Child, Sweeper, allocStamped, type Msg, assertOnlyParentHolds, chunksOf, describePool, fillFreeSpace, killAll, settled, sleep,
} from './harness.js';
import { withPoolName } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/recovery-child.js', import.meta.url));
const CHURN = fileURLToPath(new URL('./fixtures/recovery-churn.js', import.meta.url));
const WRITER = fileURLToPath(new URL('./fixtures/recovery-writer.js', import.meta.url));

const LEASE = 200;
/**
 * The parent's admin client frees by the core's plain free path (no block
 * cache): the harness's checks (test/harness.ts) expect what it frees, its
 * fills of all free space, to be free in the census at once.
 */
const PLAIN_FREE = { blockCache: 0 };
const CHUNK = 4096;
const MiB = 1024 * 1024;
/** How long the monitor gets after a death to recover and to free orphans (a lease to expire, one more for the grace sweep). */
const SETTLE_MS = 3000;

// --------------------------------------------------------------- crash points

/** Blocks a child allocates and stamps before it acts: classes 0..6, 9 and 3 MiB (two sections). */
const PREP: Op[] = [{ a: 0 }, { a: 1 }, { a: 2 }, { a: 3 }, { a: 4 }, { a: 5 }, { a: 6 }, { a: 9 }, { b: 3 * MiB }];
/** The parent's own blocks in the crash-point tests (its section is claimed first: the child's chunk classes share it). */
const PARENT_CLASSES = [0, 1, 2, 3, 4, 5, 6, 9];

/**
 * How each crash point is reached. `skip` passes are let through first, so
 * that the child dies holding PREP and whatever the action took before:
 * PREP passes the chunk points 5 times (classes 0..4), alloc.spans.committed
 * twice (5, 6), alloc.spans.tails once (6: two spans), alloc.sections.committed
 * twice (9, 3 MiB), alloc.sections.tails once (3 MiB), and no claim (all
 * of it fits in the parent's section, or takes FREE sections whole).
 */
/** Chunks of the delayed-free ring (a 128 KiB pool-owned block): it outlives the child that made it. */
const RING_CHUNKS = 32;

/**
 * `owner`: before the child acts, a second client of the parent caches that
 * many class-0 blocks (blockCache 256), which the child's action can only
 * get by stealing; it closes once the child died.
 */
const SCENARIOS: Record<string, { plan: Plan; skip: number; ring?: boolean; env?: Record<string, string>; owner?: number }> = {
  // The first Pool holds PREP; a second Pool of the same process dies registering.
  'register.claimed': { plan: { prep: PREP, action: [{ attach: true }], unarmedFirstPool: true }, skip: 0 },
  'alloc.chunk.committed': { plan: { prep: PREP, action: [{ a: 0 }, { a: 1 }, { a: 2 }, { a: 3 }, { a: 4 }] }, skip: 7 },
  'alloc.chunk.logged': { plan: { prep: PREP, action: [{ a: 0 }, { a: 1 }, { a: 2 }, { a: 3 }, { a: 4 }] }, skip: 7 },
  // 64 KiB blocks until the parent's section is full and two more are claimed: dies in the second claim.
  'claim.claimed': { plan: { prep: PREP, action: [{ a: 4, n: 200 }] }, skip: 1 },
  'claim.unsealing': { plan: { prep: PREP, action: [{ a: 4, n: 200 }] }, skip: 1 },
  'alloc.spans.tails': { plan: { prep: PREP, action: [{ a: 6 }, { a: 7 }, { a: 8 }] }, skip: 2 },
  'alloc.spans.committed': { plan: { prep: PREP, action: [{ a: 5 }, { a: 6 }, { a: 7 }] }, skip: 3 },
  'alloc.sections.tails': { plan: { prep: PREP, action: [{ a: 9 }, { b: 5 * MiB }] }, skip: 1 },
  'alloc.sections.committed': { plan: { prep: PREP, action: [{ a: 9 }, { b: 5 * MiB }] }, skip: 3 },
  // 100 x 64 KiB allocated and freed leave whole CHUNK sections empty; 2 MiB blocks
  // then take every FREE section, and the next one must retire an empty section.
  'retire.marked': { plan: { prep: [...PREP, { churn: 4, n: 100 }], action: [{ a: 9, n: 20 }] }, skip: 0 },
  'retire.sealing': { plan: { prep: [...PREP, { churn: 4, n: 100 }], action: [{ a: 9, n: 20 }] }, skip: 0 },
  'retire.sealed': { plan: { prep: [...PREP, { churn: 4, n: 100 }], action: [{ a: 9, n: 20 }] }, skip: 0 },
  // The plain free of classes 0..4 (a cached free never reaches this point).
  'free.chunk.logged': { plan: { prep: PREP, action: [{ f: 0 }, { f: 1 }, { f: 2 }, { f: 3 }, { f: 4 }] }, skip: 2, env: { DMEM_BLOCK_CACHE: '0' } },
  'free.spans.logged': { plan: { prep: PREP, action: [{ f: 5 }, { f: 6 }] }, skip: 1 },
  // Only a block of two or more spans passes the partial point: the class-5 free does not.
  'free.spans.partial': { plan: { prep: PREP, action: [{ f: 5 }, { f: 6 }] }, skip: 0 },
  'free.sections.logged': { plan: { prep: PREP, action: [{ f: 9 }, { f: 10 }] }, skip: 1 },
  'free.sections.partial': { plan: { prep: PREP, action: [{ f: 9 }, { f: 10 }] }, skip: 0 },
  // A delayed free dies holding the ring's lock: after writing its entry (the
  // block is still the child's), after retiring the block (the ring owns it:
  // the push is completed by whoever steals the lock), or after a pop freed
  // its block (the entry is dropped). The monitor's housekeeping pops the rest.
  'ring.entry-written': { plan: { prep: PREP, action: [{ d: 0 }] }, skip: 0, ring: true },
  'ring.retired': { plan: { prep: PREP, action: [{ d: 0 }] }, skip: 0, ring: true },
  'ring.popped': { plan: { prep: PREP, action: [{ d: 0 }, { reclaim: 4 }] }, skip: 0, ring: true },
  // A child with 50 blocks in its block cache dies taking one out (assembly/cache.ts).
  'cache.pop': { plan: { prep: [...PREP, { churn: 0, n: 50 }], action: [{ a: 0 }] }, skip: 0, env: { DMEM_BLOCK_CACHE: '256' } },
  // The child allocates 4 KiB blocks until the pool is exhausted, then steals
  // the owner's cached blocks and dies between a steal's two steps: the
  // block is left FREED with its bit set, an orphan for the grace sweep.
  'cache.stolen': { plan: { prep: PREP, action: [{ a: 0, n: 100_000 }] }, skip: 0, owner: 30 },
  // A child with 50 objects in its heap cache dies taking one out; every
  // heap alloc passes the point once, so the 100 of the prep are skipped.
  'heap.pop': { plan: { prep: [...PREP, { h: 64, n: 100 }, { hf: 50 }], action: [{ h: 64 }] }, skip: 100 },
  // A child dies freeing an object it took (after its checks, before the tag CAS).
  'heap.free': { plan: { prep: [...PREP, { h: 64, n: 100 }], action: [{ hf: 1 }] }, skip: 0 },
};

/** Points a recoverer passes in recoverClient (walk.section: its walk of the pool, before it freed anything). */
const RECOVER_POINTS = ['recover.claimed', 'walk.section', 'recover.partial', 'recover.reclaimed'];

test('every crash point has a scenario here', () => {
  for (const p of CRASH_POINTS) assert.ok(p in SCENARIOS || RECOVER_POINTS.includes(p), `no test reaches crash point ${p}`);
  for (const p of [...Object.keys(SCENARIOS), ...RECOVER_POINTS]) assert.ok((CRASH_POINTS as readonly string[]).includes(p), `${p} is not a crash point`);
});

for (const point of CRASH_POINTS) {
  if (RECOVER_POINTS.includes(point)) continue;
  test(`crash point ${point}: the dead child's memory comes back, the parent's stays`, async () => {
    const scenario = SCENARIOS[point];
    assert.ok(scenario, `no scenario for ${point}`);
    await withPoolName('crash', async (name) => {
      const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
      try {
        admin.setLeaseMs(LEASE);
        const mine = allocStamped(admin, PARENT_CLASSES);
        const owner = scenario.owner === undefined ? null : await openPool(`shm:${name}`, { create: false, blockCache: 256 });
        if (owner !== null) {
          const blocks = Array.from({ length: scenario.owner! }, () => owner.allocClass(0));
          for (const g of blocks) owner.free(g);
          assert.is(owner.stats().cache.blocks, scenario.owner, 'the owner caches its blocks');
        }
        const child = new Child(CHILD, [name, JSON.stringify(scenario.plan)], { DMEM_CRASH_POINT: `${point}:${scenario.skip}`, ...scenario.env });
        const prepared = await child.take('prepared');
        assert.ok((prepared.chunks as number) > 0, 'the child holds memory before it acts');
        // The child's heap objects live in slabs (16 chunks each) that the pool owns.
        const slabChunks = 16 * admin.heap.stats().perClass.reduce((a, c) => a + c.slabs, 0);
        assert.is(admin.census().chunks.held, chunksOf(mine) + (prepared.chunks as number) + slabChunks, 'census counts the parent and the child');
        child.send('go');
        const exit = await child.exitWithin();
        assert.is(exit.signal, 'SIGKILL', `the child must die at ${point} (SIGKILL); ${child.describe()}`);
        if (owner !== null) {
          assert.is(admin.census().cached.blocks, scenario.owner! - 1, 'the child died stealing the first cached block');
          assert.is(owner.close(), scenario.owner! - 1, "the owner's close frees the rest of its cache, and not the half-stolen block");
        }

        const sweeper = new Sweeper(admin);
        const extra = scenario.ring ? RING_CHUNKS : 0;
        const ok = await sweeper.until(settled(admin, chunksOf(mine) + extra), SETTLE_MS);
        assert.ok(ok, `not recovered within ${SETTLE_MS} ms after the death: ${describePool(admin)}`);
        assert.ok(sweeper.events.some((e) => e.client === prepared.clientId && e.pid === child.pid), `the child (client ${prepared.clientId}) was recovered: ${JSON.stringify(sweeper.events)}`);
        if (scenario.ring) assert.is(admin.epochState().pending, 0, 'every queued block was freed once');
        assertOnlyParentHolds(admin, mine, point, extra);
      } finally {
        await killAll();
        admin.close();
      }
    });
  });
}

// ------------------------------------------------- 4. a recoverer dies midway

for (const point of RECOVER_POINTS) {
  test(`crash point ${point}: a recoverer dies recovering a dead client; the monitor recovers it and takes over`, async () => {
    await withPoolName('rec', async (name) => {
      const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
      try {
        admin.setLeaseMs(LEASE);
        const mine = allocStamped(admin, PARENT_CLASSES);
        const mineChunks = chunksOf(mine);

        // The victim V holds PREP and is killed while idle.
        const victim = new Child(CHILD, [name, JSON.stringify({ prep: PREP, action: [] })]);
        const v = await victim.take('prepared');
        const vId = v.clientId as number;
        const vChunks = v.chunks as number;
        const vBlocks = v.blocks as Array<{ chunks: number }>;
        victim.proc.kill('SIGKILL');
        assert.is((await victim.exitWithin()).signal, 'SIGKILL');

        // Revoked by hand, not recovered.
        await sleep(LEASE + 50);
        assert.is(admin.clientSlot(vId).state, 'live', 'nobody revoked V yet');
        assert.ok(admin.revokeClient(vId, v.gen as number), 'V revoked');
        assert.is(admin.clientSlot(vId).state, 'revoked');

        // The recoverer R holds blocks of its own and dies in recoverClient(V).
        const rec = new Child(CHILD, [name, JSON.stringify({ prep: [{ a: 0 }, { a: 3 }, { a: 5 }], action: [{ recover: vId }] })], { DMEM_CRASH_POINT: point });
        const r = await rec.take('prepared');
        const rId = r.clientId as number;
        const rChunks = r.chunks as number;
        rec.send('go');
        assert.is((await rec.exitWithin()).signal, 'SIGKILL', `the recoverer must die at ${point}; ${rec.describe()}`);

        const vs = admin.clientSlot(vId);
        assert.is(vs.state, 'recovering', `V is left RECOVERING: ${describePool(admin)}`);
        assert.is(vs.recoverer, rId, 'by R');
        const held = admin.census().chunks.held;
        let vBlocksLeft: number;
        if (point === 'recover.claimed') {
          assert.is(held, mineChunks + vChunks + rChunks, 'R died before freeing anything');
          vBlocksLeft = vBlocks.length;
        } else if (point === 'walk.section') {
          // R died entering the first CHUNK section: it freed V's blocks of
          // the LARGE sections before it (which ones depends on the layout), nothing else.
          const freed = mineChunks + vChunks + rChunks - held;
          const large = vBlocks.filter((b) => b.chunks >= 512);
          const subsets = [[], ...large.map((b) => [b]), large];
          const match = subsets.find((set) => set.reduce((a, b) => a + b.chunks, 0) === freed);
          assert.ok(match !== undefined, `R freed only whole LARGE blocks of V (${freed} chunks freed; V's blocks ${JSON.stringify(vBlocks)})`);
          vBlocksLeft = vBlocks.length - match!.length;
        } else if (point === 'recover.partial') {
          const freed = mineChunks + vChunks + rChunks - held;
          assert.ok(vBlocks.some((b) => b.chunks === freed), `R freed exactly one of V's blocks (${freed} chunks freed; V's blocks ${JSON.stringify(vBlocks)})`);
          vBlocksLeft = vBlocks.length - 1;
        } else {
          assert.is(held, mineChunks + rChunks, 'R freed all of V before dying');
          vBlocksLeft = 0;
        }

        const sweeper = new Sweeper(admin);
        const ok = await sweeper.until(settled(admin, mineChunks), SETTLE_MS);
        assert.ok(ok, `not recovered within ${SETTLE_MS} ms: ${describePool(admin)}; events ${JSON.stringify(sweeper.events)}`);
        const evR = sweeper.events.filter((e) => e.client === rId);
        const evV = sweeper.events.filter((e) => e.client === vId);
        assert.is(evR.length, 1, `R recovered once: ${JSON.stringify(sweeper.events)}`);
        assert.is(evR[0].reason, 'process-gone');
        assert.is(evR[0].report.blocks, 3, "R's own three blocks");
        assert.is(evR[0].report.chunks, rChunks);
        assert.is(evV.length, 1, `V's recovery taken over once: ${JSON.stringify(sweeper.events)}`);
        assert.is(evV[0].reason, 'takeover');
        assert.is(evV[0].report.blocks, vBlocksLeft, "the takeover freed what R had not");
        assertOnlyParentHolds(admin, mine, point);
      } finally {
        await killAll();
        admin.close();
      }
    });
  });
}

test("a dead recoverer's slot reused by a new client: the monitor still takes the recovery over", async () => {
  await withPoolName('reuse', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
    const extra: Pool[] = [];
    try {
      admin.setLeaseMs(LEASE);
      const mine = allocStamped(admin, PARENT_CLASSES);
      const victim = new Child(CHILD, [name, JSON.stringify({ prep: PREP, action: [] })]);
      const v = await victim.take('prepared');
      const vId = v.clientId as number;
      victim.proc.kill('SIGKILL');
      await victim.exitWithin();
      await sleep(LEASE + 50);
      assert.ok(admin.revokeClient(vId, v.gen as number), 'V revoked');

      const rec = new Child(CHILD, [name, JSON.stringify({ prep: [{ a: 0 }], action: [{ recover: vId }] })], { DMEM_CRASH_POINT: 'recover.claimed' });
      const r = await rec.take('prepared');
      const rId = r.clientId as number;
      rec.send('go');
      assert.is((await rec.exitWithin()).signal, 'SIGKILL');
      assert.is(admin.clientSlot(vId).state, 'recovering');

      // R is recovered by hand, then its slot goes to a new, live client.
      await sleep(LEASE + 50);
      assert.ok(admin.revokeClient(rId, r.gen as number), 'R revoked');
      assert.ok(admin.recoverClient(rId) !== null, 'R recovered');
      for (let i = 0; i < admin.geometry.maxClients && !extra.some((p) => p.clientId === rId); i++) {
        extra.push(await openPool(`shm:${name}`, { create: false }));
      }
      const heir = extra.find((p) => p.clientId === rId);
      assert.ok(heir, `a new client got R's slot ${rId}`);
      for (const p of extra) if (p !== heir) p.close();
      assert.is(admin.clientSlot(rId).state, 'live', "R's slot is live again, in a new generation");
      assert.is(admin.clientSlot(vId).recoverer, rId, 'V still names R as its recoverer');

      const sweeper = new Sweeper(admin);
      sweeper.once();
      const evV = sweeper.events.filter((e) => e.client === vId);
      assert.is(evV.length, 1, `V's recovery taken over at once: ${JSON.stringify(sweeper.events)}`);
      assert.is(evV[0].reason, 'takeover');
      assert.is(evV[0].report.blocks, PREP.length, "the takeover freed all of V's blocks");
      heir!.close();
      assertOnlyParentHolds(admin, mine, 'reuse');
    } finally {
      await killAll();
      for (const p of extra) p.close();
      admin.close();
    }
  });
});

test('a lease shortened under an idle client: it adapts its heartbeat and is never revoked', async () => {
  await withPoolName('lease', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '8MiB', ...PLAIN_FREE });
    const idle = await openPool(`shm:${name}`, { create: false });
    try {
      assert.is(idle.leaseMs, 1000);
      const block = idle.alloc(4096);
      const sweeper = new Sweeper(admin);
      sweeper.once();
      admin.setLeaseMs(100);
      const until = Date.now() + 1600;
      while (Date.now() < until) {
        sweeper.once();
        await sleep(20);
      }
      assert.equal(sweeper.results.flatMap((r) => r.revoked), [], 'nobody was revoked');
      assert.is(admin.clientSlot(idle.clientId).state, 'live');
      idle.write(block, new Uint8Array([7]));
      assert.is(idle.read(block, 1)[0], 7, 'the idle client still works');
    } finally {
      idle.close();
      admin.close();
    }
  });
});

// ----------------------------------------------------------- 2. kill -9 rounds

test('kill -9 rounds: 20 churners killed at random moments; the survivor loses nothing, the dead leak nothing', async () => {
  const seed = Date.now() >>> 0;
  let x = seed || 1;
  const rand = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32; };
  const t0 = Date.now();
  await withPoolName('kill9', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '128MiB', ...PLAIN_FREE });
    const sweeper = new Sweeper(admin);
    const sweepErrors: string[] = [];
    let sweeping = true;
    let loop: Promise<void> = Promise.resolve();
    try {
      // A longer lease than the other tests: the churners must never be starved
      // past it on a loaded 2-core machine (they are killed, not paused).
      admin.setLeaseMs(2 * LEASE);
      loop = (async () => {
        while (sweeping) {
          try { sweeper.once(); } catch (e) { sweepErrors.push(String(e)); }
          await sleep(LEASE / 4);
        }
      })();
      const trouble: string[] = [];
      const watch = (c: Child): Child => {
        c.proc.on('message', (raw) => {
          const m = raw as Msg;
          if (m.type === 'mismatch' || m.type === 'error') trouble.push(`${m.type}: ${String(m.detail ?? m.message)}`);
        });
        return c;
      };
      const survivor = watch(new Child(CHURN, [name, 'survive', String(seed ^ 0x5555)]));
      await survivor.take('ready');
      let churnSeed = seed;
      const start = async (): Promise<{ c: Child; clientId: number }> => {
        const c = watch(new Child(CHURN, [name, 'churn', String(++churnSeed)]));
        const m = await c.take('ready');
        return { c, clientId: m.clientId as number };
      };
      const churners = await Promise.all([start(), start(), start()]);
      const killed: Array<{ pid: number; clientId: number; afterMs: number }> = [];
      for (let round = 0; round < 20; round++) {
        // A round starts once the last replacement churns; its victim dies 10-150 ms in.
        const afterMs = 10 + Math.floor(rand() * 141);
        await sleep(afterMs);
        const i = Math.floor(rand() * 3);
        const victim = churners[i];
        assert.is(victim.c.exit, null, `churner ${victim.c.pid} still running before round ${round} (seed ${seed}): ${victim.c.describe()}`);
        victim.c.proc.kill('SIGKILL');
        assert.is((await victim.c.exitWithin()).signal, 'SIGKILL');
        killed.push({ pid: victim.c.pid, clientId: victim.clientId, afterMs });
        churners[i] = await start();
        assert.equal(trouble, [], `round ${round} (seed ${seed})`);
      }
      for (const { c } of churners) c.send('stop');
      survivor.send('stop');
      const reports = await Promise.all([...churners.map(({ c }) => c.take('done')), survivor.take('done')]);
      for (const { c } of churners) assert.is((await c.exitWithin()).code, 0, c.describe());
      assert.is((await survivor.exitWithin()).code, 0, survivor.describe());
      assert.equal(trouble, [], `no stamp overwritten, no error (seed ${seed})`);
      for (const rep of reports) assert.is(rep.mismatches, 0, JSON.stringify(rep));
      const sr = reports[3];
      assert.ok((sr.passes as number) > 20, `the survivor kept checking (${JSON.stringify(sr)})`);
      assert.ok((sr.checks as number) > 20 * 1791, `the survivor checked every chunk on every pass (${JSON.stringify(sr)})`);

      sweeping = false;
      await loop;
      const ok = await sweeper.until(settled(admin, 0), SETTLE_MS);
      assert.equal(sweepErrors, [], 'every sweep ran without an error');
      assert.ok(ok, `quiescent within ${SETTLE_MS} ms: ${describePool(admin)}`);
      for (const k of killed) {
        assert.ok(sweeper.events.some((e) => e.pid === k.pid && e.client === k.clientId), `killed churner pid ${k.pid} (client ${k.clientId}) was recovered`);
      }
      const c = admin.census();
      assert.is(c.chunks.held, 0, 'the pool holds nothing');
      assert.is(c.chunks.orphan, 0, 'no orphans');
      assert.is(c.chunks.free, c.chunks.total);
      const f = admin.fsck();
      assert.ok(f.clean, `fsck clean: ${JSON.stringify(f)}`);
      assert.ok(Date.now() - t0 < 40_000, `bounded: took ${Date.now() - t0} ms`);
    } finally {
      sweeping = false;
      await loop;
      await killAll();
      admin.close();
    }
  });
});

// ------------------------------------------------------ 3. SIGSTOP beyond the lease

test('SIGSTOP beyond the lease: revoked but not reclaimed while stopped; after SIGCONT LeaseExpiredError and no write lands in reclaimed memory', async () => {
  await withPoolName('stop', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '32MiB', ...PLAIN_FREE });
    let stopped: Child | null = null;
    try {
      admin.setLeaseMs(LEASE);
      const mine = allocStamped(admin, PARENT_CLASSES);
      const mineChunks = chunksOf(mine);
      const writer = new Child(WRITER, [name]);
      const ready = await writer.take('ready');
      const wId = ready.clientId as number;
      const wBlocks = ready.blocks as Array<{ g: number; bytes: number }>;
      const wChunks = wBlocks.reduce((a, b) => a + b.bytes / CHUNK, 0);
      await writer.take('progress');
      const p1 = (await writer.take('progress')).writes as number;
      assert.ok(p1 > 0, 'the writer writes');
      assert.is(admin.census().chunks.held, mineChunks + wChunks);

      const sweeper = new Sweeper(admin);
      writer.proc.kill('SIGSTOP');
      stopped = writer;
      await sleep(20);
      assert.is(processState(writer.pid), 'T', 'the writer is stopped');
      await sweeper.during(3 * LEASE);
      const slot = admin.clientSlot(wId);
      assert.is(slot.state, 'revoked', `the stopped writer's lease was revoked: ${describePool(admin)}`);
      assert.is(slot.acknowledged, false, 'a stopped process cannot acknowledge');
      assert.ok(sweeper.results.some((r) => r.waiting.some((w) => w.client === wId && /stopped/.test(w.why))), 'the monitor waits for the stopped writer to be fenced, and says it is stopped');
      assert.ok(!sweeper.events.some((e) => e.client === wId), 'nothing of the stopped writer was reclaimed');
      assert.is(admin.census().chunks.held, mineChunks + wChunks, "the stopped writer's blocks are still held");
      assert.is(processState(writer.pid), 'T', 'still stopped');

      writer.proc.kill('SIGCONT');
      stopped = null;
      const fenced = await writer.take('fenced', 5000);
      assert.is(fenced.code, 'LEASE_EXPIRED', `LeaseExpiredError's code: ${JSON.stringify(fenced)}`);
      assert.is(fenced.name, 'LeaseExpiredError');
      const ok = await sweeper.until(settled(admin, mineChunks), SETTLE_MS);
      assert.ok(ok, `the fenced writer was recovered: ${describePool(admin)}`);
      const ev = sweeper.events.filter((e) => e.client === wId);
      assert.is(ev.length, 1, JSON.stringify(sweeper.events));
      assert.is(ev[0].reason, 'acknowledged', 'recovered on its acknowledgement, while its process lives');
      assert.is(ev[0].report.chunks, wChunks, "all of the writer's chunks were reclaimed");
      assert.is(writer.exit, null, 'the writer is still alive');

      // Take every free chunk, the writer's among them, and fill the writer's old ranges.
      const fill = fillFreeSpace(admin, true);
      assert.is(admin.census().chunks.free, 0, 'the parent took all free space');
      for (const b of wBlocks) {
        for (let off = 0; off < b.bytes; off += CHUNK) assert.ok(fill.chunkSet.has(b.g + off), `the writer's chunk ${b.g + off} is now the parent's`);
      }
      const pattern = (g: number): Uint8Array => {
        const p = new Uint8Array(CHUNK);
        new DataView(p.buffer).setFloat64(0, g, true);
        for (let i = 8; i < CHUNK; i++) p[i] = (i * 31 + g) & 0xFF;
        return p;
      };
      for (const b of wBlocks) for (let off = 0; off < b.bytes; off += CHUNK) admin.write(b.g + off, pattern(b.g + off));
      const s0 = await (async () => { writer.send('stats'); return writer.take('stats'); })();
      await sleep(300);
      const s1 = await (async () => { writer.send('stats'); return writer.take('stats'); })();
      assert.is(writer.exit, null, 'the writer lived through the check');
      assert.is(s1.landedAfterFence, 0, `every write after the fence was refused (${JSON.stringify(s1)})`);
      assert.ok(!writer.messages.some((m) => m.type === 'error'), `the writer met no error but LeaseExpiredError: ${writer.describe()}`);
      assert.ok((s1.attemptsAfterFence as number) > (s0.attemptsAfterFence as number), `the writer kept trying to write (${JSON.stringify(s0)} -> ${JSON.stringify(s1)})`);
      const got = new Uint8Array(CHUNK);
      const bad: number[] = [];
      for (const b of wBlocks) {
        for (let off = 0; off < b.bytes; off += CHUNK) {
          admin.readInto(b.g + off, got);
          const want = pattern(b.g + off);
          if (!got.every((v, i) => v === want[i])) bad.push(b.g + off);
        }
      }
      assert.equal(bad, [], 'no write of the fenced writer landed in memory handed to the parent');
      for (const b of fill.blocks) admin.free(b.g);
      writer.send('exit');
      assert.is((await writer.exitWithin()).code, 0, writer.describe());
      assertOnlyParentHolds(admin, mine, 'after SIGSTOP');
    } finally {
      if (stopped !== null) stopped.proc.kill('SIGCONT');
      await killAll();
      admin.close();
    }
  });
});

test.run();
