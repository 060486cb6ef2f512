/**
 * The chaos test of issue 9: 4 clients churn stamped blocks and heap
 * objects under a running lease monitor with a 500 ms lease, while 200
 * random events pause them (SIGSTOP, most past the lease) or kill them
 * (kill -9). Nothing may be held twice, no stamp lost, nothing leaked once
 * everyone is fenced, fsck clean. `dmem bench chaos --events N` runs the
 * same at any length.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runChaos } from '../src/bench/chaos.js';

test('chaos: 200 pauses and kills of 4 churning clients; no double hold, no lost stamp, no leak, fsck clean', async () => {
  const r = await runChaos({ events: 200, clients: 4, leaseMs: 500 });
  const what = JSON.stringify({ ...r, errors: r.errors.slice(0, 5) });
  assert.is(r.events, 200);
  assert.ok(r.kills > 20 && r.pausesPastLease > 20, `both kinds of events happened: ${what}`);
  assert.ok(r.recoveries >= r.kills, `every killed client was recovered: ${what}`);
  assert.is(r.doubleHolds, 0, what);
  assert.equal(r.errors, [], what);
  assert.is(r.leakedChunks, 0, what);
  assert.is(r.orphanChunks, 0, what);
  assert.ok(r.fsckClean, what);
  assert.ok(r.survivorChecks > 100, `the untouched survivor checked its stamps throughout: ${what}`);
});

test.run();
