/**
 * Named regions (issue 5, part 3): create/open/list/destroy by name, names
 * and sizes refused with the right error, memory zeroed and given back,
 * regions owned by the pool (they survive their creator's close and death,
 * and `pool.free` refuses them), map() shared by two processes, concurrent
 * creates of one name from four processes, and the directory lock: waited
 * for while its holder lives, taken over and repaired when it is dead.
 * In-process pools use the debug core (asserts on).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  InvalidAddressError, InvalidArgumentError, LeaseMonitor, Pool, PoolBusyError, PoolExhaustedError, RegionExistsError,
  RegionNotFoundError, memoryTransport, offsetOf, openPool, type Region, type WindowedTransport,
} from '../src/index.js';
import { is, withPoolName } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 4 * KiB;
/** The directory is one 64 KiB block: 16 chunks. */
const DIR_CHUNKS = 16;
const CHILD = fileURLToPath(new URL('./fixtures/region-child.js', import.meta.url));

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const allZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

function memPool(t: WindowedTransport = memoryTransport(64 * MiB), create = true): Pool {
  return Pool.attach(t, { create, seed: 11, debug: true, heartbeatMs: 0 });
}

/** Fills every free chunk of the pool with 0xFF and frees it again, so that no memory reads as zeros by chance. */
function dirtyFreeMemory(pool: Pool): void {
  const blocks: number[] = [];
  for (;;) {
    try {
      blocks.push(pool.allocClass(4));
    } catch (e) {
      if (e instanceof PoolExhaustedError) break;
      throw e;
    }
  }
  const ones = new Uint8Array(64 * KiB).fill(0xFF);
  for (const g of blocks) {
    pool.write(g, ones);
    pool.free(g);
  }
  assert.ok(blocks.length > 100, 'the pool was filled');
}

function pidOf(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true);
}

// ------------------------------------------------------ single process

test('create, exists, open, list: one gaddr and size everywhere, zero-filled memory', () => {
  const pool = memPool();
  dirtyFreeMemory(pool);
  const a = pool.createRegion('alpha', 10_000);
  const b = pool.createRegion('beta', '1MiB');
  assert.is(a.name, 'alpha');
  assert.is(a.bytes, 10_000);
  assert.is(b.bytes, MiB, 'sizes may be written as "1MiB"');
  assert.ok(pool.regionExists('alpha') && pool.regionExists('beta'));
  assert.not.ok(pool.regionExists('gamma'));
  assert.ok(allZero(a.read(0, a.bytes)), 'a new region reads as zeros although its memory was dirty');
  assert.ok(allZero(b.read(0, b.bytes)), 'a new 1 MiB region reads as zeros');

  const a2 = pool.openRegion('alpha');
  assert.is(a2.gaddr, a.gaddr);
  assert.is(a2.bytes, a.bytes);
  assert.is(pool.openRegion('beta').gaddr, b.gaddr);
  assert.equal(pool.listRegions(), [
    { name: 'alpha', bytes: 10_000, gaddr: a.gaddr },
    { name: 'beta', bytes: MiB, gaddr: b.gaddr },
  ]);

  a.write(9_990, text('0123456789'));
  assert.equal(a2.read(9_990, 10), text('0123456789'), 'a second handle sees the write');
  assert.equal(pool.read(a.gaddr + 9_990, 10), text('0123456789'), 'pool.read on the region gaddr works');
  pool.write(b.gaddr + 5, text('xyz'));
  assert.equal(b.read(5, 3), text('xyz'), 'pool.write on the region gaddr works');
  const exact = pool.createRegion('exact', 4 * KiB);
  assert.equal(exact.read(4 * KiB, 0), new Uint8Array(0), 'an empty read at the end of a region that fills its block');
  exact.write(4 * KiB, new Uint8Array(0));
  assert.is(b.map().length, MiB, 'map() covers the region');
  assert.equal(b.map().subarray(5, 8), text('xyz'));
  pool.close();
});

