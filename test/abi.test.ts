/**
 * ABI conformance: hosts build/dmem.wasm and build/dmem.debug.wasm from
 * docs/abi.md alone. Nothing here imports src/, assembly/ or plugins/: the
 * host below (a SharedArrayBuffer pool, BigInt64Array atomics) and the typing
 * of the exports are written from the document, so a test that fails here
 * means the document and the module disagree.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 4 * KiB;
const SECTION = 2 * MiB;
const CLASSES = 10;

const Status = {
  OK: 0,
  NOT_A_POOL: -1,
  VERSION: -2,
  CORRUPT: -3,
  EXHAUSTED: -4,
  INVALID_ADDRESS: -5,
  DOUBLE_FREE: -6,
  INVALID_ARGUMENT: -7,
  CLIENT_TABLE_FULL: -8,
  NOT_ATTACHED: -9,
} as const;

const Geometry = {
  poolBytes: 0,
  sections: 1,
  maxClients: 2,
  dataOffset: 3,
  clientTableOffset: 4,
  sectionHeadersOffset: 5,
  spanHeadersOffset: 6,
  ownerLogOffset: 7,
  clientId: 8,
  superblockBytes: 9,
} as const;

const StatsIndex = {
  allocs: 0,
  frees: 1,
  allocatedPerClass: 8,
  freedPerClass: 19,
} as const;

const ScanIndex = {
  freeSections: 0,
  chunkSections: 1,
  largeSections: 2,
  freeChunks: 3,
  orphanChunks: 4,
  largestFreeRun: 5,
  sealedSpans: 6,
  liveClients: 7,
  blocksHeld: 8,
  chunksHeld: 19,
} as const;

const RESULT_WORDS = 30;

/** The exports table of docs/abi.md, as TypeScript. */
interface CoreExports {
  readonly memory: WebAssembly.Memory;
  init(seed: bigint): void;
  format(bytes: number, clients: number): number;
  attach(transportBytes: number): number;
  register(pid: number, hostId: bigint, startTime: bigint, pidNs: number, bootId: number): number;
  renew(): void;
  unregister(): number;
  alloc(cls: number): number;
  allocBytes(bytes: number): number;
  classOfBytes(bytes: bigint): number;
  free(offset: number): number;
  check(offset: number, len: number): number;
  geometry(field: number): number;
  stats(): number;
  scanPool(): number;
  layoutVersion(): number;
}

const EXPORTED_FUNCTIONS = [
  'init', 'format', 'attach', 'register', 'renew', 'unregister', 'alloc', 'allocBytes',
  'classOfBytes', 'free', 'check', 'geometry', 'stats', 'scanPool', 'layoutVersion',
] as const;

/** The pool medium: one SharedArrayBuffer seen as 64-bit words and as bytes. */
interface Pool {
  readonly words: BigInt64Array;
  readonly bytes: Uint8Array;
}

function newPool(size: number): Pool {
  const buffer = new SharedArrayBuffer(size);
  return { words: new BigInt64Array(buffer), bytes: new Uint8Array(buffer) };
}

interface HostOptions {
  readonly debug?: boolean;
  readonly now?: () => number;
}

/** A core instance plus helpers that copy result blocks out of its memory. */
interface Host {
  readonly core: CoreExports;
  stats(): number[];
  scanPool(): number[];
}

const releaseWasm = readFileSync(new URL('../../build/dmem.wasm', import.meta.url));
const debugWasm = readFileSync(new URL('../../build/dmem.debug.wasm', import.meta.url));

/** Reads an AssemblyScript string: UTF-16LE, byte length in the u32 at ptr - 4. */
function readAsString(memory: WebAssembly.Memory, ptr: number): string {
  if (ptr === 0) return '';
  const view = new DataView(memory.buffer);
  const byteLength = view.getUint32(ptr - 4, true);
  return Buffer.from(memory.buffer, ptr, byteLength).toString('utf16le');
}

function wordIndex(pool: Pool, offset: number): number {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % 8 !== 0 || offset + 8 > pool.bytes.length) {
    throw new RangeError(`core asked for a word at bad offset ${offset}`);
  }
  return offset / 8;
}

