/**
 * The paging bench's harness (src/bench/paging.ts, src/bench/kronecker.ts):
 * the Kronecker graph is a simple undirected graph in sorted CSR and the
 * same for the same seed; a tiny bench run gives every cell, and no
 * demand-paging cell beats MIN (pagerank on a space must also equal the
 * local run, which the bench checks itself).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Pool, memoryTransport } from '../src/index.js';
import { kroneckerGraph } from '../src/bench/kronecker.js';
import { runPagingBench, type PagingResult } from '../src/bench/paging.js';
import { ROOT } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

test('Kronecker graph: sorted, symmetric, no self-loops or duplicates, deterministic', () => {
  const g = kroneckerGraph(8, 3);
  assert.is(g.vertices, 256);
  assert.is(g.offsets[256], g.edges);
  assert.ok(g.edges > 256 * 16, `about 2 * 16 entries per vertex before duplicates are removed (${g.edges})`);
  const has = (u: number, v: number): boolean => {
    for (let e = g.offsets[u]; e < g.offsets[u + 1]; e++) if (g.neighbors[e] === v) return true;
    return false;
  };
  for (let u = 0; u < 256; u++) {
    for (let e = g.offsets[u]; e < g.offsets[u + 1]; e++) {
      const v = g.neighbors[e];
      assert.ok(v !== u, 'no self-loop');
      if (e > g.offsets[u]) assert.ok(g.neighbors[e - 1] < v, 'sorted, no duplicate');
      assert.ok(has(v, u), `edge ${u}-${v} is in both lists`);
    }
  }
  const again = kroneckerGraph(8, 3);
  assert.equal(again.neighbors, g.neighbors);
  assert.not.equal(kroneckerGraph(8, 4).neighbors, g.neighbors, 'another seed, another graph');
});

test('a tiny bench run: every cell, hit ratios at most MIN without prefetch', () => {
  const pool = Pool.attach(memoryTransport(96 * 1024 * 1024), { create: true, seed: 2, heartbeatMs: 0 });
  const results = runPagingBench({
    pool, spaceBytes: 512 * 1024, cacheBytes: 128 * 1024, accesses: 5000, patterns: ['sequential', 'uniform', 'hotset'],
    policies: ['lru', 'clock', 'linux', 'heat'], prefetches: ['none', 'sequential'], scale: 9, iterations: 2, reps: 1, seed: 1,
  });
  assert.is(results.length, 4 * (1 + 4 * 2), 'per workload: local plus 4 policies x 2 prefetches');
  for (const r of results) {
    if (r.policy === 'local') {
      assert.is(r.hitRatio, null);
      continue;
    }
    assert.ok(r.hitRatio !== null && r.minHitRatio !== null && r.opsPerSec > 0);
    if (r.prefetch === 'none') assert.ok(r.hitRatio! <= r.minHitRatio!, `${r.workload}/${r.policy}: ${r.hitRatio} <= MIN ${r.minHitRatio}`);
  }
  const seq = results.filter((r) => r.workload === 'sequential' && r.policy !== 'local');
  assert.ok(seq.filter((r) => r.prefetch === 'none').every((r) => r.hitRatio === 0), 'a cyclic scan 4x the cache never hits without prefetch');
  assert.ok(seq.filter((r) => r.prefetch === 'sequential').every((r) => r.hitRatio! > 0.5), 'sequential prefetch turns the scan into hits');
  assert.is(pool.census().chunks.held, 0, 'every space was closed');
  pool.close();
});

test('dmem bench paging --json: one line per result; bad flags exit 2', () => {
  const r = spawnSync(process.execPath, [CLI, 'bench', 'paging', '--space', '256KiB', '--accesses', '2000', '--scale', '8',
    '--reps', '1', '--policies', 'clock,heat', '--prefetch', 'none', '--patterns', 'hotset', '--json'], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as PagingResult);
  assert.equal(lines.map((l) => `${l.workload}/${l.policy}`), ['hotset/local', 'hotset/clock', 'hotset/heat', 'pagerank/local', 'pagerank/clock', 'pagerank/heat']);
  assert.ok(lines.every((l) => l.test === 'paging' && l.opsPerSec > 0));
  const bad = spawnSync(process.execPath, [CLI, 'bench', 'paging', '--policies', 'fifo'], { encoding: 'utf8', timeout: 60_000 });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /unknown policy "fifo"/);
});

test.run();
