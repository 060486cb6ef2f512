/**
 * Never two holders (issue 9): one deterministic test per finding of the
 * review, each freezing a client at the exact step (DMEM_CRASH_ACTION=stop
 * makes an armed crash point SIGSTOP the process) or forcing the
 * interleaving, then checking that no block is ever held by two clients and
 * that nothing leaks once everyone is fenced.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CorruptPoolError, DoubleFreeError, DmemError, InvalidAddressError, LeaseMonitor, PoolExhaustedError, openPool, type Pool,
} from '../src/index.js';
import { processState } from '../src/proc.js';
import { fenceOf, markTransportCut } from '../src/fencing.js';
import { shmPath } from '../plugins/cxl-shm/index.js';
import type { Plan } from './fixtures/recovery-child.js';
import {
  Child, Sweeper, allocStamped, assertOnlyParentHolds, brokenStamps, chunksOf, describePool, fillFreeSpace, killAll, settled, sleep,
} from './harness.js';
import { ROOT, is, withPoolName } from './helpers.js';

const CHILD = fileURLToPath(new URL('./fixtures/recovery-child.js', import.meta.url));
const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const LEASE = 300;
const CHUNK = 4096;
const RING_CHUNKS = 32;
const SETTLE_MS = 5000;

/** Starts a child running `plan` with crash point `point` armed to stop it there. */
function stoppingChild(name: string, plan: Plan, point: string): Child {
  // No block cache: the points under test are on the core's plain paths (a cached free never reaches free.chunk.logged).
  return new Child(CHILD, [name, JSON.stringify(plan)], { DMEM_CRASH_POINT: point, DMEM_CRASH_ACTION: 'stop', DMEM_BLOCK_CACHE: '0' });
}

/** Waits until process `pid` is stopped (state T). */
async function stopped(pid: number, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (processState(pid) !== 'T') {
    if (Date.now() > deadline) throw new Error(`${what} (pid ${pid}) did not stop at its crash point; state ${processState(pid)}`);
    await sleep(5);
  }
}

/** Checks that every chunk of a kept fill still starts with the fill pattern (none was handed to anyone else). */
function fillIntact(pool: Pool, blocks: Array<{ g: number; chunks: number }>): number {
  let bad = 0;
  const got = new Uint8Array(16);
  for (const b of blocks) {
    for (let k = 0; k < b.chunks; k++) {
      pool.readInto(b.g + k * CHUNK, got);
      if (!got.every((x) => x === 0xEE)) bad++;
    }
  }
  return bad;
}

async function withAdmin(tag: string, fn: (name: string, admin: Pool) => Promise<void>): Promise<void> {
  await withPoolName(tag, async (name) => {
    // No block cache: what the admin frees (the harness's fills) is free in the census at once.
    const admin = await openPool(`shm:${name}`, { size: '32MiB', blockCache: 0 });
    try {
      admin.setLeaseMs(LEASE);
      await fn(name, admin);
    } finally {
      await killAll();
      admin.close();
    }
  });
}

test('finding 1: a client paused between its span CAS and its owner-log write keeps its block through revocation and orphan sweeps; resumed, it is fenced', async () => {
  await withAdmin('f1', async (name, admin) => {
    const mine = allocStamped(admin, [0, 4]);
    // Prep passes alloc.chunk.committed once; the first action alloc stops right after its CAS.
    const child = stoppingChild(name, { prep: [{ a: 0 }], action: [{ a: 0 }, { a: 0 }] }, 'alloc.chunk.committed:1');
    const prepared = await child.take('prepared');
    child.send('go');
    await stopped(child.pid, 'the allocating child');
    const sweeper = new Sweeper(admin);
    await sweeper.during(6 * LEASE);
    const slot = admin.clientSlot(prepared.clientId as number);
    assert.is(slot.state, 'revoked', `the paused child was revoked: ${describePool(admin)}`);
    assert.ok(admin.census().chunks.orphan >= 1, 'its allocation in flight shows as an orphan');
    assert.is(sweeper.results.reduce((a, r) => a + r.orphansFreed, 0), 0, 'no orphan sweep freed it');
    assert.not.ok(sweeper.events.some((e) => e.client === prepared.clientId), 'nothing of the paused child was reclaimed');

    const fill = fillFreeSpace(admin, true);
    child.proc.kill('SIGCONT');
    const err = await child.take('error');
    assert.is(err.code, 'LEASE_EXPIRED', 'resumed, the child finds itself fenced before its next write');
    const ok = await sweeper.until(settled(admin, chunksOf(mine) + fill.chunks), SETTLE_MS);
    assert.ok(ok, `the child was recovered and only the admin holds memory: ${describePool(admin)}`);
    assert.is(fillIntact(admin, fill.blocks), 0, "no chunk of the admin's fill was written or freed by the resumed child");
    assert.equal(brokenStamps(admin, mine), []);
    for (const b of fill.blocks) admin.free(b.g);
    assertOnlyParentHolds(admin, mine, 'finding 1');
  });
});