function byteRange(pool: Pool, offset: number, len: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || len < 0 || offset + len > pool.bytes.length) {
    throw new RangeError(`core asked for ${len} bytes at bad offset ${offset}`);
  }
}

function host(pool: Pool, options: HostOptions = {}): Host {
  const now = options.now ?? ((): number => Date.now());
  let memory: WebAssembly.Memory | undefined;
  const mem = (): WebAssembly.Memory => {
    if (memory === undefined) throw new Error('core called an import before instantiation finished');
    return memory;
  };
  const imports = {
    dmem: {
      load64: (o: number): bigint => Atomics.load(pool.words, wordIndex(pool, o)),
      store64: (o: number, v: bigint): void => {
        Atomics.store(pool.words, wordIndex(pool, o), v);
      },
      cas64: (o: number, e: bigint, d: bigint): bigint =>
        Atomics.compareExchange(pool.words, wordIndex(pool, o), e, d),
      faa64: (o: number, d: bigint): bigint => Atomics.add(pool.words, wordIndex(pool, o), d),
      read: (o: number, p: number, n: number): void => {
        byteRange(pool, o, n);
        new Uint8Array(mem().buffer, p, n).set(pool.bytes.subarray(o, o + n));
      },
      write: (o: number, p: number, n: number): void => {
        byteRange(pool, o, n);
        pool.bytes.set(new Uint8Array(mem().buffer, p, n), o);
      },
      now: (): number => now(),
      crash: (): void => { throw new Error('crash point reached, but none was armed'); },
    },
    env: {
      abort: (msg: number, file: number, line: number, column: number): never => {
        const m = mem();
        throw new Error(`core assert: ${readAsString(m, msg)} at ${readAsString(m, file)}:${line}:${column}`);
      },
    },
  };
  const module = new WebAssembly.Module(options.debug === true ? debugWasm : releaseWasm);
  const instance = new WebAssembly.Instance(module, imports);
  const exports = instance.exports;
  for (const name of EXPORTED_FUNCTIONS) {
    if (typeof exports[name] !== 'function') throw new Error(`export ${name} is missing`);
  }
  if (!(exports.memory instanceof WebAssembly.Memory)) throw new Error('export memory is missing');
  const core = exports as unknown as CoreExports;
  memory = core.memory;
  const block = (ptr: number): number[] => Array.from(new Float64Array(core.memory.buffer, ptr, RESULT_WORDS));
  return {
    core,
    stats: () => block(core.stats()),
    scanPool: () => block(core.scanPool()),
  };
}

/** A deterministic PRNG for the test's own choices (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const classBytes = (cls: number): number => CHUNK * 2 ** cls;

interface Block {
  readonly offset: number;
  readonly size: number;
}

function assertDisjoint(blocks: readonly Block[], what: string): void {
  const sorted = [...blocks].sort((x, y) => x.offset - y.offset);
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    assert.ok(
      prev.offset + prev.size <= cur.offset,
      `${what}: [${prev.offset}, +${prev.size}) overlaps [${cur.offset}, +${cur.size})`,
    );
  }
}

/** Formats a pool and registers one client; returns the host and its geometry. */
function formatted(size: number, seed = 1n, clients = 16): { pool: Pool; h: Host; id: number } {
  const pool = newPool(size);
  const h = host(pool);
  h.core.init(seed);
  assert.is(h.core.format(size, clients), Status.OK, 'format');
  const id = h.core.register(process.pid, 0n, 0n, 0, 0);
  assert.ok(id >= 1 && id <= 4093, `register returned ${id}`);
  return { pool, h, id };
}

function dataArea(core: CoreExports): { start: number; end: number } {
  const start = core.geometry(Geometry.dataOffset);
  return { start, end: start + core.geometry(Geometry.sections) * SECTION };
}