test('destroy: the name is gone, the memory comes back, the name can be used again', () => {
  const pool = memPool();
  const empty = pool.census().chunks;
  pool.createRegion('keep', 1);
  const before = pool.census().chunks;
  assert.is(before.free, empty.free - DIR_CHUNKS - 1, 'the first create made the 64 KiB directory, then a 4 KiB region');
  const r = pool.createRegion('gone', 300 * KiB);
  assert.is(pool.census().chunks.free, before.free - 128, 'a 300 KiB region takes a 512 KiB block');

  pool.destroyRegion('gone');
  const after = pool.census().chunks;
  assert.is(after.free, before.free, 'every chunk came back');
  assert.is(after.held, before.held);
  assert.throws(() => pool.openRegion('gone'), is(RegionNotFoundError));
  assert.not.ok(pool.regionExists('gone'));
  assert.throws(() => pool.destroyRegion('gone'), is(RegionNotFoundError), 'a second destroy finds nothing');
  assert.throws(() => pool.destroyRegion('never'), is(RegionNotFoundError));
  assert.throws(() => r.read(0, 1), is(InvalidAddressError), 'a stale handle is refused once the memory is free');
  assert.equal(pool.listRegions().map((x) => x.name), ['keep']);

  const again = pool.createRegion('gone', 100);
  assert.is(again.bytes, 100, 'the name is free again');
  assert.ok(pool.fsck().clean);
  pool.close();
});

test('a name in use is refused with RegionExistsError and nothing changes', () => {
  const pool = memPool();
  const a = pool.createRegion('dup', 8 * KiB);
  a.write(0, text('abc'));
  const census = pool.census().chunks;
  const list = pool.listRegions();
  assert.throws(() => pool.createRegion('dup', 8 * KiB), is(RegionExistsError));
  assert.throws(() => pool.createRegion('dup', 3 * MiB), is(RegionExistsError), 'whatever the size');
  assert.equal(pool.census().chunks, census, 'no memory taken or lost');
  assert.equal(pool.listRegions(), list);
  assert.equal(pool.openRegion('dup').read(0, 3), text('abc'), 'the existing region is untouched');
  pool.close();
});

test('names: 1..40 bytes of UTF-8 without NUL; sizes: 1 B .. the pool', () => {
  const pool = memPool();
  const long = 'n'.repeat(41);
  assert.throws(() => pool.createRegion(long, 100), (e: unknown) => e instanceof InvalidArgumentError && /41 bytes.*limit is 40/.test(e.message));
  assert.throws(() => pool.openRegion(long), is(InvalidArgumentError));
  assert.throws(() => pool.regionExists(long), is(InvalidArgumentError));
  assert.throws(() => pool.createRegion('é'.repeat(20) + 'a', 100), is(InvalidArgumentError), '21 characters but 41 bytes of UTF-8');
  assert.throws(() => pool.createRegion('', 100), (e: unknown) => e instanceof InvalidArgumentError && /empty/.test(e.message));
  assert.throws(() => pool.createRegion('a\0b', 100), (e: unknown) => e instanceof InvalidArgumentError && /NUL/.test(e.message));
  assert.throws(() => pool.createRegion('zero', 0), is(InvalidArgumentError));
  assert.throws(() => pool.createRegion('negative', -1), is(InvalidArgumentError));
  assert.throws(() => pool.createRegion('fraction', 1.5), is(InvalidArgumentError));
  assert.throws(() => pool.createRegion('huge', '1GiB'), (e: unknown) => e instanceof InvalidArgumentError && /size/.test(e.message));
  assert.equal(pool.listRegions(), [], 'no refused call created anything');
  assert.is(pool.census().chunks.held, 0, 'no refused call took memory (not even the directory)');

  const ascii = pool.createRegion('x'.repeat(40), 100);
  const accents = pool.createRegion('é'.repeat(20), 100);
  assert.is(pool.openRegion('x'.repeat(40)).gaddr, ascii.gaddr, 'a 40-byte name works');
  assert.is(pool.openRegion('é'.repeat(20)).gaddr, accents.gaddr, '40 bytes of two-byte characters work');
  assert.not.ok(pool.regionExists('x'.repeat(39)), 'a prefix is another name');
  assert.equal(pool.listRegions().map((r) => r.name), ['x'.repeat(40), 'é'.repeat(20)], 'names come back whole from list');
  pool.close();
});

