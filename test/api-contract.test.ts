/**
 * The API contract (issue 9, findings 12 and 13): every public entry of
 * openPool, Pool, Heap and Region refuses a bad argument with a typed
 * InvalidArgumentError that names the argument and the value, and changes no
 * byte of the pool doing so; byte views of any type are written as their
 * bytes; 64-bit word values outside [-(2^63), 2^64) are refused, never
 * wrapped. Also: a truncated medium is named with both sizes, and a fresh
 * device is claimed for formatting exactly once.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CorruptPoolError, DmemError, InvalidArgumentError, NotAPoolError, Pool, memoryTransport, openPool,
} from '../src/index.js';
import { FORMAT_CLAIM } from '../src/transport.js';
import { claimIfFresh, daxSizeFromSysfs, deviceNumbers } from '../plugins/cxl-shm/devdax.js';
import { openShm } from '../plugins/cxl-shm/index.js';

const MiB = 1024 * 1024;

function sha(buf: SharedArrayBuffer): string {
  return createHash('sha256').update(new Uint8Array(buf)).digest('hex');
}

/** Asserts `fn` throws InvalidArgumentError whose message matches `re`. */
function refuses(fn: () => unknown, re: RegExp, label: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof InvalidArgumentError, `${label}: expected InvalidArgumentError, got ${String(caught)}`);
  assert.is((caught as DmemError).code, 'INVALID_ARGUMENT');
  assert.match((caught as Error).message, re, label);
}

async function rejectsWith(p: () => Promise<unknown>, re: RegExp, label: string): Promise<void> {
  let caught: unknown;
  try {
    await p();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof InvalidArgumentError, `${label}: expected InvalidArgumentError, got ${String(caught)}`);
  assert.match((caught as Error).message, re, label);
}

/** A pool on a SharedArrayBuffer whose bytes the test can hash; the lease is long so nothing renews meanwhile. */
function fixture(): { buf: SharedArrayBuffer; pool: Pool } {
  const buf = new SharedArrayBuffer(16 * MiB);
  const pool = Pool.attach(memoryTransport(buf), { create: true, clients: 8, heartbeatMs: 0 });
  pool.setLeaseMs(86_400_000);
  return { buf, pool };
}

test('openPool refuses a bad URI or options with a typed error', async () => {
  await rejectsWith(() => openPool(42 as unknown as string), /uri must be a string.*got 42/, 'openPool(42)');
  await rejectsWith(() => openPool('memory:', 5 as never), /options object, got 5/, 'options 5');
  await rejectsWith(() => openPool('memory:', { size: 10n as never }), /size.*10n/, 'size BigInt');
  await rejectsWith(() => openPool('memory:', { size: '8MiB', clients: 0 }), /clients.*got 0/, 'clients 0');
  await rejectsWith(() => openPool('memory:', { size: '8MiB', seed: 1.5 }), /seed.*1\.5/, 'seed 1.5');
  await rejectsWith(() => openPool('memory:', { size: '8MiB', create: 'yes' as never }), /create must be true or false/, 'create "yes"');
  await rejectsWith(() => openPool('nosuch:thing'), /unknown pool URI.*memory/, 'unknown scheme');
});