test('format: geometry, magic and layout version', () => {
  const size = 64 * MiB;
  const pool = newPool(size);
  const { core } = host(pool);
  core.init(7n);
  assert.is(core.format(size, 16), Status.OK);

  const poolBytes = core.geometry(Geometry.poolBytes);
  const sections = core.geometry(Geometry.sections);
  const dataOffset = core.geometry(Geometry.dataOffset);
  const superblock = core.geometry(Geometry.superblockBytes);
  const clientTable = core.geometry(Geometry.clientTableOffset);
  const sectionHeaders = core.geometry(Geometry.sectionHeadersOffset);
  const spanHeaders = core.geometry(Geometry.spanHeadersOffset);
  const ownerLog = core.geometry(Geometry.ownerLogOffset);

  assert.is(poolBytes, size, 'pool bytes');
  assert.is(core.geometry(Geometry.maxClients), 16, 'max clients');
  assert.ok(Number.isInteger(sections) && sections > 0, `sections ${sections}`);
  assert.ok(dataOffset > 0, 'data offset > 0');
  assert.is(dataOffset % CHUNK, 0, 'data offset 4 KiB aligned');
  assert.ok(sections * SECTION + dataOffset <= size, 'data sections fit in the pool');

  assert.is(superblock, 4 * KiB, 'superblock is 4 KiB');
  assert.ok(superblock <= clientTable, 'client table after the superblock');
  assert.ok(clientTable + 64 * 16 <= sectionHeaders, 'client table: 64 B per slot');
  assert.ok(sectionHeaders + 8 * sections <= spanHeaders, 'section headers: 8 B per section');
  assert.ok(spanHeaders < ownerLog, 'span headers before the owner log');
  assert.ok(ownerLog + 8 * sections * (SECTION / CHUNK) <= dataOffset, 'owner log: 8 B per chunk');

  const view = new DataView(pool.bytes.buffer);
  assert.is(Buffer.from(pool.bytes.subarray(0, 8)).toString('latin1'), 'DMEMPOOL', 'magic bytes');
  assert.is(view.getBigUint64(0, true), 0x4c4f4f504d454d44n, 'magic as a little-endian u64');
  assert.is(view.getUint32(8, true), core.layoutVersion(), 'layout version at offset 8');
  assert.ok(core.layoutVersion() > 0, 'layout version is set');

  const id = core.register(process.pid, 0n, 0n, 0, 0);
  assert.is(core.geometry(Geometry.clientId), id, 'geometry 8 is this client id');
});

test('register, alloc every class, free, double free, interior free, check', () => {
  const { h } = formatted(64 * MiB);
  const { core } = h;
  const { start, end } = dataArea(core);

  const blocks: Block[] = [];
  for (let cls = 0; cls < CLASSES; cls++) {
    const offset = core.alloc(cls);
    const size = classBytes(cls);
    assert.ok(offset >= 0, `alloc(${cls}) returned ${offset}`);
    assert.ok(Number.isSafeInteger(offset), `alloc(${cls}) offset is an integer`);
    assert.ok(offset >= start && offset + size <= end, `class ${cls} block inside the data area`);
    assert.is((offset - start) % CHUNK, 0, `class ${cls} block 4 KiB aligned from the data offset`);
    blocks.push({ offset, size });
  }
  assertDisjoint(blocks, 'one block per class');
  assert.is(new Set(blocks.map((b) => b.offset)).size, CLASSES, 'distinct offsets');

  for (let cls = 0; cls < CLASSES; cls++) {
    const { offset, size } = blocks[cls];
    assert.is(core.check(offset, size), Status.OK, `check whole class ${cls} block`);
    assert.is(core.check(offset + size - 1, 1), Status.OK, `check last byte of class ${cls} block`);
    if (size > CHUNK) {
      assert.is(core.free(offset + CHUNK), Status.INVALID_ADDRESS, `free inside class ${cls} block`);
      assert.is(core.check(offset, size), Status.OK, `interior free left class ${cls} block allocated`);
    }
  }
  assert.is(core.free(start - CHUNK), Status.INVALID_ADDRESS, 'free of a metadata offset');

  for (let cls = 0; cls < CLASSES; cls++) {
    const { offset, size } = blocks[cls];
    assert.is(core.free(offset), Status.OK, `free class ${cls}`);
    assert.is(core.check(offset, size), Status.INVALID_ADDRESS, `check after free of class ${cls}`);
    assert.is(core.free(offset), Status.DOUBLE_FREE, `second free of class ${cls}`);
  }
});