test('a 5 MiB region: whole sections, bounds checked at its end, given back on destroy', () => {
  const pool = memPool();
  dirtyFreeMemory(pool);
  const large0 = pool.census().sections.large;
  const r = pool.createRegion('big', '5MiB');
  const c = pool.census();
  assert.is(c.sections.large, large0 + 3, '5 MiB takes three 2 MiB sections');
  assert.is(c.perClass[10].blocks, 1);
  assert.ok(allZero(r.read(0, 5 * MiB)), 'all 5 MiB read as zeros');
  r.write(5 * MiB - 4, Uint8Array.of(9, 8, 7, 6));
  assert.equal(r.read(5 * MiB - 4, 4), Uint8Array.of(9, 8, 7, 6));
  assert.equal(pool.read(r.gaddr + 5 * MiB - 4, 4), Uint8Array.of(9, 8, 7, 6));
  assert.is(r.map()[5 * MiB - 1], 6);
  assert.throws(() => r.write(5 * MiB - 1, Uint8Array.of(1, 2)), is(InvalidAddressError), 'a write across the end');
  assert.throws(() => r.read(5 * MiB, 1), is(InvalidAddressError), 'a read past the end');
  assert.throws(() => r.read(-1, 1), is(InvalidArgumentError));
  assert.throws(() => r.read(0, 1.5), is(InvalidArgumentError));
  assert.equal(r.read(5 * MiB, 0), new Uint8Array(0), 'an empty read at the end is in range');
  pool.destroyRegion('big');
  assert.is(pool.census().sections.large, large0, 'the sections are free again');
  assert.ok(pool.fsck().clean);
  pool.close();
});

test('region memory belongs to the pool: pool.free refuses it, close leaves it', () => {
  const pool = memPool();
  const small = pool.createRegion('owned', 64 * KiB);
  const large = pool.createRegion('owned-large', 3 * MiB);
  small.write(0, text('still here'));
  assert.throws(() => pool.free(small.gaddr), is(InvalidAddressError));
  assert.throws(() => pool.free(large.gaddr), is(InvalidAddressError));
  assert.ok(pool.regionExists('owned') && pool.regionExists('owned-large'));
  assert.equal(small.read(0, 10), text('still here'), 'the refused free changed nothing');
  const f = pool.fsck();
  assert.ok(f.clean, `fsck: ${JSON.stringify(f)}`);
  assert.is(f.blocksOfDeadClients, 0);
  pool.close();
});

test('a full directory (1024 regions) gives PoolExhaustedError and leaks nothing', () => {
  const pool = memPool();
  for (let i = 0; i < 1024; i++) pool.createRegion(`r${i}`, 1);
  const held = pool.census().chunks.held;
  assert.is(held, DIR_CHUNKS + 1024);
  assert.throws(() => pool.createRegion('one-too-many', 1), is(PoolExhaustedError));
  assert.is(pool.census().chunks.held, held, 'the refused create took no memory');
  assert.is(pool.listRegions().length, 1024);
  pool.destroyRegion('r500');
  assert.is(pool.createRegion('one-too-many', 1).bytes, 1, 'a destroyed entry is reused');
  pool.close();
});

test('a region survives its creator\'s close and is reopened by a new Pool with its contents', async () => {
  await withPoolName('region-close', async (name) => {
    const sizes: Array<[string, number]> = [['chunks', 10_000], ['spans', 256 * KiB], ['sections', 3 * MiB]];
    const a = await openPool(`shm:${name}`, { size: '32MiB', debug: true });
    const made = new Map<string, number>();
    for (const [n, bytes] of sizes) {
      const r = a.createRegion(n, bytes);
      r.write(0, text(`head of ${n}`));
      r.write(bytes - 8, text('the end.'));
      made.set(n, r.gaddr);
    }
    const held = a.census().chunks.held;
    assert.is(a.close(), 0, 'close frees nothing: no block is the client\'s any more');

    const b = await openPool(`shm:${name}`, { create: false, debug: true });
    try {
      assert.is(b.census().chunks.held, held, 'every region chunk is still held');
      assert.equal(b.listRegions().map((r) => r.name), sizes.map(([n]) => n));
      for (const [n, bytes] of sizes) {
        const r = b.openRegion(n);
        assert.is(r.gaddr, made.get(n));
        assert.is(r.bytes, bytes);
        assert.equal(r.read(0, `head of ${n}`.length), text(`head of ${n}`));
        assert.equal(r.read(bytes - 8, 8), text('the end.'));
      }
      assert.ok(b.fsck().clean);
    } finally {
      b.close();
    }
  });
});

// ------------------------------------------------------- child processes

interface Msg { type: string; [key: string]: unknown }

/** A forked test/fixtures/region-child.js and what it said. */
class Child {
  readonly proc: ChildProcess;
  readonly inbox: Msg[] = [];
  exitCode: number | string | null = null;
  readonly exited: Promise<number | string>;