test('finding 2: a recoverer paused mid-recovery is never taken over, by the monitor or by dmem recover; resumed, it finishes alone', async () => {
  await withAdmin('f2', async (name, admin) => {
    const mine = allocStamped(admin, [0, 3]);
    const victim = new Child(CHILD, [name, JSON.stringify({ prep: [{ a: 0 }, { a: 2 }, { a: 5 }, { a: 9 }], action: [] })]);
    const v = await victim.take('prepared');
    const vId = v.clientId as number;
    victim.proc.kill('SIGKILL');
    await victim.exitWithin();
    assert.ok(admin.revokeClient(vId, v.gen as number), 'the dead victim is revoked by hand');
    const rec = stoppingChild(name, { prep: [{ a: 0 }], action: [{ recover: vId }] }, 'recover.partial');
    const r = await rec.take('prepared');
    rec.send('go');
    await stopped(rec.pid, 'the recoverer');
    assert.is(admin.clientSlot(vId).state, 'recovering');
    const heldMidway = admin.census().chunks.held;

    const sweeper = new Sweeper(admin);
    await sweeper.during(5 * LEASE);
    assert.is(admin.clientSlot(r.clientId as number).state, 'revoked', 'the paused recoverer was revoked');
    assert.not.ok(sweeper.events.some((e) => e.client === vId), 'the monitor did not take over');
    assert.ok(sweeper.results.some((x) => x.waiting.some((w) => w.client === vId && /recoverer/.test(w.why))), 'and said it waits for the recoverer');
    const cli = spawnSync(process.execPath, [CLI, 'recover', '--pool', name, '--client', String(vId), '--json'], { encoding: 'utf8', timeout: 30_000 });
    assert.is(cli.status, 1, cli.stdout + cli.stderr);
    assert.is((JSON.parse(cli.stdout.trim().split('\n')[0]) as { error: { code: string } }).error.code, 'CLIENT_ALIVE', 'dmem recover refuses too');
    assert.is(admin.census().chunks.held, heldMidway, 'nothing was freed by anyone else meanwhile');

    rec.proc.kill('SIGCONT');
    await rec.take('survived');
    const ok = await sweeper.until(settled(admin, chunksOf(mine)), SETTLE_MS);
    assert.ok(ok, `everything came back once: ${describePool(admin)}`);
    assertOnlyParentHolds(admin, mine, 'finding 2');
  });
});