test('allocBytes(5 MiB), stats and scanPool', () => {
  const { h } = formatted(64 * MiB);
  const { core } = h;
  const { start, end } = dataArea(core);
  const before = h.scanPool();
  assert.is(before[ScanIndex.liveClients], 1, 'one live client');
  assert.is(before[ScanIndex.chunkSections] + before[ScanIndex.largeSections], 0, 'fresh pool has no used sections');

  assert.is(core.classOfBytes(1n), 0);
  assert.is(core.classOfBytes(4096n), 0);
  assert.is(core.classOfBytes(4097n), 1);
  assert.is(core.classOfBytes(BigInt(SECTION)), 9);

  const large = core.allocBytes(5 * MiB);
  assert.ok(large >= 0, `allocBytes(5 MiB) returned ${large}`);
  assert.is((large - start) % SECTION, 0, 'large block starts on a section');
  assert.ok(large + 6 * MiB <= end, 'large block inside the data area');
  assert.is(core.check(large, 5 * MiB), Status.OK, 'the 5 MiB are one allocated range');
  assert.is(core.check(large, 6 * MiB), Status.OK, 'rounded up to 3 whole sections');

  const perClass = [3, 2, 1, 0, 2, 0, 0, 1, 0, 1];
  const live: Block[] = [{ offset: large, size: 6 * MiB }];
  for (let cls = 0; cls < CLASSES; cls++) {
    for (let i = 0; i < perClass[cls]; i++) {
      const offset = core.alloc(cls);
      assert.ok(offset >= 0, `alloc(${cls})`);
      live.push({ offset, size: classBytes(cls) });
    }
  }
  const small = core.allocBytes(3000);
  assert.ok(small >= 0, 'allocBytes(3000)');
  live.push({ offset: small, size: CHUNK });
  assertDisjoint(live, 'live blocks');

  const expectedPerClass = [...perClass];
  expectedPerClass[0] += 1;
  const totalSmall = expectedPerClass.reduce((a, b) => a + b, 0);

  const s = h.stats();
  assert.is(s[StatsIndex.allocs], totalSmall + 1, 'stats allocs');
  assert.is(s[StatsIndex.frees], 0, 'stats frees');
  for (let cls = 0; cls < CLASSES; cls++) {
    assert.is(s[StatsIndex.allocatedPerClass + cls], expectedPerClass[cls], `stats allocated class ${cls}`);
  }
  assert.is(s[StatsIndex.allocatedPerClass + 10], 1, 'stats allocated above 2 MiB');

  const held = h.scanPool();
  for (let cls = 0; cls < CLASSES; cls++) {
    assert.is(held[ScanIndex.blocksHeld + cls], expectedPerClass[cls], `scan blocks held class ${cls}`);
    assert.is(held[ScanIndex.chunksHeld + cls], expectedPerClass[cls] * 2 ** cls, `scan chunks held class ${cls}`);
  }
  assert.is(held[ScanIndex.blocksHeld + 10], 1, 'scan blocks held above 2 MiB');
  assert.is(held[ScanIndex.chunksHeld + 10], 3 * (SECTION / CHUNK), 'scan chunks held above 2 MiB');
  assert.ok(
    held[ScanIndex.largeSections] >= 3 && held[ScanIndex.largeSections] <= 3 + expectedPerClass[9],
    `scan LARGE sections ${held[ScanIndex.largeSections]}`,
  );
  const smallChunks = expectedPerClass.reduce((a, n, cls) => a + n * 2 ** cls, 0);
  assert.is(
    held[ScanIndex.freeChunks],
    before[ScanIndex.freeChunks] - smallChunks - 3 * (SECTION / CHUNK),
    'free chunks went down by what is held',
  );

  for (const b of live) assert.is(core.free(b.offset), Status.OK, `free ${b.offset}`);

  const s2 = h.stats();
  assert.is(s2[StatsIndex.allocs], totalSmall + 1, 'stats allocs after frees');
  assert.is(s2[StatsIndex.frees], totalSmall + 1, 'stats frees');
  for (let cls = 0; cls < CLASSES; cls++) {
    assert.is(s2[StatsIndex.freedPerClass + cls], expectedPerClass[cls], `stats freed class ${cls}`);
  }
  assert.is(s2[StatsIndex.freedPerClass + 10], 1, 'stats freed above 2 MiB');

  const after = h.scanPool();
  for (let i = 0; i <= 10; i++) {
    assert.is(after[ScanIndex.blocksHeld + i], 0, `no blocks held at index ${ScanIndex.blocksHeld + i}`);
    assert.is(after[ScanIndex.chunksHeld + i], 0, `no chunks held at index ${ScanIndex.chunksHeld + i}`);
  }
  assert.is(after[ScanIndex.largeSections], 0, 'no LARGE sections left');
  assert.is(after[ScanIndex.freeChunks], before[ScanIndex.freeChunks], 'all chunks free again');
});