  constructor(args: string[]) {
    this.proc = fork(CHILD, args, { stdio: 'inherit' });
    this.proc.on('message', (m) => this.inbox.push(m as Msg));
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exitCode = signal ?? code ?? -1;
        resolve(this.exitCode);
      });
    });
  }

  /** The first message of `type`; fails when the child exits without one or after `timeoutMs`. */
  async next(type: string, timeoutMs = 15_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.inbox.findIndex((m) => m.type === type);
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      if (this.exitCode !== null) {
        await sleep(20);
        if (this.inbox.some((m) => m.type === type)) continue;
        throw new Error(`child ${this.proc.pid} exited (${this.exitCode}) without a "${type}" message`);
      }
      if (Date.now() > deadline) throw new Error(`child ${this.proc.pid}: no "${type}" message within ${timeoutMs} ms`);
      await sleep(5);
    }
  }
}

/**
 * Runs `fn` on a fresh shm pool of `size` (debug core), with `spawn` to fork
 * region children on it; afterwards kills the children still running, closes
 * the pool and removes its file.
 */
async function withShmPool(
  tag: string, size: string, fn: (pool: Pool, spawn: (args: string[]) => Child) => Promise<void>,
): Promise<void> {
  await withPoolName(tag, async (name) => {
    const pool = await openPool(`shm:${name}`, { size, debug: true });
    const children: Child[] = [];
    try {
      await fn(pool, (args) => {
        const c = new Child([name, ...args]);
        children.push(c);
        return c;
      });
    } finally {
      for (const c of children) if (c.exitCode === null) c.proc.kill('SIGKILL');
      await Promise.all(children.map((c) => c.exited));
      pool.close();
    }
  });
}

test('map and write through two processes: each sees the other\'s bytes', async () => {
  await withShmPool('region-map', '32MiB', async (pool, spawn) => {
    const r = pool.createRegion('shared', 64 * KiB);
    const mine = r.map();
    mine.set(text('hello from the parent'), 0);
    const message = `hello from a child at ${Date.now()}`;
    const child = spawn(['map', 'shared', String(40 * KiB), message]);
    const done = await child.next('done');
    assert.is(await child.exited, 0, 'the child exits cleanly');
    assert.is(done.saw, 'hello from the parent', 'the child read the parent\'s map() store');
    assert.ok(done.clientId !== pool.clientId, 'the child is another client');
    const want = text(message);
    assert.equal(mine.subarray(40 * KiB, 40 * KiB + want.length), want, 'the parent sees the child\'s bytes in its own map()');
    assert.equal(r.read(40 * KiB, want.length), want, 'and through read()');
    assert.equal(pool.read(r.gaddr + 40 * KiB, want.length), want, 'and through pool.read');
  });
});

test('4 processes create the same name at once: exactly one wins, fsck stays clean', async () => {
  await withShmPool('region-race', '64MiB', async (pool, spawn) => {
    for (let round = 0; round < 3; round++) {
      const region = `contested-${round}`;
      const racers = Array.from({ length: 4 }, () => spawn(['race', region, String(256 * KiB)]));
      await Promise.all(racers.map((c) => c.next('ready')));
      for (const c of racers) c.proc.send('go');
      const results = await Promise.all(racers.map((c) => c.next('result')));
      await Promise.all(racers.map((c) => c.exited));
      const winners = results.filter((r) => r.ok === true);
      assert.is(winners.length, 1, `round ${round}: one create succeeds: ${JSON.stringify(results)}`);
      for (const r of results.filter((x) => x.ok !== true)) assert.is(r.code, 'REGION_EXISTS', `round ${round}: the others get RegionExistsError`);
      const listed = pool.listRegions().filter((r) => r.name === region);
      assert.is(listed.length, 1, 'one region of that name');
      assert.is(listed[0].gaddr, winners[0].gaddr);
      const r = pool.openRegion(region);
      assert.is(pidOf(r.read(0, 4)), winners[0].pid, 'the winner\'s write survived its close');
    }
    const c = pool.census();
    assert.is(c.chunks.held, DIR_CHUNKS + 3 * 64, 'the directory and three 256 KiB regions, nothing else');
    assert.is(c.chunks.orphan, 0);
    assert.is(c.liveClients, 1, 'every racer closed');
    const f = pool.fsck();
    assert.ok(f.clean, `fsck: ${JSON.stringify(f)}`);
  });
});