test('finding 3: a client in another PID namespace is never judged gone by its pid', async () => {
  const probe = spawnSync('unshare', ['--pid', '--fork', 'true']);
  if (probe.status !== 0) {
    console.log(`skip: finding 3 needs \`unshare --pid\` (util-linux, root): ${probe.error?.message ?? probe.stderr}`);
    return;
  }
  await withAdmin('f3', async (name, admin) => {
    const mine = allocStamped(admin, [0]);
    const child = new Child(CHILD, [name, JSON.stringify({ prep: [{ a: 0 }, { a: 4 }], action: [] })], {}, ['unshare', '--pid', '--fork']);
    const p = await child.take('prepared');
    assert.ok((p.pid as number) < 10, `the child sees itself as pid ${p.pid as number} of its own namespace`);
    // The child's node runs as a child of unshare; stop it so its lease runs out.
    const inner = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    process.kill(inner, 'SIGSTOP');
    const sweeper = new Sweeper(admin);
    await sweeper.during(5 * LEASE);
    const id = p.clientId as number;
    assert.is(admin.clientSlot(id).state, 'revoked');
    assert.not.ok(sweeper.events.some((e) => e.client === id), `not recovered: ${JSON.stringify(sweeper.events)}`);
    assert.ok(sweeper.results.some((r) => r.waiting.some((w) => w.client === id && /another PID namespace/.test(w.why))), 'the monitor says why it waits');
    assert.is(admin.census().chunks.held, chunksOf(mine) + (p.chunks as number), 'its memory is still held');
    process.kill(inner, 'SIGKILL');
  });
});

test('finding 5: a client waiting on a lock held by a paused client renews its lease, gets PoolBusyError in time, and the monitor keeps sweeping', async () => {
  await withAdmin('f5', async (name, admin) => {
    const mine = allocStamped(admin, [0]);
    const holder = stoppingChild(name, { prep: [{ a: 0 }, { a: 0 }], action: [{ d: 0 }] }, 'ring.entry-written');
    await holder.take('prepared');
    holder.send('go');
    await stopped(holder.pid, 'the lock holder');
    const waiter = new Child(CHILD, [name, JSON.stringify({ prep: [{ a: 0 }], action: [{ d: 0 }] })]);
    const w = await waiter.take('prepared');
    const sweeper = new Sweeper(admin);
    waiter.send('go');
    const t0 = Date.now();
    let sweeps = 0;
    while (waiter.messages.every((m) => m.type !== 'error') && Date.now() - t0 < 6 * LEASE) {
      sweeper.once();
      sweeps++;
      await sleep(LEASE / 4);
    }
    const err = await waiter.take('error');
    assert.is(err.code, 'POOL_BUSY', `the waiter gave up with PoolBusyError: ${JSON.stringify(err)}`);
    assert.not.ok(sweeper.results.some((r) => r.revoked.includes(w.clientId as number)), 'the waiter renewed its lease while it waited');
    assert.ok(sweeps >= 6, `the monitor kept sweeping (${sweeps} sweeps) while the lock was held`);

    holder.proc.kill('SIGCONT');
    await holder.take('survived');
    const ok = await sweeper.until(settled(admin, chunksOf(mine) + RING_CHUNKS), SETTLE_MS);
    assert.ok(ok, `the holder's push completed and was freed; both children recovered: ${describePool(admin)}`);
    assertOnlyParentHolds(admin, mine, 'finding 5', RING_CHUNKS);
  });
});

/**
 * The delayed-free ring's steps with the pusher or popper frozen there past
 * its lease: it holds the ring's lock, so nobody else may repair or pop
 * the ring, and being alive on this host it is never judged gone. While it
 * is frozen: it is revoked, nothing of it is reclaimed, the monitor keeps
 * sweeping (its lock waits are capped), and the admin takes every free
 * chunk (at ring.popped that includes the block the popper just freed).
 * Resumed: it finishes its step or finds itself fenced, and once it is
 * recovered the queued block has been freed exactly once and no chunk of
 * the admin's fill was touched.
 */
