/**
 * cxl-shm transport tests: real /dev/shm files mapped with koffi. Every test
 * creates its own pool file (name from the pid and random bytes) and removes
 * it in a `finally`, so a failed test leaves nothing in /dev/shm.
 *
 * What is checked: the 64-bit word semantics every transport shares (cas64
 * returns the word it found, faa64 the word before the add); byte copies,
 * including ones that straddle a window; that two mappings of one file, in
 * one process or in two, are one memory (a child process and this one each
 * add 100k with faa64 and 100k with a cas64 loop, and no update is lost);
 * large sparse pools spread over 1 GiB windows; and that every failure is a
 * typed error that names the path and leaks no file descriptor or file.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { openShm, removeShm, shmPath } from '../plugins/cxl-shm/index.js';
import { InvalidArgumentError, TransportUnavailableError } from '../src/errors.js';

const GiB = 2 ** 30;

function uniqueName(): string {
  return `test-${process.pid}-${randomBytes(6).toString('hex')}`;
}

function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function bytesOf(length: number, seed: number): Uint8Array {
  const b = new Uint8Array(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** Byte equality without uvu's per-element diff (huge for large arrays). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function throwsTyped(fn: () => unknown, type: new (...args: never[]) => Error, pattern?: RegExp): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, type, `expected ${type.name}, got ${String(err)}`);
    if (pattern) assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected ${type.name}`);
}

test('shmPath maps bare names into /dev/shm and keeps absolute paths', () => {
  assert.is(shmPath('foo'), '/dev/shm/dmem-foo');
  assert.is(shmPath('/dev/shm/x'), '/dev/shm/x');
  assert.is(shmPath('/dev/hugepages/pool'), '/dev/hugepages/pool');
  assert.is(shmPath('/dev/dax0.0'), '/dev/dax0.0');
  for (const bad of ['', 'a/b', '..', '../etc/passwd', 'x..y', 'dir/', 'nul\0']) {
    throwsTyped(() => shmPath(bad), InvalidArgumentError);
    throwsTyped(() => openShm(bad, { create: true, size: 4096 }), InvalidArgumentError);
    throwsTyped(() => removeShm(bad), InvalidArgumentError);
  }
});

test('cas64, faa64, load64, store64 and read/write on one mapping', () => {
  const name = uniqueName();
  try {
    const m = openShm(name, { create: true, size: 1 << 20 });
    const t = m.transport;
    assert.ok(m.created);
    assert.is(m.path, shmPath(name));
    assert.is(t.kind, 'cxl-shm');
    assert.is(t.size, 1 << 20);
    assert.is(statSync(m.path).size, 1 << 20);

    assert.is(t.load64(64), 0n);
    t.store64(64, 41n);
    assert.is(t.load64(64), 41n);
    assert.is(t.cas64(64, 41n, 42n), 41n, 'successful cas returns expected');
    assert.is(t.load64(64), 42n);
    assert.is(t.cas64(64, 41n, 99n), 42n, 'failed cas returns the current word');
    assert.is(t.load64(64), 42n, 'failed cas changes nothing');
    assert.is(t.faa64(64, 8n), 42n, 'faa returns the previous word');
    assert.is(t.load64(64), 50n);
    t.store64(72, -1n);
    assert.is(t.faa64(72, 1n), -1n);
    assert.is(t.load64(72), 0n, 'faa wraps at 64 bits');
    const last = t.size - 8;
    t.store64(last, 0x0123456789abcdefn);
    assert.is(t.load64(last), 0x0123456789abcdefn);

    const src = bytesOf(5000, 7);
    t.write(1001, src);
    const dst = new Uint8Array(5000);
    t.read(1001, dst);
    assert.ok(sameBytes(dst, src));
    m.transport.close();
    m.transport.close();
  } finally {
    removeShm(name);
  }
});

test('two mappings of one file in one process are one memory', () => {
  const name = uniqueName();
  try {
    const a = openShm(name, { create: true, size: 65536 });
    const b = openShm(name, { create: true, size: 131072 });
    assert.ok(a.created);
    assert.not.ok(b.created, 'second open finds the file');
    assert.is(b.transport.size, 65536, 'an existing pool keeps its size');

    const src = bytesOf(300, 3);
    a.transport.write(4000, src);
    const dst = new Uint8Array(300);
    b.transport.read(4000, dst);
    assert.ok(sameBytes(dst, src));

    assert.is(b.transport.cas64(8, 0n, 7n), 0n);
    assert.is(a.transport.load64(8), 7n);
    assert.is(a.transport.faa64(8, 3n), 7n);
    assert.is(b.transport.load64(8), 10n);

    a.transport.close();
    assert.is(b.transport.load64(8), 10n, 'closing one mapping leaves the other');
    b.transport.close();

    const c = openShm(name, {});
    assert.not.ok(c.created);
    assert.is(c.transport.load64(8), 10n, 'contents outlive every mapping');
    c.transport.close();
  } finally {
    removeShm(name);
  }
});

const CHILD = `
const [, url, name, n] = process.argv;
const { openShm } = await import(url);
const t = openShm(name, {}).transport;
t.faa64(8, 1n);
const deadline = Date.now() + 30000;
while (t.load64(16) === 0n) {
  if (Date.now() > deadline) throw new Error('parent never started the race');
}
for (let i = 0; i < Number(n); i++) t.faa64(0, 1n);
for (let i = 0; i < Number(n); i++) {
  let cur = t.load64(24);
  for (;;) {
    const seen = t.cas64(24, cur, cur + 1n);
    if (seen === cur) break;
    cur = seen;
  }
}
t.close();
`;

test('faa64 and cas64 are atomic across processes (2 x 100k increments)', async () => {
  const name = uniqueName();
  const n = 100_000;
  try {
    const t = openShm(name, { create: true, size: 4096 }).transport;
    const url = new URL('../plugins/cxl-shm/index.js', import.meta.url).href;
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD, url, name, String(n)], { stdio: ['ignore', 'inherit', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    let exitCode: number | null | undefined;
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => { exitCode = code; resolve(code); }));

    const deadline = Date.now() + 30000;
    while (t.load64(8) === 0n) {
      if (exitCode !== undefined) assert.unreachable(`child exited early (${exitCode}): ${stderr}`);
      if (Date.now() > deadline) { child.kill(); assert.unreachable('child never mapped the pool'); }
      await sleep(1);
    }
    t.store64(16, 1n);
    for (let i = 0; i < n; i++) t.faa64(0, 1n);
    for (let i = 0; i < n; i++) {
      let cur = t.load64(24);
      for (;;) {
        const seen = t.cas64(24, cur, cur + 1n);
        if (seen === cur) break;
        cur = seen;
      }
    }
    assert.is(await exited, 0, `child failed: ${stderr}`);
    assert.is(t.load64(0), BigInt(2 * n), 'faa64 lost no update');
    assert.is(t.load64(24), BigInt(2 * n), 'cas64 lost no update');
    t.close();
  } finally {
    removeShm(name);
  }
});

test('several small windows: words in each, copies across boundaries', () => {
  const name = uniqueName();
  const w = 65536;
  const size = 4 * w + 8192;
  try {
    const t = openShm(name, { create: true, size, windowBytes: w }).transport;
    assert.is(t.size, size);
    for (let k = 0; k < 5; k++) {
      const first = k * w;
      const lastWord = Math.min((k + 1) * w, size) - 8;
      t.store64(first, BigInt(k + 1));
      assert.is(t.cas64(lastWord, 0n, BigInt(100 + k)), 0n);
      assert.is(t.faa64(first, 10n), BigInt(k + 1));
    }
    for (let k = 0; k < 5; k++) {
      assert.is(t.load64(k * w), BigInt(k + 11));
      assert.is(t.load64(Math.min((k + 1) * w, size) - 8), BigInt(100 + k));
    }
    const src = bytesOf(3 * w, 11);
    t.write(w - 100, src);
    const dst = new Uint8Array(3 * w);
    t.read(w - 100, dst);
    assert.ok(sameBytes(dst, src), 'copy over three boundaries round-trips');
    const again = openShm(name, { windowBytes: 2 * w }).transport;
    const seen = new Uint8Array(3 * w);
    again.read(w - 100, seen);
    assert.ok(sameBytes(seen, src), 'a mapping with other windows sees the same bytes');
    assert.is(again.load64(0), 11n, 'and the same words');
    assert.is(again.load64(size - 8), 104n);
    again.close();
    const tail = bytesOf(1000, 5);
    t.write(4 * w - 500, tail);
    const back = new Uint8Array(1000);
    t.read(4 * w - 500, back);
    assert.ok(sameBytes(back, tail), 'copy into the short last window');
    assert.is(t.view(w - 4, 8), null, 'a view may not straddle windows');
    const v = t.view(2 * w + 16, 8);
    assert.ok(v);
    t.store64(2 * w + 16, 0x0807060504030201n);
    assert.equal(Array.from(v ?? []), [1, 2, 3, 4, 5, 6, 7, 8], 'view aliases pool memory');

    t.close();
  } finally {
    removeShm(name);
  }
});

test('5 GiB sparse pool with default 1 GiB windows', () => {
  const name = uniqueName();
  const size = 5 * GiB;
  try {
    const m = openShm(name, { create: true, size });
    const t = m.transport;
    assert.is(t.size, size);
    const offsets = [0, size - 8];
    for (let k = 1; k < 5; k++) offsets.push(k * GiB - 8, k * GiB);
    offsets.forEach((off, i) => t.store64(off, BigInt(i + 1) * 0x1_0000_0001n));
    offsets.forEach((off, i) => assert.is(t.load64(off), BigInt(i + 1) * 0x1_0000_0001n, `word at ${off}`));
    assert.is(t.faa64(size - 8, 1n), 2n * 0x1_0000_0001n);
    assert.is(t.cas64(4 * GiB, 10n * 0x1_0000_0001n, 5n), 10n * 0x1_0000_0001n);
    assert.is(t.load64(4 * GiB), 5n);

    const src = bytesOf(4096, 9);
    t.write(3 * GiB - 2048, src);
    const dst = new Uint8Array(4096);
    t.read(3 * GiB - 2048, dst);
    assert.ok(sameBytes(dst, src), 'copy across the 3 GiB boundary');
    assert.ok(statSync(m.path).blocks * 512 < 16 * 2 ** 20, 'the pool file stays sparse');
    t.close();
  } finally {
    removeShm(name);
  }
});

test('a missing pool without create is TransportUnavailableError naming the path', () => {
  const name = uniqueName();
  throwsTyped(() => openShm(name, {}), TransportUnavailableError, new RegExp(`${shmPath(name)}.*dmem server --pool ${name} --size BYTES`));
  throwsTyped(() => openShm(name, { create: true }), InvalidArgumentError, /without a size/);
  assert.not.ok(existsSync(shmPath(name)));
  assert.is(removeShm(name), false);
});

test('an empty pool file is refused, then removed', () => {
  const name = uniqueName();
  try {
    writeFileSync(shmPath(name), '');
    throwsTyped(() => openShm(name, { size: 4096 }), TransportUnavailableError, /empty/);
  } finally {
    assert.is(removeShm(name), true);
  }
  assert.is(removeShm(name), false);
});

test('bad sizes and windows are InvalidArgumentError, and create nothing', () => {
  const name = uniqueName();
  try {
    for (const size of [0, -8, 12, 1.5, 2 ** 41, Number.NaN]) {
      throwsTyped(() => openShm(name, { create: true, size }), InvalidArgumentError, /size/);
    }
    for (const windowBytes of [0, 2048, 3000, 65537, 2 ** 33]) {
      throwsTyped(() => openShm(name, { create: true, size: 65536, windowBytes }), InvalidArgumentError, /windowBytes/);
    }
    assert.not.ok(existsSync(shmPath(name)));
  } finally {
    removeShm(name);
  }
});

test('failures half-way close the descriptor and remove a file they created', () => {
  const name = uniqueName();
  removeShm(name);
  const before = openFds();
  try {
    throwsTyped(() => openShm(name, { create: true, size: 2 ** 40 }), InvalidArgumentError, /does not fit/);
    assert.not.ok(existsSync(shmPath(name)), 'the file created for the failed pool is gone');
    throwsTyped(() => openShm('/dev/null', {}), InvalidArgumentError, /\/dev\/null.*size/);
    throwsTyped(() => openShm('/dev/null', { size: 4096 }), InvalidArgumentError, /2097152/);
    throwsTyped(() => openShm('/dev/null', { size: 4 * 2 ** 20, windowBytes: 2 * 2 ** 20 }), TransportUnavailableError, /mmap \/dev\/null.*ENODEV/);
    assert.is(openFds(), before, 'no descriptor leaked');
  } finally {
    removeShm(name);
  }
});

test('special files are neither mapped nor removed', () => {
  const path = shmPath(uniqueName());
  execFileSync('mkfifo', [path]);
  try {
    throwsTyped(() => openShm(path, { size: 4096 }), InvalidArgumentError, /neither a regular file/);
    throwsTyped(() => removeShm(path), InvalidArgumentError, /refusing/);
    assert.ok(existsSync(path));
  } finally {
    unlinkSync(path);
  }
});

test.run();