test('a region survives the kill -9 of its creator and that client\'s recovery', async () => {
  await withShmPool('region-kill', '32MiB', async (admin, spawn) => {
    admin.setLeaseMs(200);
    const sizes = [12 * KiB, 512 * KiB, 5 * MiB];
    const made: Array<{ name: string; bytes: number; gaddr: number; pid: number; clientId: number }> = [];
    const children: Child[] = [];
    for (const [i, bytes] of sizes.entries()) {
      const child = spawn(['hold', `kept-${i}`, String(bytes)]);
      children.push(child);
      const m = await child.next('created');
      made.push({ name: `kept-${i}`, bytes, gaddr: m.gaddr as number, pid: m.pid as number, clientId: m.clientId as number });
    }
    // 12 KiB is class 2 (4 chunks), 512 KiB class 7 (128), 5 MiB three sections.
    const regionChunks = DIR_CHUNKS + 4 + 128 + 3 * 512;
    assert.is(admin.census().chunks.held, regionChunks + 3 * 16, 'the regions and each child\'s 64 KiB block');
    for (const c of children) c.proc.kill('SIGKILL');
    await Promise.all(children.map((c) => c.exited));

    const monitor = new LeaseMonitor(admin);
    const deadline = Date.now() + 5000;
    const recovered = new Set<number>();
    while (recovered.size < made.length && Date.now() < deadline) {
      for (const e of monitor.sweep().recovered) recovered.add(e.client);
      await sleep(50);
    }
    assert.equal([...recovered].sort(), made.map((m) => m.clientId).sort(), 'every dead creator was recovered');
    const c = admin.census();
    assert.is(c.chunks.held, regionChunks, 'recovery freed the children\'s own blocks and none of the regions');
    assert.is(c.liveClients, 1);
    for (const m of made) {
      const r = admin.openRegion(m.name);
      assert.is(r.gaddr, m.gaddr);
      assert.is(pidOf(r.read(0, 4)), m.pid, `${m.name}: the first bytes are intact`);
      assert.is(pidOf(r.read(m.bytes - 4, 4)), m.pid, `${m.name}: the last bytes are intact`);
    }
    const f = admin.fsck();
    assert.ok(f.clean, `fsck: ${JSON.stringify(f)}`);
  });
});

// --------------------------------------------------- the directory lock

/**
 * Superblock words (assembly/layout.ts) and the packed words of
 * assembly/lock.ts and assembly/region.ts, for the tests below that play a
 * lock holder by writing pool metadata by hand.
 */
const SB_OWNER_LOG = 56;
const SB_REGION_DIR = 136;
const SB_REGION_LOCK = 144;
const OWNER_REGION = 4094;
const ST_CREATING = 1n;
const ST_DESTROYING = 3n;
const lockWord = (holder: number, gen: number, seq: number): bigint => BigInt(holder) | (BigInt(gen) << 12n) | (BigInt(seq) << 32n);
const entryWord = (state: bigint, client: number, gen: number, seq: number): bigint =>
  state | (BigInt(client) << 2n) | (BigInt(gen) << 14n) | (BigInt(seq) << 32n);

/** Byte offset of the directory entry named `name` (or of the first FREE entry, for `null`). */
function entryOf(t: WindowedTransport, name: string | null): number {
  const dir = Number(t.load64(SB_REGION_DIR));
  assert.ok(dir > 0, 'the directory exists');
  const want = new Uint8Array(40);
  if (name !== null) want.set(text(name));
  const got = new Uint8Array(40);
  for (let i = 0; i < 1024; i++) {
    const off = dir + 64 * i;
    if (name === null) {
      if ((t.load64(off) & 3n) === 0n) return off;
      continue;
    }
    t.read(off + 24, got);
    if (got.every((x, k) => x === want[k])) return off;
  }
  throw new Error(`no entry ${name}`);
}

function genOf(pool: Pool): number {
  return pool.clientSlot(pool.clientId).gen;
}

test('a lock held by a live client is waited for two leases, then PoolBusyError, with nothing changed', () => {
  const t = memoryTransport(64 * MiB);
  const a = memPool(t);
  const b = memPool(t, false);
  a.createRegion('first', 4 * KiB);
  a.setLeaseMs(20);
  const census = a.census().chunks;
  t.store64(SB_REGION_LOCK, lockWord(b.clientId, genOf(b), 5));
  const t0 = Date.now();
  assert.throws(() => a.createRegion('second', 4 * KiB), is(PoolBusyError));
  assert.ok(Date.now() - t0 >= 35, `waited about two leases (${Date.now() - t0} ms)`);
  assert.throws(() => a.destroyRegion('first'), is(PoolBusyError));
  assert.equal(a.census().chunks, census, 'no memory taken or freed');
  assert.ok(a.regionExists('first'), 'open and exists take no lock');
  assert.equal(a.listRegions().map((r) => r.name), ['first']);
  assert.is(t.load64(SB_REGION_LOCK), lockWord(b.clientId, genOf(b), 5), 'the holder\'s lock is untouched');

  t.store64(SB_REGION_LOCK, lockWord(0, 0, 5));
  a.createRegion('second', 4 * KiB);
  assert.equal(a.listRegions().map((r) => r.name), ['first', 'second']);
  a.close();
  b.close();
});