for (const [point, action] of [
  ['ring.retired', [{ d: 0 }]],
  ['ring.popped', [{ d: 0 }, { reclaim: 4 }]],
] as const) {
  test(`${point}: a client frozen there past its lease, holding the ring's lock, is waited for; resumed, nothing is freed twice`, async () => {
    await withAdmin(point.replace('.', '-'), async (name, admin) => {
      const mine = allocStamped(admin, [0, 2]);
      const child = stoppingChild(name, { prep: [{ a: 0 }, { a: 0 }, { a: 1 }], action: [...action] }, point);
      const prepared = await child.take('prepared');
      const id = prepared.clientId as number;
      child.send('go');
      await stopped(child.pid, `the client at ${point}`);
      const heldFrozen = admin.census().chunks.held;

      const sweeper = new Sweeper(admin);
      await sweeper.during(6 * LEASE);
      assert.is(admin.clientSlot(id).state, 'revoked', `the frozen client was revoked: ${describePool(admin)}`);
      assert.not.ok(sweeper.events.some((e) => e.client === id), 'nothing of the frozen client was reclaimed');
      assert.ok(sweeper.results.length >= 6, `the monitor kept sweeping (${sweeper.results.length} sweeps)`);
      assert.ok(sweeper.results.some((r) => r.waiting.some((w) => w.client === id)), 'and reported that it waits for the frozen client');
      assert.is(admin.census().chunks.held, heldFrozen, 'no chunk was freed or taken while it was frozen');

      const fill = fillFreeSpace(admin, true);
      child.proc.kill('SIGCONT');
      await child.exitWithin();
      const end = child.messages.find((m) => m.type === 'survived' || m.type === 'error');
      assert.ok(end, `the resumed client reported how its step ended: ${child.describe()}`);
      if (end.type === 'error') assert.is(end.code, 'LEASE_EXPIRED', `resumed, its only failure is finding itself fenced: ${JSON.stringify(end)}`);
      const ok = await sweeper.until(settled(admin, chunksOf(mine) + fill.chunks + RING_CHUNKS), SETTLE_MS);
      assert.ok(ok, `the client was recovered; only the admin and the ring hold memory: ${describePool(admin)}`);
      assert.is(fillIntact(admin, fill.blocks), 0, "no chunk of the admin's fill was written or freed by the resumed client or its recovery");
      for (const b of fill.blocks) admin.free(b.g);
      for (let i = 0; i < 4; i++) admin.reclaim();
      assert.is(admin.epochState().pending, 0, 'every queued block left the ring');
      assertOnlyParentHolds(admin, mine, point, RING_CHUNKS);
    });
  });
}

test('a transport cut recorded for one pool never fences the client of the same id and generation on another pool', async () => {
  await withPoolName('cut-a', async (a) => {
    await withPoolName('cut-b', async (b) => {
      const adminA = await openPool(`shm:${a}`, { size: '8MiB' });
      const adminB = await openPool(`shm:${b}`, { size: '8MiB' });
      const child = new Child(CHILD, [b, JSON.stringify({ prep: [{ a: 0 }], action: [] })]);
      try {
        const held = await child.take('prepared');
        const id = held.clientId as number;
        const gen = held.gen as number;
        assert.ok(adminB.revokeClient(id, gen), 'the live child of pool B is revoked');
        const slot = adminB.clientSlot(id);
        markTransportCut(adminA, id, gen);
        const v = fenceOf(adminB, slot);
        assert.is(v.fenced, false, `a cut on pool A does not fence pool B's client ${id} gen ${gen}: ${JSON.stringify(v)}`);
        markTransportCut(adminB, id, gen);
        assert.equal(fenceOf(adminB, slot), { fenced: true, reason: 'transport-cut' }, 'a cut on its own pool does');
      } finally {
        await killAll();
        adminA.close();
        adminB.close();
      }
    });
  });
});

test('finding 9: of two racing frees of one block exactly one wins; the loser cannot free the next holder', async () => {
  await withAdmin('f9', async (name, admin) => {
    const mine = allocStamped(admin, [0]);
    const freer = stoppingChild(name, { prep: [{ a: 0 }], action: [{ f: 0 }] }, 'free.chunk.logged');
    const p = await freer.take('prepared');
    const g = (p.blocks as Array<{ g: number }>)[0].g;
    freer.send('go');
    await stopped(freer.pid, 'the first freer');
    let err: unknown;
    try { admin.free(g); } catch (e) { err = e; }
    assert.ok(err instanceof DoubleFreeError || err instanceof InvalidAddressError, `the second free of ${g} is refused: ${String(err)}`);
    const fill = fillFreeSpace(admin, true);
    assert.not.ok(fill.chunkSet.has(g), 'the block being freed is not handed out before its free completes');
    freer.proc.kill('SIGCONT');
    await freer.take('survived');
    assert.is(fillIntact(admin, fill.blocks), 0, "the first freer's free touched none of the admin's blocks");
    const sweeper = new Sweeper(admin);
    assert.ok(await sweeper.until(settled(admin, chunksOf(mine) + fill.chunks), SETTLE_MS), describePool(admin));
    for (const b of fill.blocks) admin.free(b.g);
    assertOnlyParentHolds(admin, mine, 'finding 9');
  });
});

