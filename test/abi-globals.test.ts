/**
 * The host reads its ABI numbers from the core (assembly/abi.ts -> src/abi.ts).
 * Checks that (1) both builds export the same globals and the host reads
 * every one of them, and (2) each result block means what its field indexes
 * say: a known sequence of operations must show up at exactly those slots.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  CensusField, FsckField, Geometry, Layout, SlotField, SlotState, StatsField, Status, compiledCore, coreGlobals, hostAbiNames,
} from '../src/abi.js';
import { Core, LAYOUT_VERSION, Pool, memoryTransport } from '../src/index.js';

const MiB = 1024 * 1024;

test('both builds export the same ABI globals, and the host reads every one', () => {
  const release = coreGlobals(compiledCore(false));
  const debug = coreGlobals(compiledCore(true));
  assert.equal([...debug.entries()].sort(), [...release.entries()].sort(), 'debug and release builds agree');
  assert.equal(hostAbiNames(), [...release.keys()].sort(), 'src/abi.ts reads exactly the globals assembly/abi.ts exports');
});

test('layout constants agree with each other and with a formatted superblock', () => {
  assert.is(Layout.chunkBytes * Layout.spanChunks * Layout.sectionSpans, Layout.sectionBytes);
  assert.is(LAYOUT_VERSION, Layout.version);
  const t = memoryTransport(8 * MiB);
  const p = Pool.attach(t, { create: true, clients: 4, heartbeatMs: 0 });
  try {
    assert.is(Number(t.load64(8) & 0xFFFFFFFFn), Layout.version, 'superblock version word');
    assert.is(Number(t.load64(8) >> 32n), Layout.headerBytes, 'superblock headerBytes word');
    assert.is(p.geometry.sectionBytes, Layout.sectionBytes);
  } finally {
    p.close();
  }
});

test('stats, census, slot and fsck blocks mean what their fields say', () => {
  const t = memoryTransport(16 * MiB);
  const p = Pool.attach(t, { create: true, clients: 4, heartbeatMs: 0 });
  try {
    const a = p.allocClass(0);
    p.allocClass(0);
    p.allocClass(3);
    p.free(a);
    const s = p.stats();
    assert.is(s.allocs, 3, `stats[${StatsField.allocs}] allocs`);
    assert.is(s.frees, 1, `stats[${StatsField.frees}] frees`);
    assert.is(s.perClass.allocated[0], 2);
    assert.is(s.perClass.allocated[3], 1);
    assert.is(s.perClass.freed[0], 1);
    assert.ok(s.cas.attempts >= 3, 'every alloc issues at least one CAS');

    const c = p.census();
    assert.is(c.perClass[0].blocks, 1, `census[${CensusField.blocksPerClass}] blocks of class 0`);
    assert.is(c.perClass[3].chunks, 8, `census[${CensusField.chunksPerClass} + 3] chunks of class 3`);
    assert.is(c.chunks.held, 9);
    assert.is(c.liveClients, 1);
    assert.is(c.sections.chunk, 1, 'one chunk-mode section');
    assert.is(c.sections.free + c.sections.chunk + c.sections.large, p.geometry.sections);

    const slot = p.clientSlot(p.clientId);
    assert.is(slot.state, 'live', `slot[${SlotField.state}] = ${SlotState.live}`);
    assert.is(slot.pid, process.pid);
    assert.is(slot.hostId, Pool.hostId, 'host id halves in the right order');
    assert.ok(Math.abs(slot.heartbeatMs - Date.now()) < 60_000, 'heartbeat is a wall-clock time in ms');
    assert.is(p.clientSlot(p.clientId === 1 ? 2 : 1).state, 'free');

    const f = p.fsck();
    assert.is(f.sections, p.geometry.sections, `fsck[${FsckField.sections}] sections`);
    assert.ok(f.clean);
    assert.is(f.repaired, 0);
    assert.is(p.geometry.maxClients, 4, `geometry(${Geometry.maxClients})`);
  } finally {
    p.close();
  }
});

test('the recover block counts what a revoked client held', () => {
  const t = memoryTransport(16 * MiB);
  const owner = Pool.attach(t, { create: true, clients: 4, heartbeatMs: 0 });
  const victim = Pool.attach(t, { heartbeatMs: 0 });
  try {
    for (let i = 0; i < 3; i++) victim.allocClass(1);
    const id = victim.clientId;
    assert.ok(owner.revokeClient(id, owner.clientSlot(id).gen));
    const r = owner.recoverClient(id);
    assert.ok(r !== null);
    assert.is(r!.blocks, 3);
    assert.is(r!.chunks, 6);
    assert.is(owner.recoverClient(id), null, 'a free slot is not recoverable: the status slot is negative');
  } finally {
    victim.close();
    owner.close();
  }
});

test('heap census and region result blocks', () => {
  const t = memoryTransport(16 * MiB);
  const p = Pool.attach(t, { create: true, clients: 4, heartbeatMs: 0 });
  try {
    p.heap.alloc(50);
    const h = p.heap.stats();
    assert.is(h.perClass[0].objects, 1);
    assert.is(h.perClass[0].requestedBytes, 50);
    assert.is(h.perClass[0].slabs, 1);
    assert.is(h.slabBytes, Layout.slabBytes);
    p.createRegion('abi-region', 100);
    assert.equal(p.listRegions().map((r) => [r.name, r.bytes]), [['abi-region', 100]]);
  } finally {
    p.close();
  }
});

test('status codes are what the core returns', () => {
  const t = memoryTransport(8 * MiB);
  const x = new Core(t, 1n).exports;
  assert.is(x.attach(t.size), Status.NOT_A_POOL, 'an all-zero medium is not a pool');
  assert.is(x.format(t.size, 4), Status.OK);
  assert.is(x.format(t.size, 4), Status.INVALID_ARGUMENT, 'format refuses a medium that holds a pool');
  assert.is(x.alloc(0), Status.NOT_ATTACHED, 'alloc before register');
  assert.ok(x.register(process.pid, 0n, 0n, 0, 0) > 0);
  assert.is(x.alloc(99), Status.INVALID_ARGUMENT);
  assert.is(x.free(5), Status.INVALID_ADDRESS);
  const off = x.alloc(0);
  assert.is(x.free(off), Status.OK);
  assert.is(x.free(off), Status.DOUBLE_FREE);
  assert.is(new Set(Object.values(Status)).size, Object.keys(Status).length, 'codes are distinct');
});

test.run();
