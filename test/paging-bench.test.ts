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
import { runPagingRemoteBench } from '../src/bench/paging-remote.js';
import { runPagingBench, type PagingResult, type Pattern } from '../src/bench/paging.js';
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

test('a tiny bench run: every cell, hit ratios at most MIN without prefetch', async () => {
  const pool = Pool.attach(memoryTransport(96 * 1024 * 1024), { create: true, seed: 2, heartbeatMs: 0 });
  const results = await runPagingBench({
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

test('the tcp run: hit ratios and page counts as on shm, overlap or not; tiering moves the hot set near', async () => {
  const pool = Pool.attach(memoryTransport(64 * 1024 * 1024), { create: true, seed: 2, heartbeatMs: 0 });
  const common = { pool, spaceBytes: 1024 * 1024, cacheBytes: 64 * 1024, accesses: 6000, patterns: ['sequential', 'hotset'] as Pattern[], reps: 1, seed: 3 };
  const tcp = await runPagingRemoteBench({ ...common, policies: ['linux'], nearBytes: 128 * 1024 });
  assert.is(tcp.length, 2 * 2 * 3, 'per pattern: tcp and shm+tcp, each prefetch none + sequential overlapped + sequential serial');
  const shm = await runPagingBench({ ...common, policies: ['linux'], prefetches: ['none', 'sequential'], scale: 0, iterations: 1 });
  for (const r of tcp) {
    const same = shm.find((x) => x.workload === r.workload && x.policy === r.policy && x.prefetch === r.prefetch)!;
    assert.is(r.hitRatio, same.hitRatio, `${r.backing}/${r.workload}/${r.prefetch}/${r.overlap}: the hit ratio of the same cell on shm`);
    assert.is(r.fetched, same.fetched);
    assert.is(r.minHitRatio, same.minHitRatio);
    assert.ok(r.opsPerSec > 0);
    if (r.backing === 'tcp') assert.is(r.writtenBack, same.writtenBack);
  }
  const tiered = tcp.filter((r) => r.backing === 'shm+tcp' && r.workload === 'hotset');
  assert.ok(tiered.every((r) => r.promoted! > 0), `the hot set moved near: ${tiered.map((r) => r.promoted).join(', ')}`);
  assert.is(pool.census().chunks.held, 0, 'every space was closed, its near pages freed');
  pool.close();
});

test('dmem bench paging --json: one line per result; bad flags exit 2', () => {
  const r = spawnSync(process.execPath, [CLI, 'bench', 'paging', '--space', '256KiB', '--accesses', '2000', '--scale', '8',
    '--reps', '1', '--policies', 'clock,heat', '--prefetch', 'none', '--patterns', 'hotset', '--no-tcp', '--json'], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as PagingResult);
  assert.equal(lines.map((l) => `${l.workload}/${l.policy}`), ['hotset/local', 'hotset/clock', 'hotset/heat', 'pagerank/local', 'pagerank/clock', 'pagerank/heat']);
  assert.ok(lines.every((l) => l.test === 'paging' && l.opsPerSec > 0));
  const bad = spawnSync(process.execPath, [CLI, 'bench', 'paging', '--policies', 'fifo'], { encoding: 'utf8', timeout: 60_000 });
  assert.is(bad.status, 2);
  assert.match(bad.stderr, /unknown policy "fifo"/);
});

test.run();