test('finding 10: the orphan sweep frees only chunks it saw orphan a lease earlier; a free paused under the same span header keeps its chunk', async () => {
  await withAdmin('f10', async (name, admin) => {
    const mine = allocStamped(admin, [0]);
    // One span with free chunks and nothing else free: every class-0
    // allocation below, of any client, lands in it.
    const fill = fillFreeSpace(admin, true);
    const hole = fill.blocks.find((b) => b.chunks === 16)!;
    fill.blocks.splice(fill.blocks.indexOf(hole), 1);
    admin.free(hole.g);
    const spanOf = (g: number): number => Math.floor((g - admin.geometry.dataOffset) / (32 * CHUNK));
    const span = spanOf(hole.g);

    // A leftover orphan in that span: a free cut short after its FREED
    // write (the child dies there) whose span commit log names someone else.
    const dead = stoppingChild(name, { prep: [{ a: 0 }], action: [{ f: 0 }] }, 'free.chunk.logged');
    const pd = await dead.take('prepared');
    const leftover = (pd.blocks as Array<{ g: number }>)[0].g;
    dead.send('go');
    await stopped(dead.pid, 'the dying freer');
    const t = admin.allocClass(0);
    admin.free(t);
    assert.is(spanOf(t), span, 'the admin churned the same span (its commit log names the admin now)');
    dead.proc.kill('SIGKILL');
    await dead.exited;
    assert.ok(admin.revokeClient(pd.clientId as number, pd.gen as number), 'the dead child was revoked');
    assert.ok(admin.recoverClient(pd.clientId as number) !== null, 'and recovered');
    assert.is(admin.census().chunks.orphan, 1, `its half-freed chunk is an orphan: ${describePool(admin)}`);

    // A live client frees a block of the same span and is paused between
    // its FREED write and its bit clear, after renewing since the snapshot.
    const freer = stoppingChild(name, { prep: [{ a: 0 }], action: [{ f: 0 }] }, 'free.chunk.logged');
    const pf = await freer.take('prepared');
    const inFlight = (pf.blocks as Array<{ g: number }>)[0].g;
    assert.is(spanOf(inFlight), span, 'the paused free is under the same span header');
    const monitor = new LeaseMonitor(admin);
    const t0 = Date.now();
    monitor.sweep(t0);
    const before = admin.scanOrphans().filter((r) => r.index === span);
    assert.is(before.length, 1, 'the span is recorded once');
    const heartbeat0 = admin.clientSlot(pf.clientId as number).heartbeatMs;
    const renewed = Date.now() + 10 * LEASE;
    while (admin.clientSlot(pf.clientId as number).heartbeatMs <= heartbeat0 && Date.now() < renewed) await sleep(5);
    assert.ok(admin.clientSlot(pf.clientId as number).heartbeatMs > heartbeat0, 'the freer renewed after the snapshot');
    freer.send('go');
    await stopped(freer.pid, 'the paused freer');
    const now = admin.scanOrphans().filter((r) => r.index === span);
    assert.is(now.length, 1);
    assert.is(now[0].word, before[0].word, 'the span header did not change: the FREED write is in the owner log only');
    assert.ok(now[0].bits !== before[0].bits, 'now the paused free shows as orphan too');

    // A lease later every grace rule holds: the freer renewed and is not revoked.
    const r = monitor.sweep(t0 + LEASE);
    assert.equal(r.revoked, [], 'the paused freer is within its lease');
    assert.is(r.orphansFreed, 1, 'the leftover was reclaimed');
    assert.is(admin.census().chunks.orphan, 1, `the paused free's chunk stays allocated: ${describePool(admin)}`);
    const refill = fillFreeSpace(admin, true);
    assert.ok(refill.chunkSet.has(leftover), 'the leftover chunk is free again');
    assert.not.ok(refill.chunkSet.has(inFlight), 'the chunk of the paused free is not handed out before its free completes');

    freer.proc.kill('SIGCONT');
    await freer.take('survived');
    const refused = refill.blocks.filter((b) => {
      try { admin.readInto(b.g, new Uint8Array(16)); return false; } catch { return true; }
    });
    assert.equal(refused, [], "the resumed free cleared none of the admin's bits");
    assert.is(fillIntact(admin, [...fill.blocks, ...refill.blocks]), 0);
    for (const b of [...fill.blocks, ...refill.blocks]) admin.free(b.g);
    const sweeper = new Sweeper(admin);
    assert.ok(await sweeper.until(settled(admin, chunksOf(mine)), SETTLE_MS), describePool(admin));
    assertOnlyParentHolds(admin, mine, 'finding 10');
  });
});

