/**
 * The hand-assembled probe module of bench/budget.ts (bench/probe-module.ts):
 * it validates, and each loop makes exactly the calls and atomics it claims,
 * with the arguments the budget's unit costs assume. No timing is asserted.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { probeInstance, probeModuleBytes } from '../bench/probe-module.js';

test('the probe module is valid Wasm and its empty export returns its argument', () => {
  assert.ok(WebAssembly.validate(probeModuleBytes()));
  const { exports } = probeInstance({ nop: () => {}, load64: () => 0n, store64: () => {}, cas64: (_o, e) => e, faa64: () => 0n });
  assert.is(exports.id(1234), 1234);
});

test('each import loop calls its import n times with (offset 0, i[, i + 1]) as BigInt', () => {
  const calls: string[] = [];
  const { exports } = probeInstance({
    nop: (o) => { calls.push(`nop ${o}`); },
    load64: (o) => { calls.push(`load ${o}`); return 7n; },
    store64: (o, v) => { calls.push(`store ${o} ${typeof v} ${v}`); },
    cas64: (o, e, d) => { calls.push(`cas ${o} ${typeof e} ${e} ${d}`); return e; },
    faa64: (o, d) => { calls.push(`faa ${o} ${d}`); return 0n; },
  });
  exports.loopNop(2);
  exports.loopLoad(1);
  exports.loopStore(2);
  exports.loopCas(3);
  exports.loopFaa(1);
  assert.equal(calls, [
    'nop 0', 'nop 0', 'load 0', 'store 0 bigint 0', 'store 0 bigint 1',
    'cas 0 bigint 0 1', 'cas 0 bigint 1 2', 'cas 0 bigint 2 3', 'faa 0 0',
  ]);
});

test('the native atomics loops act on the shared memory: n successful CAS from 0 leave n', () => {
  const { exports, memory } = probeInstance({ nop: () => {}, load64: () => 0n, store64: () => {}, cas64: (_o, e) => e, faa64: () => 0n });
  assert.ok(memory.buffer instanceof SharedArrayBuffer);
  exports.loopWasmCas(10);
  assert.is(new BigInt64Array(memory.buffer)[0], 10n);
  exports.loopWasmLoad(5);
  assert.is(new BigInt64Array(memory.buffer)[0], 10n);
});

test.run();