test('every data-path entry refuses bad arguments, and no byte of the pool changes', () => {
  const { buf, pool } = fixture();
  try {
    const g = pool.alloc(4096);
    pool.write(g, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
    const before = sha(buf);
    const data = pool.geometry.dataBytes;

    refuses(() => pool.write(g, [1, 2] as never), /write: bytes.*an Array of 2/, 'write(g, [1,2])');
    refuses(() => pool.write(g, 'ab' as never), /write: bytes.*"ab"/, 'write(g, "ab")');
    refuses(() => pool.read(g, -1), /read: length.*-1/, 'read(g, -1)');
    refuses(() => pool.read(g, Number.NaN), /read: length.*NaN/, 'read(g, NaN)');
    refuses(() => pool.read(g, 1.5), /read: length.*1\.5/, 'read(g, 1.5)');
    refuses(() => pool.read(g, 2 ** 60), /read: length/, 'read(g, 2^60)');
    refuses(() => pool.readInto(g, [0] as never), /readInto: dst/, 'readInto(g, [0])');
    refuses(() => pool.read(BigInt(g) as never, 1), /gaddr must be a number.*n \(a BigInt\)/, 'read(BigInt(g))');
    refuses(() => pool.cas(g, 0 as never, 1 as never), /cas: expected.*got 0/, 'cas(g, 0, 1)');
    refuses(() => pool.cas(g, 0n, 2n ** 64n), /cas: desired.*18446744073709551616n/, 'cas desired 2^64');
    refuses(() => pool.cas(g, -(2n ** 63n) - 1n, 0n), /cas: expected/, 'cas expected below -(2^63)');
    refuses(() => pool.faa(g, 2n ** 64n), /faa: delta/, 'faa 2^64');
    refuses(() => pool.faa(g, 1 as never), /faa: delta.*got 1/, 'faa(g, 1)');
    refuses(() => pool.alloc(10n as never), /alloc: bytes.*10n/, 'alloc(10n)');
    refuses(() => pool.alloc('10' as never), /alloc: bytes.*"10"/, 'alloc("10")');
    refuses(() => pool.alloc(1.5), /alloc: bytes.*1\.5/, 'alloc(1.5)');
    refuses(() => pool.alloc(2 ** 60), /more than the pool's whole data area/, 'alloc(2^60)');
    refuses(() => pool.alloc(data + 1), /more than the pool's whole data area/, 'alloc(dataBytes + 1)');
    refuses(() => pool.allocClass(1.5), /allocClass: cls.*1\.5/, 'allocClass(1.5)');
    refuses(() => pool.allocClass('1' as never), /allocClass: cls/, 'allocClass("1")');
    refuses(() => pool.free(BigInt(g) as never), /gaddr must be a number/, 'free(BigInt(g))');
    refuses(() => pool.free(undefined as never), /gaddr must be a number.*undefined/, 'free(undefined)');
    refuses(() => pool.heap.alloc(10n as never), /heap.alloc: bytes.*10n/, 'heap.alloc(10n)');
    refuses(() => pool.heap.alloc(2 ** 60), /heap.alloc: bytes/, 'heap.alloc(2^60)');
    refuses(() => pool.heap.free(BigInt(g) as never), /gaddr must be a number/, 'heap.free(BigInt)');
    refuses(() => pool.heap.freeDelayed('x' as never), /gaddr must be a number/, 'heap.freeDelayed("x")');
    refuses(() => pool.clientSlot(0), /clientSlot: id.*got 0/, 'clientSlot(0)');
    refuses(() => pool.clientSlot(Number.NaN), /clientSlot: id/, 'clientSlot(NaN)');
    refuses(() => pool.revokeClient('1' as never, 0), /revokeClient: id/, 'revokeClient("1")');
    refuses(() => pool.recoverClient(1, -1), /recoverClient: deadRecoverer/, 'recoverClient(1, -1)');
    refuses(() => pool.reclaimOrphan({ kind: 1, index: 0, word: 0 } as never), /reclaimOrphan/, 'reclaimOrphan(word number)');
    refuses(() => pool.setLeaseMs(5), /setLeaseMs: ms.*got 5/, 'setLeaseMs(5)');
    refuses(() => pool.setLeaseMs(Number.NaN), /setLeaseMs: ms/, 'setLeaseMs(NaN)');
    refuses(() => pool.createRegion('r', 10n as never), /bytes.*10n/, 'createRegion(r, 10n)');
    refuses(() => pool.createRegion(5 as never, 10), /region name must be a string/, 'createRegion(5)');
    refuses(() => pool.fsck(7 as never), /fsck: opts/, 'fsck(7)');
    refuses(() => Pool.attach({} as never), /transport must implement Transport/, 'Pool.attach({})');
    refuses(() => Pool.attach(memoryTransport(buf), { node: 'x' as never }), /node.*"x"/, 'node "x"');

    assert.is(sha(buf), before, 'no byte of the pool changed');
    assert.equal([...pool.read(g, 8)], [1, 2, 3, 4, 5, 6, 7, 8]);
  } finally {
    pool.close();
  }
});

test('epoch and region calls refuse bad arguments too', async () => {
  const { buf, pool } = fixture();
  try {
    const r = pool.createRegion('contract', 64);
    const before = sha(buf);
    await rejectsWith(() => pool.epoch(5 as never), /epoch: fn must be a function, got 5/, 'epoch(5)');
    refuses(() => r.write(0, [1] as never), /write: bytes.*an Array of 1/, 'region.write(0, [1])');
    refuses(() => r.read(Number.NaN, 1), /offset and length.*NaN/, 'region.read(NaN)');
    refuses(() => r.read(0, 10n as never), /offset and length.*10n/, 'region.read(0, 10n)');
    assert.is(sha(buf), before, 'no byte of the pool changed');
  } finally {
    pool.close();
  }
});

test('typed arrays, DataViews and Buffers are written as their bytes', () => {
  const { pool } = fixture();
  try {
    const g = pool.alloc(4096);
    pool.write(g, new Uint16Array([0x0102]));
    assert.equal([...pool.read(g, 2)], [0x02, 0x01], 'Uint16Array: 2 bytes, little-endian');
    pool.write(g, new Float64Array([1.5]));
    assert.equal([...pool.read(g, 8)], [...new Uint8Array(Float64Array.of(1.5).buffer)], 'Float64Array: its 8 bytes');
    const dv = new DataView(new ArrayBuffer(4));
    dv.setUint32(0, 0xAABBCCDD, false);
    pool.write(g + 8, dv);
    assert.equal([...pool.read(g + 8, 4)], [0xAA, 0xBB, 0xCC, 0xDD], 'DataView');
    pool.write(g + 16, Buffer.from([9, 8, 7]));
    assert.equal([...pool.read(g + 16, 3)], [9, 8, 7], 'Buffer');
    const backing = new Uint8Array([0, 0, 0x34, 0x12, 0, 0]).buffer;
    pool.write(g + 24, new Uint16Array(backing, 2, 1));
    assert.equal([...pool.read(g + 24, 2)], [0x34, 0x12], 'a view with a byte offset writes only its own bytes');
    const out = new Uint32Array(1);
    pool.readInto(g + 8, out);
    assert.is(out[0], 0xDDCCBBAA, 'readInto fills a Uint32Array byte for byte');
  } finally {
    pool.close();
  }
});

test('64-bit words take [-(2^63), 2^64): unsigned values are their bit patterns, nothing wraps', () => {
  const { pool } = fixture();
  try {
    const g = pool.alloc(4096);
    assert.is(pool.cas(g, 0n, 2n ** 64n - 1n), 0n);
    assert.is(pool.cas(g, -1n, 5n), -1n, '2^64 - 1 is the word -1');
    assert.is(pool.faa(g, 2n ** 63n), 5n);
    assert.is(pool.cas(g, 0n, 0n), 5n - 2n ** 63n, 'the add wrapped inside the word, as documented');
    assert.is(pool.cas(g, -(2n ** 63n), 0n), 5n - 2n ** 63n, 'the smallest value is accepted');
  } finally {
    pool.close();
  }
});

test('a truncated medium: CorruptPoolError names both sizes, and nothing is written', () => {
  const { buf, pool } = fixture();
  pool.close();
  const half = new SharedArrayBuffer(8 * MiB);
  new Uint8Array(half).set(new Uint8Array(buf, 0, 8 * MiB));
  const before = sha(half);
  let caught: unknown;
  try {
    Pool.attach(memoryTransport(half), { heartbeatMs: 0, medium: '/tmp/truncated-pool' });
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CorruptPoolError, String(caught));
  assert.match((caught as Error).message, /\/tmp\/truncated-pool is 8388608 bytes but its superblock says the pool is 16777216 bytes/);
  assert.is(sha(half), before);
});

test('a fresh medium is claimed for formatting once; others wait for the claim, then attach', () => {
  const buf = new SharedArrayBuffer(8 * MiB);
  const t = memoryTransport(buf);
  assert.ok(claimIfFresh(t), 'the first claim wins');
  assert.is(t.load64(0), FORMAT_CLAIM);
  assert.not.ok(claimIfFresh(memoryTransport(buf)), 'a second opener loses');
  assert.throws(() => Pool.attach(memoryTransport(buf), { heartbeatMs: 0, attachTimeoutMs: 30 }),
    (e: unknown) => e instanceof NotAPoolError && /claimed it for formatting/.test((e as Error).message));
  const owner = Pool.attach(t, { create: true, clients: 4, heartbeatMs: 0 });
  const other = Pool.attach(memoryTransport(buf), { heartbeatMs: 0 });
  assert.is.not(other.clientId, owner.clientId);
  other.close();
  owner.close();
  const used = new SharedArrayBuffer(8 * MiB);
  new Uint8Array(used)[100] = 1;
  assert.not.ok(claimIfFresh(memoryTransport(used)), 'a device with any non-zero superblock byte is never claimed');
  assert.is(new Uint8Array(used)[0], 0);
});

test('devdax size comes from sysfs (/sys/dev/char/MAJ:MIN/size, then /sys/bus/dax/devices/NAME/size)', () => {
  const root = mkdtempSync(join(tmpdir(), 'dmem-sysfs-'));
  try {
    const rdev = (251 << 8) | 3;
    assert.equal(deviceNumbers(rdev), { major: 251, minor: 3 });
    refuses(() => daxSizeFromSysfs('/dev/dax0.0', rdev, root), /does not report.*pass size/, 'no sysfs entry');
    mkdirSync(join(root, 'bus/dax/devices/dax0.0'), { recursive: true });
    writeFileSync(join(root, 'bus/dax/devices/dax0.0/size'), '2147483648\n');
    assert.is(daxSizeFromSysfs('/dev/dax0.0', rdev, root), 2 ** 31, 'bus/dax fallback');
    mkdirSync(join(root, 'dev/char/251:3'), { recursive: true });
    writeFileSync(join(root, 'dev/char/251:3/size'), '4294967296\n');
    assert.is(daxSizeFromSysfs('/dev/dax0.0', rdev, root), 2 ** 32, 'dev/char first');
    writeFileSync(join(root, 'dev/char/251:3/size'), 'garbage\n');
    assert.is(daxSizeFromSysfs('/dev/dax0.0', rdev, root), 2 ** 31, 'a malformed entry is skipped');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a fresh character device is claimed and formatted: size from (mocked) sysfs, or given', async () => {
  // /dev/zero's device numbers (1:5) under a name of our own: a character
  // device whose MAP_SHARED mapping is fresh zeroed memory, as a new devdax
  // device is. Needs mknod (root); skipped with the reason otherwise.
  const dir = mkdtempSync(join(tmpdir(), 'dmem-chardev-'));
  try {
    const dev = join(dir, 'dax9.9');
    const mk = spawnSync('mknod', [dev, 'c', '1', '5'], { encoding: 'utf8' });
    if (mk.status !== 0) {
      console.log(`skip: cannot create a character device here (mknod: ${mk.stderr.trim() || mk.error?.message}); the claim and the sysfs lookup are tested above`);
      return;
    }
    const sys = join(dir, 'sys');
    mkdirSync(join(sys, 'dev/char/1:5'), { recursive: true });
    writeFileSync(join(sys, 'dev/char/1:5/size'), `${4 * MiB}\n`);
    const m = openShm(dev, { create: true, sysfsRoot: sys });
    try {
      assert.is(m.transport.size, 4 * MiB, 'size read from sysfs');
      assert.ok(m.claimed && m.created, 'a fresh device is claimed for formatting');
      const p = Pool.attach(m.transport, { create: true, clients: 4, heartbeatMs: 0 });
      assert.ok(p.alloc(4096) > 0);
      p.close();
    } finally {
      m.transport.close();
    }
    refuses(() => openShm(dev, { create: true }), /sysfs does not report.*pass size/, 'no sysfs entry, no size');
    const pool = await openPool(`shm:${dev}`, { size: '4MiB', clients: 4, heartbeatMs: 0 });
    assert.is(pool.geometry.poolBytes, 4 * MiB, 'openPool formats a fresh device of the size given');
    pool.close();
    assert.ok(existsSync(dev), 'closing never removes a device');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