test('finding 11: a recoverer paused between a section header and its spans leaves alone the seals of a LARGE block that a retire and an allocation put there meanwhile', async () => {
  await withAdmin('f11', async (name, admin) => {
    const sectionOf = (g: number): number => Math.floor((g - admin.geometry.dataOffset) / admin.geometry.sectionBytes);
    // x claims a section (its header now names x's claim), frees what it
    // took there, and exits without closing.
    const x = new Child(CHILD, [name, JSON.stringify({ prep: [{ a: 0 }], action: [{ f: 0 }] })], { DMEM_BLOCK_CACHE: '0' });
    const px = await x.take('prepared');
    const claimed = sectionOf((px.blocks as Array<{ g: number }>)[0].g);
    x.send('go');
    await x.take('survived');
    await x.exitWithin();
    assert.ok(admin.revokeClient(px.clientId as number, px.gen as number), 'x revoked');

    // R recovers x and is stopped when its walk has read the header of
    // x's section (the only CHUNK section), before its spans.
    const r = new Child(CHILD, [name, JSON.stringify({ prep: [], action: [{ recover: px.clientId }] })],
      { DMEM_CRASH_POINT: 'walk.section', DMEM_CRASH_ACTION: 'stop', DMEM_BLOCK_CACHE: '0' });
    await r.take('prepared');
    r.send('go');
    await stopped(r.pid, 'the recoverer');

    // 2 MiB blocks take every FREE section; the last one retires x's empty
    // section (sealing its spans) and takes it.
    const large: number[] = [];
    for (let i = 0; i < admin.geometry.sections; i++) large.push(admin.allocClass(9));
    assert.ok(large.some((g) => sectionOf(g) === claimed), `a 2 MiB block took x's retired section ${claimed}: ${describePool(admin)}`);
    const stamp = new Uint8Array(16).fill(0xEE);
    for (const g of large) for (let k = 0; k < 512; k++) admin.write(g + k * CHUNK, stamp);

    r.proc.kill('SIGCONT');
    await r.take('survived');
    const refused: string[] = [];
    for (const g of large) {
      for (let k = 0; k < 512; k++) {
        try { admin.write(g + k * CHUNK, stamp); } catch (e) { refused.push(`${g} chunk ${k}: ${String(e)}`); }
      }
    }
    assert.equal(refused.slice(0, 3), [], `every chunk of every 2 MiB block is still inside it (${refused.length} refused)`);
    assert.ok(admin.fsck().clean, `fsck clean: ${describePool(admin)}`);
    for (const g of large) admin.free(g);
    const sweeper = new Sweeper(admin);
    assert.ok(await sweeper.until(settled(admin, 0), SETTLE_MS), describePool(admin));
    assertOnlyParentHolds(admin, [], 'finding 11');
  });
});