test('two clients over one pool never overlap across 2000 interleaved allocs', () => {
  const size = 256 * MiB;
  const { pool, h: a, id: idA } = formatted(size, 11n);
  const b = host(pool);
  b.core.init(12n);
  assert.is(b.core.attach(size), Status.OK, 'second instance attaches');
  const idB = b.core.register(process.pid, 1n, 0n, 0, 0);
  assert.ok(idB >= 1 && idB <= 4093, `second register returned ${idB}`);
  assert.is.not(idA, idB, 'distinct client ids');
  assert.is(a.scanPool()[ScanIndex.liveClients], 2, 'two live client slots');

  const { start, end } = dataArea(a.core);
  const random = rng(2024);
  const blocks: Block[] = [];
  const byClient = [0, 0];
  for (let i = 0; i < 2000; i++) {
    const who = random() < 0.5 ? 0 : 1;
    const cls = Math.floor(random() * 5);
    const core = who === 0 ? a.core : b.core;
    const offset = core.alloc(cls);
    assert.ok(offset >= 0, `alloc #${i} class ${cls} by client ${who} returned ${offset}`);
    assert.ok(offset >= start && offset + classBytes(cls) <= end, `alloc #${i} inside the data area`);
    blocks.push({ offset, size: classBytes(cls) });
    byClient[who]++;
  }
  assert.ok(byClient[0] > 0 && byClient[1] > 0, 'both clients allocated');
  assertDisjoint(blocks, 'blocks of two clients');
  for (const { offset, size } of blocks) {
    assert.is(b.core.check(offset, size), Status.OK, 'every block is allocated as seen by client B');
  }

  assert.is(a.core.unregister(), Status.OK, 'client A unregisters');
  assert.is(b.core.unregister(), Status.OK, 'client B unregisters');
});

test('exhaustion returns -4, and freeing everything restores the free chunks', () => {
  const { h } = formatted(64 * MiB);
  const { core } = h;
  const sections = core.geometry(Geometry.sections);
  const initial = h.scanPool()[ScanIndex.freeChunks];
  assert.ok(initial > 0 && initial <= sections * (SECTION / CHUNK), `initial free chunks ${initial}`);

  const offsets: number[] = [];
  let status = 0;
  for (let i = 0; i <= sections; i++) {
    const r = core.alloc(9);
    if (r < 0) {
      status = r;
      break;
    }
    offsets.push(r);
  }
  assert.is(status, Status.EXHAUSTED, 'class 9 allocs end with EXHAUSTED');
  assert.ok(offsets.length > 0 && offsets.length <= sections, `got ${offsets.length} 2 MiB blocks`);
  assertDisjoint(offsets.map((offset) => ({ offset, size: SECTION })), 'class 9 blocks');
  assert.is(core.alloc(9), Status.EXHAUSTED, 'still exhausted');

  for (const offset of offsets) assert.is(core.free(offset), Status.OK, 'free class 9 block');
  const after = h.scanPool();
  assert.is(after[ScanIndex.freeChunks], initial, 'free chunks back to the total');
  assert.is(after[ScanIndex.blocksHeld + 9], 0, 'no class 9 blocks held');
  assert.ok(core.alloc(9) >= 0, 'class 9 allocs work again');
});

