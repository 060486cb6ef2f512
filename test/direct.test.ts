/**
 * The direct window (docs/abi.md, "Direct window"; src/core.ts mapDirect;
 * plugins/cxl-shm, mapIntoMemory): on an shm pool the plugin maps the pool's
 * first window a second time into the core's own Wasm memory, and the core
 * reaches it with Wasm loads and atomics instead of import calls.
 *
 * Checked here: where it is on (shm by default; not on memory: pools, not
 * with `direct: false` or DMEM_DIRECT=0); that both mappings are one
 * memory, in both directions; that a pool larger than the window is served
 * in and out of it alike (a seeded mix on blocks that straddle it); that
 * close gives the pages back as plain zero memory; and that a bad option is
 * a typed error. The protocol itself runs under every other test, which
 * open shm pools with the default.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { InvalidArgumentError, openPool, type Pool } from '../src/index.js';
import type { Core } from '../src/core.js';
import { Prng } from '../src/bench/prng.js';
import { is, rejects, usage, withPoolName } from './helpers.js';

/** The pool's core (not public API). */
function coreOf(p: Pool): Core {
  return (p as unknown as { core: Core }).core;
}

/** The direct window's place in the core's memory (its base, found by mapDirect). */
function windowOf(p: Pool): { base: number; bytes: number } {
  const w = (coreOf(p) as unknown as { direct: { base: number; bytes: number } | null }).direct;
  assert.ok(w !== null, 'a direct window');
  return { base: w!.base, bytes: w!.bytes };
}

test('an shm pool has a direct window by default over its first window; memory: pools, direct: false and DMEM_DIRECT=0 have none', async () => {
  await withPoolName('dw-on', async (name) => {
    const p = await openPool(`shm:${name}`, { size: '32MiB' });
    const q = await openPool(`shm:${name}`, { create: false, direct: false });
    const saved = process.env.DMEM_DIRECT;
    process.env.DMEM_DIRECT = '0';
    let r: Pool | undefined;
    try {
      r = await openPool(`shm:${name}`, { create: false });
      assert.is(coreOf(p).directBytes, 32 * 2 ** 20, 'the whole 32 MiB pool (one window) is direct');
      assert.is(coreOf(q).directBytes, 0, 'direct: false');
      assert.is(coreOf(r).directBytes, 0, 'DMEM_DIRECT=0');
    } finally {
      if (saved === undefined) delete process.env.DMEM_DIRECT;
      else process.env.DMEM_DIRECT = saved;
      r?.close();
      q.close();
      p.close();
    }
  });
  const m = await openPool('memory:', { size: '32MiB' });
  try {
    assert.is(coreOf(m).directBytes, 0, 'a memory: pool has no medium to map');
  } finally {
    m.close();
  }
});

test('the window and the transport\'s mapping are one memory, both ways; close gives the pages back as zero memory', async () => {
  await withPoolName('dw-one', async (name) => {
    const p = await openPool(`shm:${name}`, { size: '32MiB' });
    const other = await openPool(`shm:${name}`, { create: false, direct: false });
    let closed = false;
    try {
      const { base } = windowOf(p);
      const mem = () => new Uint8Array(coreOf(p).exports.memory.buffer);
      const g = p.alloc(4096);
      const off = g % 2 ** 40;
      // Written by a client without a window (its transport's mapping): seen in p's core memory.
      other.write(g, new Uint8Array(64).fill(0x5A));
      assert.ok(mem().subarray(base + off, base + off + 64).every((v) => v === 0x5A), 'a write through the transport is in the window');
      // Written into p's core memory at the window: read by the other client.
      mem().fill(0xA5, base + off + 64, base + off + 128);
      assert.ok(other.read(g + 64, 64).every((v) => v === 0xA5), 'a write into the window is in the pool');
      // The superblock (pool byte 0) is the pool's.
      assert.equal(Array.from(mem().subarray(base, base + 16)), Array.from(other.transport.mapped!.view(0, 16)!), 'pool byte 0 at the window\'s base');
      p.free(g);
      p.close();
      closed = true;
      // The pages are the core memory's own again: zero, and no longer the pool's.
      assert.ok(mem().subarray(base, base + 4096).every((v) => v === 0), 'zero pages after close');
      mem()[base + 8] = 1;
      assert.is(other.transport.mapped!.view(8, 1)![0] === 1, false, 'a write there no longer reaches the pool');
    } finally {
      if (!closed) p.close();
      other.close();
    }
  });
});

test('a pool larger than its first window: objects and blocks in and out of the direct window, one seeded mix against a model, the same census on both paths', async () => {
  // 8 MiB windows over a 64 MiB pool: the window holds the metadata and the first sections; seed 1's start section puts a quarter of the mix in it.
  const runs: Array<{ objects: number[]; chunks: number }> = [];
  for (const direct of [true, false]) await withPoolName('dw-split', async (name) => {
    {
      const p = await openPool(`shm:${name}`, { size: '64MiB', windowBytes: 8 * 2 ** 20, direct, seed: 1 });
      try {
        assert.is(coreOf(p).directBytes, direct ? 8 * 2 ** 20 : 0);
        const rng = new Prng(11);
        let inside = 0;
        let outside = 0;
        const live = new Map<number, number>();
        for (let step = 0; step < 6000; step++) {
          if (live.size > 0 && rng.below(100) < 45) {
            const keys = [...live.keys()];
            const g = keys[rng.below(keys.length)];
            if (live.get(g)! > 3072) p.free(g);
            else p.heap.free(g);
            live.delete(g);
          } else {
            const n = rng.below(10) === 0 ? 4096 * (1 + rng.below(64)) : 1 + rng.below(3072);
            const g = n > 3072 ? p.alloc(n) : p.heap.alloc(n);
            assert.not.ok(live.has(g), `step ${step}: ${g} handed out twice`);
            live.set(g, n);
            if (g % 2 ** 40 < 8 * 2 ** 20) inside++;
            else outside++;
          }
        }
        assert.ok(inside > 100 && outside > 100, `allocations in the window and past it: ${inside} / ${outside}`);
        const st = p.heap.stats();
        runs.push({ objects: st.perClass.map((c) => c.objects), chunks: p.census().chunks.held });
        for (const [g, n] of live) {
          if (n > 3072) p.free(g);
          else p.heap.free(g);
        }
        p.heap.flush();
        p.heap.trim();
        p.flushCache();
        assert.equal(usage(p), { chunks: 0, objects: 0, cached: 0, slabs: 0 }, 'everything comes back');
        assert.ok(p.fsck().clean, 'fsck clean');
      } finally {
        p.close();
      }
    }
  });
  assert.equal(runs[0], runs[1], 'the same objects per class and chunks held with and without the window');
});

test('a bad direct option is a typed error', async () => {
  await rejects(openPool("memory:", { size: "32MiB", direct: "yes" as unknown as boolean }), is(InvalidArgumentError));
});

test.run();
