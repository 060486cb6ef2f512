/**
 * Epoch-based delayed free (issue 5): a delayed free is not reused while an
 * operation that was in progress at that moment runs, in any client, and is
 * reused once they have ended; the lease monitor reclaims; bad input is
 * refused; a queued object whose allocator closed is never freed under its
 * memory's next holder.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DoubleFreeError, InvalidAddressError, LeaseMonitor, openPool, type Pool } from '../src/index.js';
import { is, withPoolName } from './helpers.js';

/** Slab objects handed out in the whole pool. */
const objects = (p: Pool): number => p.heap.stats().perClass.reduce((a, c) => a + c.objects, 0);

/** An operation that stays in progress until `end()` is called. */
function openOperation(p: Pool): { end: () => void; done: Promise<void> } {
  let end!: () => void;
  const gate = new Promise<void>((r) => { end = r; });
  const done = p.epoch(() => gate);
  return { end, done };
}

test('a delayed free waits for the operations in progress in other clients, then is reused', async () => {
  await withPoolName('epoch', async (name) => {
    const writer = await openPool(`shm:${name}`, { size: '16MiB' });
    const reader = await openPool(`shm:${name}`, { create: false });
    try {
      const g = writer.heap.alloc(64);
      writer.write(g, new Uint8Array([42]));
      const op = openOperation(reader);
      assert.ok(reader.epochState().inEpoch);
      await writer.epoch(() => writer.heap.freeDelayed(g));
      assert.is(writer.epochState().pending, 1);
      for (let i = 0; i < 5; i++) assert.is(writer.reclaim(), 0, 'not freed while the reader\'s operation runs');
      assert.is(objects(writer), 1, 'still handed out');
      assert.is(reader.read(g, 1)[0], 42, 'the reader still sees the object');
      const others = Array.from({ length: 100 }, () => writer.heap.alloc(64));
      assert.not.ok(others.includes(g), 'never handed out again meanwhile');
      for (const o of others) writer.heap.free(o);
      op.end();
      await op.done;
      assert.not.ok(reader.epochState().inEpoch);
      let freed = 0;
      for (let i = 0; i < 3 && freed === 0; i++) freed += writer.reclaim();
      assert.is(freed, 1, 'freed once the operation ended');
      assert.is(writer.epochState().pending, 0);
      assert.is(writer.heap.alloc(64), g, 'and reused by the next alloc of its size');
    } finally {
      reader.close();
      writer.close();
    }
  });
});

test('nested and overlapping operations of one client keep it in progress until the last ends', async () => {
  const p = await openPool('memory:', { size: '16MiB' });
  try {
    const g = p.heap.alloc(300);
    const a = openOperation(p);
    const b = openOperation(p);
    p.heap.freeDelayed(g);
    a.end();
    await a.done;
    for (let i = 0; i < 4; i++) p.reclaim();
    assert.is(p.epochState().pending, 1, 'b still runs');
    b.end();
    await b.done;
    let freed = 0;
    for (let i = 0; i < 3; i++) freed += p.reclaim();
    assert.is(freed, 1);
    assert.is(await p.epoch(async () => 7), 7, 'epoch returns what fn returns');
  } finally {
    p.close();
  }
});

test('the lease monitor reclaims delayed frees', async () => {
  await withPoolName('epoch-mon', async (name) => {
    const server = await openPool(`shm:${name}`, { size: '16MiB' });
    server.setLeaseMs(100);
    const client = await openPool(`shm:${name}`, { create: false });
    try {
      const g = client.heap.alloc(1000);
      client.heap.freeDelayed(g);
      const monitor = new LeaseMonitor(server);
      const deadline = Date.now() + 3000;
      while (client.epochState().pending > 0 && Date.now() < deadline) {
        monitor.sweep();
        await new Promise((r) => setTimeout(r, 30));
      }
      assert.is(client.epochState().pending, 0, 'the monitor freed it');
      assert.is(objects(client), 0);
    } finally {
      client.close();
      server.close();
    }
  });
});

test('bad delayed frees are refused and change nothing', async () => {
  const p = await openPool('memory:', { size: '16MiB' });
  try {
    const g = p.heap.alloc(64);
    assert.throws(() => p.heap.freeDelayed(g + 1), is(InvalidAddressError));
    assert.throws(() => p.heap.freeDelayed(g + 64), is(InvalidAddressError), 'an object still in the cache was never handed out');
    p.heap.free(g);
    assert.throws(() => p.heap.freeDelayed(g), is(InvalidAddressError), 'a freed object');
    assert.is(p.epochState().pending, 0);
  } finally {
    p.close();
  }
});

test('a queued object belongs to the ring: its allocator\'s close leaves it, no second free is accepted, and it is freed once', async () => {
  await withPoolName('epoch-close', async (name) => {
    const a = await openPool(`shm:${name}`, { size: '16MiB' });
    const b = await openPool(`shm:${name}`, { create: false });
    try {
      const g = a.heap.alloc(64);
      const op = openOperation(b);
      a.heap.freeDelayed(g);
      assert.throws(() => a.heap.free(g), is(DoubleFreeError), 'a queued object is already freed (delayed)');
      assert.throws(() => b.heap.freeDelayed(g), is(InvalidAddressError), 'and cannot be queued twice');
      a.close();
      assert.is(b.census().chunks.held, 32 + 16, 'the ring (128 KiB) and the slab holding g outlive a: the ring owns g');
      assert.is(b.epochState().pending, 1);
      op.end();
      await op.done;
      let freed = 0;
      for (let i = 0; i < 4; i++) freed += b.reclaim();
      assert.is(freed, 1, 'g was freed once, by the ring');
      assert.is(b.epochState().pending, 0);
      assert.is(b.heap.trim(), 1, 'its slab, now empty and unowned, goes back');
      assert.is(b.census().chunks.held, 32, 'only the ring is left');
    } finally {
      a.close();
      b.close();
    }
  });
});

test('a stale ring entry never frees a later object of a reused slot (slot generation 16 later, same size, same memory)', async () => {
  await withPoolName('epoch-wrap', async (name) => {
    // One client slot besides b's: every new client reuses it, its generation climbing.
    const b = await openPool(`shm:${name}`, { size: '16MiB', clients: 2 });
    try {
      const a = await openPool(`shm:${name}`, { create: false });
      const g = a.heap.alloc(64);
      const op = openOperation(b);
      a.heap.freeDelayed(g);
      a.close();
      for (let i = 0; i < 15; i++) (await openPool(`shm:${name}`, { create: false })).close();
      const c = await openPool(`shm:${name}`, { create: false });
      try {
        const mine = Array.from({ length: 2000 }, () => c.heap.alloc(64));
        assert.not.ok(mine.includes(g), 'g is still the ring\'s: nobody else can be handed its memory');
        op.end();
        await op.done;
        for (let i = 0; i < 4; i++) b.reclaim();
        assert.is(b.epochState().pending, 0);
        assert.is(objects(c), 2000, 'all of c\'s objects are still handed out after the ring popped g');
        for (const o of mine) c.heap.free(o);
      } finally {
        c.close();
      }
    } finally {
      b.close();
    }
  });
});

test.run();
