/**
 * Model-based fuzz: 100k random alloc / free / write / read operations
 * (plus bad frees that must fail and change nothing) against a reference
 * model that knows which bytes every live block holds and which chunks are
 * taken. Any divergence fails at the operation that caused it. Running the
 * same seed twice must give the same run, operation by operation (invariant 4).
 * Each runs with the block cache off (every free is the core's plain free,
 * so free + held = all chunks at every check) and on (256 blocks a class: cached
 * chunks are the rest, and a flush at the end gives them back).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { DoubleFreeError, InvalidAddressError, Pool, PoolExhaustedError, memoryTransport } from '../src/index.js';

const CHUNK = 4096;
const MiB = 1024 * 1024;
/** Bytes of each block the model mirrors (writes land in this prefix). */
const MIRROR = 8192;

interface Block { gaddr: number; bytes: number; chunks: number; data: Uint8Array }

/** xorshift32: the fuzzer's own PRNG, independent of the core's. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

function chunksFor(bytes: number): number {
  const c = Math.ceil(bytes / CHUNK);
  if (c > 512) return Math.ceil(c / 512) * 512;
  return 2 ** Math.ceil(Math.log2(c));
}

/**
 * Runs `ops` operations with a block cache of `blockCache` blocks a class
 * (0: every free is the core's plain free); returns a digest of every
 * result, for the determinism check.
 */
function fuzz(seed: number, ops: number, blockCache: number): { digest: string; counts: Record<string, number> } {
  const pool = Pool.attach(memoryTransport(256 * MiB), { create: true, seed, debug: true, heartbeatMs: 0, blockCache });
  const random = rng(seed);
  const live: Block[] = [];
  const taken = new Map<number, number>();
  const hash = createHash('sha256');
  const counts: Record<string, number> = { alloc: 0, free: 0, write: 0, read: 0, badFree: 0, exhausted: 0 };
  let liveChunks = 0;
  const capacity = pool.geometry.sections * 512;

  const pickSize = (): number => {
    const r = random();
    if (r < 0.6) return 1 + Math.floor(random() * 16 * CHUNK);
    if (r < 0.9) return 1 + Math.floor(random() * 512 * 1024);
    if (r < 0.99) return 1 + Math.floor(random() * 2 * MiB);
    return 2 * MiB + 1 + Math.floor(random() * 6 * MiB);
  };

  for (let i = 0; i < ops; i++) {
    const r = random();
    if (r < 0.35 || live.length === 0) {
      const bytes = pickSize();
      let gaddr: number;
      try {
        gaddr = pool.alloc(bytes);
      } catch (e) {
        assert.instance(e, PoolExhaustedError);
        assert.ok(liveChunks + chunksFor(bytes) > capacity * 0.5, `exhausted at ${liveChunks}/${capacity} chunks`);
        counts.exhausted++;
        continue;
      }
      const chunks = chunksFor(bytes);
      for (let k = 0; k < chunks; k++) {
        const at = gaddr + k * CHUNK;
        if (taken.has(at)) assert.unreachable(`op ${i}: chunk ${at} handed out twice`);
        taken.set(at, gaddr);
      }
      liveChunks += chunks;
      // A fresh block's contents are unspecified: the model starts from what is there.
      live.push({ gaddr, bytes, chunks, data: pool.read(gaddr, Math.min(MIRROR, chunks * CHUNK)) });
      hash.update(`a${gaddr};`);
      counts.alloc++;
    } else if (r < 0.65) {
      const b = live.splice(Math.floor(random() * live.length), 1)[0];
      const got = pool.read(b.gaddr, b.data.length);
      assert.ok(Buffer.from(got).equals(Buffer.from(b.data)), `op ${i}: block ${b.gaddr} lost its contents before free`);
      pool.free(b.gaddr);
      for (let k = 0; k < b.chunks; k++) taken.delete(b.gaddr + k * CHUNK);
      liveChunks -= b.chunks;
      hash.update(`f${b.gaddr};`);
      counts.free++;
      if (random() < 0.1) {
        assert.throws(() => pool.free(b.gaddr), (e: unknown) => e instanceof DoubleFreeError || (e instanceof InvalidAddressError && taken.has(b.gaddr)));
        counts.badFree++;
      }
    } else if (r < 0.85) {
      const b = live[Math.floor(random() * live.length)];
      const at = Math.floor(random() * b.data.length);
      const len = Math.min(1 + Math.floor(random() * 256), b.data.length - at);
      const bytes = new Uint8Array(len);
      for (let k = 0; k < len; k++) bytes[k] = Math.floor(random() * 256);
      pool.write(b.gaddr + at, bytes);
      b.data.set(bytes, at);
      counts.write++;
    } else if (r < 0.97) {
      const b = live[Math.floor(random() * live.length)];
      const at = Math.floor(random() * b.data.length);
      const len = Math.min(1 + Math.floor(random() * 512), b.data.length - at);
      const got = pool.read(b.gaddr + at, len);
      assert.ok(Buffer.from(got).equals(Buffer.from(b.data.subarray(at, at + len))), `op ${i}: read of ${b.gaddr}+${at} diverged`);
      counts.read++;
    } else {
      const b = live[Math.floor(random() * live.length)];
      if (b.chunks > 1) {
        assert.throws(() => pool.free(b.gaddr + CHUNK), (e: unknown) => e instanceof InvalidAddressError);
        counts.badFree++;
      }
    }
    if (i % 10000 === 9999) {
      const census = pool.census();
      assert.is(census.chunks.held, liveChunks, `op ${i}: census held chunks`);
      assert.is(census.chunks.orphan, 0, `op ${i}: no orphan chunks`);
      // Freed blocks of classes 0..4 may sit in the block cache: neither held nor free.
      assert.is(census.chunks.free + census.chunks.held + census.cached.chunks, capacity, `op ${i}: free + held + cached = total`);
      if (blockCache === 0) assert.is(census.chunks.free + census.chunks.held, capacity, `op ${i}: free + held = total`);
    }
  }
  for (const b of live) pool.free(b.gaddr);
  assert.is(pool.census().chunks.held, 0, 'all freed at the end');
  pool.flushCache();
  assert.is(pool.census().chunks.free, capacity, 'all free after the flush');
  pool.close();
  return { digest: hash.digest('hex'), counts };
}

test('100k random operations agree with the reference model (the core\'s plain free path, no block cache)', () => {
  const { counts } = fuzz(20261123, 100_000, 0);
  assert.ok(counts.alloc > 20_000 && counts.free > 20_000 && counts.read > 5_000 && counts.write > 5_000, JSON.stringify(counts));
});

test('100k random operations agree with the reference model with a block cache of 256 blocks a class', () => {
  const { counts } = fuzz(20261123, 100_000, 256);
  assert.ok(counts.alloc > 20_000 && counts.free > 20_000 && counts.read > 5_000 && counts.write > 5_000, JSON.stringify(counts));
});

test('the same seed gives the same run; another seed another run', () => {
  for (const cache of [0, 256]) {
    const a = fuzz(42, 20_000, cache);
    const b = fuzz(42, 20_000, cache);
    const c = fuzz(43, 20_000, cache);
    assert.is(a.digest, b.digest, `block cache ${cache}: same seed, same run`);
    assert.is.not(a.digest, c.digest, `block cache ${cache}: another seed, another run`);
  }
});

test.run();
