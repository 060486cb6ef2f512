/**
 * The transport registry of src/open.ts: a registered scheme opens through
 * openPool, a "family+" opener serves every "family+PROVIDER" scheme, the
 * Pool owns (and closes) what an opener returns, a creation that fails is
 * discarded, and the mapped-memory capability is found by shape, not class.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  InvalidArgumentError, NotAPoolError, Pool, TransportClosedError, memoryTransport, openPool, registerTransport, transportSchemes,
  type Transport,
} from '../src/index.js';

const MiB = 1024 * 1024;

test('a registered scheme opens through openPool, and the Pool closes the transport it was given', async () => {
  let opened = 0;
  let last: Transport | undefined;
  registerTransport('test-mem', (address, opts) => {
    opened++;
    assert.is(address, 'anything/here');
    assert.is(opts.size, 8 * MiB, 'size arrives parsed into bytes');
    last = memoryTransport(opts.size!);
    return { transport: last, created: true };
  });
  assert.ok(transportSchemes().includes('test-mem'));
  const pool = await openPool('test-mem:anything/here', { size: '8MiB', heartbeatMs: 0 });
  assert.is(opened, 1);
  assert.ok(pool.alloc(4096) > 0);
  pool.close();
  assert.throws(() => last!.read(0, new Uint8Array(1)), (e: unknown) => e instanceof TransportClosedError);
});

test('a "family+" opener serves every "family+PROVIDER" scheme; a creation that fails is discarded', async () => {
  const seen: string[] = [];
  let discarded = 0;
  registerTransport('fam+', (address, _opts, uri) => {
    seen.push(uri);
    // A medium too small to format: attach fails, openPool discards and closes it.
    return { transport: memoryTransport(4096), created: address === 'small', discard: () => { discarded++; } };
  });
  let first: unknown;
  try {
    await openPool('fam+tcp:small', { heartbeatMs: 0 });
  } catch (e) {
    first = e;
  }
  assert.ok(first instanceof InvalidArgumentError, `a 4 KiB medium cannot be formatted: ${String(first)}`);
  assert.is(discarded, 1);
  let caught: unknown;
  try {
    await openPool('fam+verbs:existing', { heartbeatMs: 0, attachTimeoutMs: 0 });
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof NotAPoolError, String(caught));
  assert.match((caught as Error).message, /fam\+verbs:existing/, 'the medium is named in the error');
  assert.is(discarded, 1, 'an existing medium is never discarded');
  assert.equal(seen, ['fam+tcp:small', 'fam+verbs:existing']);
});

test('registerTransport refuses malformed schemes and openers', () => {
  for (const bad of ['', 'Tcp', '1x', 'a:b', 'a++b', 'a b']) {
    assert.throws(() => registerTransport(bad, () => ({ transport: memoryTransport(8), created: false })), (e: unknown) => e instanceof InvalidArgumentError, bad);
  }
  assert.throws(() => registerTransport('ok', 5 as never), (e: unknown) => e instanceof InvalidArgumentError);
});

test('mapped memory is a capability: a plain object transport without it works, through the copying imports', () => {
  const inner = memoryTransport(8 * MiB);
  const plain: Transport = {
    kind: 'plain', size: inner.size,
    load64: (o) => inner.load64(o), store64: (o, v) => inner.store64(o, v), cas64: (o, e, d) => inner.cas64(o, e, d),
    faa64: (o, d) => inner.faa64(o, d), read: (o, d) => inner.read(o, d), write: (o, s) => inner.write(o, s), close: () => inner.close(),
  };
  const pool = Pool.attach(plain, { create: true, clients: 4, heartbeatMs: 0 });
  try {
    const g = pool.alloc(8192);
    pool.write(g, new Uint8Array([7, 7, 7]));
    assert.equal([...pool.read(g, 3)], [7, 7, 7]);
    const r = pool.createRegion('plain', 100);
    assert.throws(() => r.map(), (e: unknown) => (e as Error).name === 'TransportUnavailableError', 'no mapping to hand out');
    assert.ok(inner.mapped.view(0, 8) !== null, 'the windowed transport has the capability');
  } finally {
    pool.close();
  }
});

test.run();