test('a dead holder\'s lock is taken over and its half-done creates and destroys are repaired', () => {
  const t = memoryTransport(64 * MiB);
  const a = memPool(t);
  const b = memPool(t, false);
  a.createRegion('live', 4 * KiB);
  // b dies (1) after adopting a 256 KiB region, before marking it LIVE; (2)
  // after marking a 3 MiB region DESTROYING, before freeing it; (3) after
  // allocating the block of a CREATING entry, before adopting it.
  b.createRegion('adopted', 256 * KiB);
  b.createRegion('destroying', 3 * MiB);
  const own = b.alloc(64 * KiB);
  const gen = genOf(b);
  t.store64(entryOf(t, 'adopted'), entryWord(ST_CREATING, b.clientId, gen, 7));
  t.store64(entryOf(t, 'destroying'), entryWord(ST_DESTROYING, b.clientId, gen, 9));
  const unadopted = entryOf(t, null);
  t.write(unadopted + 24, text('unadopted'));
  t.store64(unadopted + 16, BigInt(64 * KiB));
  t.store64(unadopted + 8, BigInt(offsetOf(own)));
  t.store64(unadopted, entryWord(ST_CREATING, b.clientId, gen, 1));
  t.store64(SB_REGION_LOCK, lockWord(b.clientId, gen, 3));
  assert.equal(a.listRegions().map((r) => r.name), ['live'], 'readers never see entries that are not LIVE');
  const held = a.census().chunks.held;

  // b's slot is freed (as its recovery would): its own block goes, the adopted ones stay.
  assert.is(b.close(), 1, 'only the unadopted block was still the client\'s');
  assert.is(a.census().chunks.held, held - 16);

  const after = a.createRegion('after', 4 * KiB);
  assert.equal(a.listRegions().map((r) => r.name), ['live', 'after'], 'repair left only LIVE entries');
  assert.is(a.census().chunks.held, held - 16 - 64 - 1024 + 1, 'the adopted 256 KiB and 3 MiB blocks were freed, once each');
  assert.is(t.load64(SB_REGION_LOCK) & 0xFFFn, 0n, 'the lock is free again');
  assert.ok(after.gaddr > 0);
  const f = a.fsck();
  assert.ok(f.clean, `fsck: ${JSON.stringify(f)}`);
  a.close();
});

test('a directory left PENDING by a dead holder is finished when adopted, forgotten when not', () => {
  for (const adopted of [false, true]) {
    const t = memoryTransport(64 * MiB);
    const a = memPool(t);
    const b = memPool(t, false);
    const dir = offsetOf(b.allocClass(4));
    if (adopted) {
      const chunk = (dir - a.geometry.dataOffset) / CHUNK;
      const ownerEntry = BigInt(OWNER_REGION) | (4n << 12n) | (1n << 16n);
      t.store64(Number(t.load64(SB_OWNER_LOG)) + chunk * 8, ownerEntry);
    }
    t.store64(SB_REGION_DIR, BigInt(dir) | 1n);
    t.store64(SB_REGION_LOCK, lockWord(b.clientId, genOf(b), 1));
    assert.equal(a.listRegions(), [], 'readers ignore a PENDING directory');
    assert.is(b.close(), adopted ? 0 : 1);

    const r: Region = a.createRegion('x', 100);
    const now = Number(t.load64(SB_REGION_DIR));
    if (adopted) assert.is(now, dir, 'the adopted directory was kept');
    else assert.ok(now > 0 && now % CHUNK === 0, 'a finished directory word (the census below tells a new directory from the freed one)');
    assert.equal(a.listRegions(), [{ name: 'x', bytes: 100, gaddr: r.gaddr }]);
    assert.is(a.census().chunks.held, DIR_CHUNKS + 1, 'one directory and the region: nothing leaked');
    assert.ok(a.fsck().clean);
    a.close();
  }
});

test.run();