// The three free paths: chunk bits, whole spans, sections.
const FINDING_12 = [
  { bytes: 16 * 1024, point: 'free.chunk.logged', chunks: 4 },
  { bytes: 256 * 1024, point: 'free.spans.logged', chunks: 64 },
  { bytes: 6 * 1024 * 1024, point: 'free.sections.logged', chunks: 1536 },
];
for (const { bytes, point, chunks } of FINDING_12) {
  test(`finding 12 (${bytes / 1024} KiB): the recovery of a block's allocator leaves alone a pool owner's free of it paused at ${point}`, async () => {
    await withAdmin('f12', async (name, admin) => {
      // x creates a region (x allocates the block, then hands it to the
      // region owner: the span's commit log still names x's ALLOC) and dies.
      const x = new Child(CHILD, [name, JSON.stringify({ prep: [{ rc: 'f12', bytes }], action: [] })], { DMEM_BLOCK_CACHE: '0' });
      const px = await x.take('prepared');
      const region = (px.regions as number[])[0];
      x.proc.kill('SIGKILL');
      await x.exited;
      assert.ok(admin.revokeClient(px.clientId as number, px.gen as number), 'x revoked');

      // y destroys the region and is stopped between the FREED write and the release.
      const y = stoppingChild(name, { prep: [], action: [{ rd: 'f12' }] }, point);
      await y.take('prepared');
      y.send('go');
      await stopped(y.pid, 'the destroying client');

      const report = admin.recoverClient(px.clientId as number);
      assert.ok(report !== null && report.complete, 'x recovered');
      assert.is(report!.blocks, 0, `x's recovery freed nothing: the region's block is the region owner's, and its free is y's (${JSON.stringify(report)})`);
      assert.is(admin.census().chunks.orphan, chunks, `the region's ${chunks} chunks stay allocated while y's free is under way: ${describePool(admin)}`);
      const fill = fillFreeSpace(admin, true);
      for (let k = 0; k < chunks; k++) assert.not.ok(fill.chunkSet.has(region + k * CHUNK), "the region's chunks are not handed out before y's free completes");

      y.proc.kill('SIGCONT');
      await y.take('survived');
      const refused = fill.blocks.filter((b) => {
        try { admin.readInto(b.g, new Uint8Array(16)); return false; } catch { return true; }
      });
      assert.equal(refused, [], "y's resumed free cleared none of the admin's bits");
      assert.is(fillIntact(admin, fill.blocks), 0);
      for (const b of fill.blocks) admin.free(b.g);
      const sweeper = new Sweeper(admin);
      // What stays held: the region directory (64 KiB, the region owner's).
      assert.ok(await sweeper.until(settled(admin, 16), SETTLE_MS), describePool(admin));
      assertOnlyParentHolds(admin, [], 'finding 12', 16);
    });
  });
}

test('close() after a revocation it never noticed acknowledges it, so recovery need not wait', async () => {
  await withAdmin('close-ack', async (name, admin) => {
    const p = await openPool(`shm:${name}`, { create: false, heartbeatMs: 0 });
    p.allocClass(2);
    assert.ok(admin.revokeClient(p.clientId, p.clientSlot(p.clientId).gen));
    p.close();
    assert.ok(admin.clientSlot(p.clientId).acknowledged, 'acknowledged by close');
    const r = new LeaseMonitor(admin).sweep();
    assert.equal(r.recovered.map((e) => e.reason), ['acknowledged']);
    assert.is(admin.census().chunks.held, 0);
  });
});