test('attach and format refusals: NOT_A_POOL, INVALID_ARGUMENT, VERSION, NOT_ATTACHED', () => {
  const size = 16 * MiB;
  const pool = newPool(size);
  const first = host(pool);
  first.core.init(1n);
  assert.is(first.core.attach(size), Status.NOT_A_POOL, 'attach on zeroed memory');
  assert.is(first.core.alloc(0), Status.NOT_ATTACHED, 'alloc before attach');
  assert.is(first.core.format(size, 0), Status.INVALID_ARGUMENT, 'format with 0 clients');
  assert.is(first.core.format(size, 4096), Status.INVALID_ARGUMENT, 'format with 4096 clients');
  assert.is(first.core.format(size, 4), Status.OK, 'format');
  assert.is(first.core.alloc(0), Status.NOT_ATTACHED, 'alloc before register');

  const second = host(pool);
  second.core.init(2n);
  assert.is(second.core.format(size, 4), Status.INVALID_ARGUMENT, 'second format on a formatted pool');
  assert.is(second.core.attach(size), Status.OK, 'the pool still attaches');

  const view = new DataView(pool.bytes.buffer);
  const version = view.getUint32(8, true);
  view.setUint32(8, version + 1, true);
  const third = host(pool);
  third.core.init(3n);
  assert.is(third.core.attach(size), Status.VERSION, 'attach with another layout version');
  view.setUint32(8, version, true);
  assert.is(third.core.attach(size), Status.OK, 'attach once the version is restored');
});

test('determinism: same seed, same offsets; another seed, other offsets', () => {
  const run = (seed: bigint): number[] => {
    const size = 64 * MiB;
    const pool = newPool(size);
    const h = host(pool, { now: () => 1_700_000_000_000 });
    h.core.init(seed);
    assert.is(h.core.format(size, 8), Status.OK);
    assert.ok(h.core.register(4242, 7n, 0n, 0, 0) > 0);
    const random = rng(99);
    const live: number[] = [];
    const seen: number[] = [];
    for (let i = 0; i < 200; i++) {
      const offset = h.core.alloc(Math.floor(random() * 6));
      assert.ok(offset >= 0, `alloc #${i}`);
      live.push(offset);
      seen.push(offset);
      if (random() < 0.3) {
        const victim = live.splice(Math.floor(random() * live.length), 1)[0];
        assert.is(h.core.free(victim), Status.OK, `free #${i}`);
      }
    }
    return seen;
  };
  const one = run(0x1234n);
  const again = run(0x1234n);
  const other = run(0x9876n);
  assert.equal(again, one, 'same seed gives the same offsets');
  assert.ok(
    other.some((o, i) => o !== one[i]),
    'a different seed gives a different sequence',
  );
});

test('debug build instantiates with env.abort and allocates', () => {
  const size = 16 * MiB;
  const pool = newPool(size);
  const { core } = host(pool, { debug: true });
  core.init(5n);
  assert.is(core.format(size, 4), Status.OK, 'debug format');
  const id = core.register(process.pid, 0n, 0n, 0, 0);
  assert.ok(id >= 1 && id <= 4095, `debug register ${id}`);
  const { start, end } = dataArea(core);
  const offset = core.alloc(2);
  assert.ok(offset >= start && offset + classBytes(2) <= end, `debug alloc ${offset}`);
  assert.is(core.check(offset, classBytes(2)), Status.OK);
  assert.is(core.free(offset), Status.OK, 'debug free');
  assert.is(core.free(offset), Status.DOUBLE_FREE, 'debug double free');
  assert.is(core.unregister(), Status.OK, 'debug unregister');
});

test.run();
