/**
 * `dmem bench compare` and its C++ peer (bench/peers/alloc_peer.cpp): the
 * peer builds, runs both patterns on Boost.Interprocess and malloc with 1
 * and 2 processes and prints well-formed JSON with the counts the pattern
 * implies; the CLI prints a table and JSON with dmem and the peers; without
 * a peer dmem still runs and the skip reason is reported. Tiny parameters:
 * no performance is asserted.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPeer, COMPARE_FRAG_EPOCHS, COMPARE_WARMUP_EPOCHS, runCompare, runPeer, type Peer, type PeerFragResult, type PeerHeapResult } from '../src/bench/compare.js';
import { runMicro } from '../src/bench/micro.js';
import { DmemError } from '../src/errors.js';
import { rejects, ROOT } from './helpers.js';

const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');
const cache = mkdtempSync(join(tmpdir(), 'dmem-peer-test-'));
const built = buildPeer(cache);
const peer: Peer | null = 'skipped' in built ? null : built;
const skipReason = 'skipped' in built ? built.skipped : '';

test.after(() => rmSync(cache, { recursive: true, force: true }));

test('the peer builds into the cache folder and a second build takes the cached binary', () => {
  // Skipping is for a machine without g++; where g++ runs, a compile error is a failure.
  if (!peer && spawnSync('g++', ['--version']).status === 0) assert.unreachable(`g++ is installed but the peer did not build: ${skipReason}`);
  if (!peer) { console.log(`skip: ${skipReason}`); return; }
  assert.ok(peer.built, 'first build compiles');
  assert.ok(peer.path.startsWith(cache));
  assert.ok(peer.allocators.includes('malloc'));
  const again = buildPeer(cache);
  assert.ok(!('skipped' in again) && !again.built && again.path === peer.path);
});

test('the peer runs the frag pattern with 1 and 2 processes and prints well-formed JSON', () => {
  if (!peer) { console.log(`skip: ${skipReason}`); return; }
  for (const allocator of peer.allocators) {
    for (const procs of [1, 2]) {
      const r = runPeer<PeerFragResult>(peer, ['--allocator', allocator, '--pattern', 'frag', '--procs', String(procs), '--class', '2', '--epochs', '7', '--blocks', '20', '--churn', '5', '--seed', '3'], 60_000);
      assert.is(r.allocator, allocator);
      assert.is(r.pattern, 'frag');
      assert.is(r.procs, procs);
      assert.is(r.blockBytes, 4096 * 4);
      assert.is(r.allocs, 7 * 5 * procs);
      assert.is(r.frees, 7 * 5 * procs);
      assert.is(r.latency.samples, Math.ceil((7 * 5) / 8) * procs, 'every 8th allocation timed');
      assert.ok(r.loopMs > 0 && r.opsPerSec > 0);
      assert.ok(r.latency.p50Ns > 0 && r.latency.p50Ns <= r.latency.p99Ns && r.latency.p99Ns <= r.latency.maxNs);
      if (allocator === 'boost') assert.is(r.allFreed, true);
    }
  }
});

test('the peer runs --warmup untimed epochs of the same loop first: it echoes them, and counts and times only the timed epochs', () => {
  if (!peer) { console.log(`skip: ${skipReason}`); return; }
  for (const allocator of peer.allocators) {
    for (const procs of [1, 2]) {
      const r = runPeer<PeerFragResult>(peer, ['--allocator', allocator, '--pattern', 'frag', '--procs', String(procs), '--class', '1', '--epochs', '6', '--warmup', '11', '--blocks', '20', '--churn', '5', '--seed', '4'], 60_000);
      assert.is(r.epochs, 6);
      assert.is(r.warmupEpochs, 11);
      assert.is(r.allocs, 6 * 5 * procs, 'warm-up allocations are not counted');
      assert.is(r.frees, 6 * 5 * procs, 'nor its frees');
      assert.is(r.latency.samples, Math.ceil((6 * 5) / 8) * procs, 'nor its latencies');
      if (allocator === 'boost') assert.is(r.allFreed, true, 'the segment got everything back');
    }
    const none = runPeer<PeerFragResult>(peer, ['--allocator', allocator, '--pattern', 'frag', '--class', '0', '--epochs', '3', '--blocks', '10', '--churn', '2']);
    assert.is(none.warmupEpochs, 0, 'no warm-up unless asked');
  }
});

test('runMicro runs warmupEpochs untimed: it reports them, counts only the timed epochs, and the pool gets every block back', async () => {
  const [r] = await runMicro({ classes: [2], procs: 2, epochs: 4, warmupEpochs: 9, blocks: 12, churn: 3, seed: 5 });
  assert.is(r.warmupEpochs, 9);
  assert.is(r.warmupAllocs, 9 * 3 * 2, 'each process ran the 9 warm-up epochs');
  assert.is(r.epochs, 4);
  assert.is(r.allocs, 4 * 3 * 2, 'the warm-up allocations are not counted');
  assert.is(r.frees, 4 * 3 * 2);
  assert.is(r.latency.samples, Math.ceil((4 * 3) / 8) * 2, 'nor their latencies');
  assert.is(r.heldChunksAfter, r.heldChunksBefore);
  assert.is(r.freeErrors, 0);
  const [cold] = await runMicro({ classes: [0], procs: 1, epochs: 2, blocks: 4, churn: 2, seed: 5 });
  assert.is(cold.warmupEpochs, 0, 'no warm-up unless asked');
  assert.is(cold.warmupAllocs, 0);
});

test('compare hands the peer the same epochs and warm-up as dmem, and refuses a peer that ran others', async () => {
  if (!peer) { console.log(`skip: ${skipReason}`); return; }
  // A stand-in for the peer that ignores --warmup (as a binary built from
  // an older source would) and reports the run it was asked for otherwise.
  const fake = join(cache, 'fake-peer.mjs');
  const result = {
    allocator: 'boost', pattern: 'frag', procs: 1, cls: 0, blockBytes: 4096, warmupEpochs: 0,
    allocs: 10, frees: 10, loopMs: 1, opsPerSec: 20000, latency: { samples: 2, meanNs: 1, p50Ns: 1, p99Ns: 1, maxNs: 1 },
  };
  writeFileSync(fake, [
    `#!${process.execPath}`,
    'const a = process.argv;',
    `console.log(JSON.stringify({ ...${JSON.stringify(result)}, epochs: Number(a[a.indexOf('--epochs') + 1]) }));`,
    '',
  ].join('\n'));
  chmodSync(fake, 0o755);
  const o = { classes: [0], objects: [], procs: [1], reps: 1, epochs: 5, blocks: 10, churn: 5, live: 10, rounds: 1, heapChurn: 1, seed: 1 };
  const fakePeer: Peer = { path: fake, allocators: ['boost'], built: false };
  await rejects(runCompare({ ...o, warmupEpochs: 3, peer: fakePeer }), (e) => e instanceof DmemError && e.code === 'PEER_FAILED' && /ran 5 epochs after 0 warm-up epochs, not 5 after 3/.test(e.message));
  const ok = await runCompare({ ...o, warmupEpochs: 0, peer: fakePeer });
  assert.is(ok.cells[0].boost, 20000, 'a peer that ran what it was asked is taken');
  // The real peer receives both.
  const real = await runCompare({ ...o, warmupEpochs: 7, peer: { ...peer, allocators: peer.allocators.filter((a) => a === 'malloc') } });
  assert.ok((real.cells[0].malloc ?? 0) > 0, 'the built peer echoed 5 epochs after 7 warm-up epochs');
});

test('dmem bench compare runs issue 10\'s 2000 epochs after 200 untimed ones by default, on every side', () => {
  assert.is(COMPARE_FRAG_EPOCHS, 2000);
  assert.is(COMPARE_WARMUP_EPOCHS, 200);
  const r = spawnSync(process.execPath, [CLI, 'bench', 'compare', '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /--epochs <e>\s+frag: timed epochs per run \(default: 2000\)/);
  assert.match(r.stdout, /--warmup-epochs <e>\s+frag: untimed epochs of the same loop each process of\s+every side runs first \(default: 200\)/);
});

test('the peer runs the heap pattern and counts its pairs', () => {
  if (!peer) { console.log(`skip: ${skipReason}`); return; }
  for (const allocator of peer.allocators) {
    const r = runPeer<PeerHeapResult>(peer, ['--allocator', allocator, '--pattern', 'heap', '--procs', '2', '--size', '256', '--live', '30', '--rounds', '4', '--churn', '10'], 60_000);
    assert.is(r.pattern, 'heap');
    assert.is(r.size, 256);
    assert.is(r.pairs, 4 * 10 * 2);
    assert.ok(r.nsPerPair > 0 && r.pairsPerSec > 0);
  }
});

test('the peer rejects bad arguments with exit status 2 and a usage line', () => {
  if (!peer) { console.log(`skip: ${skipReason}`); return; }
  const r = spawnSync(peer.path, ['--allocator', 'malloc', '--pattern', 'frag', '--class', '12'], { encoding: 'utf8' });
  assert.is(r.status, 2);
  assert.match(r.stderr, /--class must be an integer from 0 to 9/);
  const bad = spawnSync(peer.path, ['--allocator', 'tcmalloc'], { encoding: 'utf8' });
  assert.is(bad.status, 2);
});

const TINY = ['--classes', '0', '--objects', '64', '--procs', '1', '--reps', '1', '--epochs', '5', '--warmup-epochs', '2', '--blocks', '20', '--churn', '5', '--live', '20', '--rounds', '5'];

test('dmem bench compare --json prints runs and cells with dmem and the peers', () => {
  const r = spawnSync(process.execPath, [CLI, 'bench', 'compare', ...TINY, '--json'], { encoding: 'utf8', timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const cells = lines.filter((l) => l.test === 'compare-cell');
  assert.is(cells.length, 2);
  const frag = cells.find((c) => c.workload === 'frag')!;
  const heap = cells.find((c) => c.workload === 'heap')!;
  assert.is(frag.unit, 'ops/s');
  assert.is(heap.unit, 'ns/pair');
  for (const c of [frag, heap]) {
    assert.ok((c.dmemCache as number) > 0, 'every cell runs dmem as configured (with the block cache)');
    if (peer) {
      assert.ok((c.malloc as number) > 0 && (c.cacheVsMalloc as number) > 0);
      if (peer.allocators.includes('boost')) assert.ok((c.boost as number) > 0 && (c.cacheVsBoost as number) > 0);
    } else {
      assert.is(c.boost, null);
    }
  }
  assert.ok((frag.dmem as number) > 0, 'the frag cell of class 0 also ran dmem without the block cache');
  assert.is(heap.dmem, null, 'the cache holds chunk blocks of classes 0..4, so heap cells do not run without it');
  if (peer?.allocators.includes('boost')) assert.ok((frag.dmemVsBoost as number) > 0);
  const runs = lines.filter((l) => l.test === 'compare' && 'side' in l);
  assert.is(runs.length, 2 * (1 + (peer ? peer.allocators.length : 0)) + 1);
  assert.is(runs.filter((x) => x.side === 'dmem').length, 1);
});

test('dmem bench compare prints one table with both sides and the ratios', () => {
  const r = spawnSync(process.execPath, [CLI, 'bench', 'compare', ...TINY], { encoding: 'utf8', timeout: 120_000 });
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stdout, /workload\s+procs\s+unit\s+dmem\s+no cache\s+Boost\s+malloc\s+dmem\/Boost\s+no cache\/Boost\s+dmem\/malloc/);
  assert.match(r.stdout, /class 0 \(4 KiB\)\s+1\s+ops\/s/);
  assert.match(r.stdout, /heap 64 B\s+1\s+ns\/pair/);
  if (peer?.allocators.includes('boost')) assert.match(r.stdout, /Boost 1\.\d+/);
});

test('without a peer, compare still runs dmem and reports why the peers were skipped', async () => {
  const res = await runCompare({
    classes: [1], objects: [128], procs: [1], reps: 1, epochs: 3, blocks: 10, churn: 4, live: 10, rounds: 3, heapChurn: 4, seed: 9,
    peer: { skipped: 'no g++ in this test' },
  });
  assert.equal(res.skipped, { boost: 'no g++ in this test', malloc: 'no g++ in this test' });
  assert.is(res.runs.length, 2);
  assert.ok(res.runs.every((r) => r.side === 'dmem' && r.value > 0));
  for (const c of res.cells) {
    assert.is(c.boost, null);
    assert.is(c.malloc, null);
    assert.is(c.dmemVsBoost, null);
    assert.ok((c.dmem as number) > 0);
  }
});

test.run();