test('finding 6: every access stays inside one block, heap object or region', async () => {
  const p = await openPool('memory:', { size: '16MiB' });
  try {
    const blocks = Array.from({ length: 4 }, () => p.allocClass(0)).sort((x, y) => x - y);
    const a = blocks[0];
    const lo = blocks.find((g) => blocks.includes(g + CHUNK));
    assert.ok(lo !== undefined, `two of four fresh 4 KiB blocks are adjacent: ${blocks.join(', ')}`);
    assert.throws(() => p.write(lo, new Uint8Array(2 * CHUNK)), is(InvalidAddressError), 'an 8 KiB write from one 4 KiB block into the next');
    assert.throws(() => p.write(a + CHUNK - 4, new Uint8Array(8)), is(InvalidAddressError), 'a write across the end of a block');
    p.write(a + CHUNK - 8, new Uint8Array(8));
    const o = p.heap.alloc(64);
    p.write(o, new Uint8Array(64));
    assert.throws(() => p.write(o, new Uint8Array(65)), is(InvalidAddressError), 'past the end of a heap object');
    const slab = o - ((o - p.geometry.dataOffset) % (64 * 1024));
    assert.throws(() => p.write(slab, new Uint8Array(8)), is(InvalidAddressError), "a slab's bitmap is no client's memory");
    assert.throws(() => p.cas(slab, 0n, 1n), is(InvalidAddressError), 'nor for a CAS');
    p.heap.free(o);
    assert.throws(() => p.write(o, new Uint8Array(8)), is(InvalidAddressError), 'a freed heap object');
    const r = p.createRegion('bounds', 8192);
    r.write(0, new Uint8Array(8));
    p.write(r.gaddr, new Uint8Array(8192));
    p.destroyRegion('bounds');
    assert.throws(() => r.write(0, new Uint8Array(8)), is(InvalidAddressError), "a destroyed region's handle");
    const d = p.heap.alloc(128);
    p.heap.freeDelayed(d);
    assert.is(p.read(d, 8).length, 8, 'a queued object may still be read by operations of its epoch');
    p.free(a);
    assert.throws(() => p.read(a, 8), is(InvalidAddressError), 'a freed block');
  } finally {
    p.close();
  }
});

test('finding 7: a free run of sections that straddles the next-fit cursor is found', async () => {
  for (let seed = 1; seed < 20; seed++) {
    const p = await openPool('memory:', { size: '24MiB', seed });
    try {
      const blocks: number[] = [];
      for (;;) {
        try { blocks.push(p.allocClass(9)); } catch (e) { if (e instanceof PoolExhaustedError) break; throw e; }
      }
      const last = blocks[blocks.length - 1];
      const next = last + 2 * 1024 * 1024;
      if (!blocks.includes(next)) continue; // the last section taken was the pool's last: no run can straddle
      p.free(last);
      p.free(next);
      const big = p.alloc(4 * 1024 * 1024);
      assert.is(big, last, 'the two free sections at the cursor make one 4 MiB block');
      return;
    } finally {
      p.close();
    }
  }
  assert.unreachable('no seed put the cursor inside the pool');
});

test('finding 8: every superblock word is validated on attach; the error names the word and value, and changes nothing', async () => {
  await withPoolName('f8', async (name) => {
    (await openPool(`shm:${name}`, { size: '8MiB' })).close();
    const path = shmPath(name);
    const good = readFileSync(path);
    for (const [off, value, what] of [[136, 0x10n, 'regionDirOff'], [120, 0x7ffffffff000n, 'limboOff'], [104, 0n, 'leaseMs'], [128, 1n << 60n, 'limboLock'], [1000, 7n, 'reserved']] as const) {
      const bad = Buffer.from(good);
      bad.writeBigUInt64LE(value, off);
      writeFileSync(path, bad);
      const before = createHash('sha256').update(bad).digest('hex');
      let err: unknown;
      try { (await openPool(`shm:${name}`, { create: false })).close(); } catch (e) { err = e; }
      assert.ok(err instanceof CorruptPoolError, `${what}: ${String(err)}`);
      assert.ok((err as DmemError).message.includes(`byte ${off}`) && (err as DmemError).message.includes(value.toString(16)), (err as Error).message);
      assert.is(createHash('sha256').update(readFileSync(path)).digest('hex'), before, `${what}: the pool file is unchanged`);
    }
    writeFileSync(path, good.subarray(0, good.length - 2 * 1024 * 1024));
    let err: unknown;
    try { (await openPool(`shm:${name}`, { create: false })).close(); } catch (e) { err = e; }
    assert.ok(err instanceof CorruptPoolError && /is \d+ bytes but its superblock says the pool is 8388608 bytes/.test(err.message), String(err));
  });
});

test.run();
