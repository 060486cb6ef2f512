/**
 * Invariant 3 across processes (docs/design.md): 4 processes x 20k
 * alloc/free on one shm pool, each stamping every chunk it holds and checking
 * the stamps before it frees: zero mismatches, and after all exit the pool
 * holds nothing and has no live clients.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openPool } from '../src/index.js';
import { withPoolName } from './helpers.js';

interface Report { clientId: number; allocs: number; frees: number; mismatches: number; retries: number }

const WORKER = fileURLToPath(new URL('./fixtures/stamp-worker.js', import.meta.url));

async function runWorkers(name: string, procs: number, ops: number, maxLive: number): Promise<Report[]> {
  const children = Array.from({ length: procs }, (_, i) => fork(WORKER, [name, String(1000 + i), String(ops), String(maxLive)], { stdio: 'inherit' }));
  const ready = children.map((c) => new Promise<void>((resolve, reject) => {
    c.once('message', () => resolve());
    c.once('exit', (code) => reject(new Error(`worker exited with ${code} before it was ready`)));
  }));
  await Promise.all(ready);
  const done = children.map((c) => new Promise<Report>((resolve, reject) => {
    c.once('message', (m) => resolve(m as Report));
    c.once('exit', (code) => { if (code !== 0) reject(new Error(`worker exited with ${code}`)); });
  }));
  for (const c of children) c.send('go');
  return Promise.all(done);
}

test('4 processes x 20k alloc/free on one pool: no chunk is ever held twice, nothing is left', async () => {
  await withPoolName('mp', async (name) => {
    const admin = await openPool(`shm:${name}`, { size: '512MiB' });
    const reports = await runWorkers(name, 4, 20_000, 32);
    const ids = new Set(reports.map((r) => r.clientId));
    assert.is(ids.size, 4, 'four distinct clients');
    for (const r of reports) {
      assert.is(r.mismatches, 0, `client ${r.clientId}: stamps overwritten`);
      assert.is(r.allocs, r.frees, `client ${r.clientId}: freed all it allocated`);
      assert.ok(r.allocs > 5_000, `client ${r.clientId} made ${r.allocs} allocations`);
    }
    const census = admin.census();
    assert.is(census.chunks.held, 0);
    assert.is(census.chunks.orphan, 0);
    assert.is(census.chunks.free, census.chunks.total);
    assert.is(census.liveClients, 1, 'only the admin client is left');
    admin.close();
  });
});

test.run();
