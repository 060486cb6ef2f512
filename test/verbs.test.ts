/**
 * The verbs transport (plugins/rdma/verbs*.ts).
 *
 * Always run (no RDMA device needed): every missing piece gives a typed
 * error with a message that says what to install or check, never a crash:
 * library absent (DMEM_LIBIBVERBS / DMEM_LIBRDMACM pointed at a name that
 * does not exist), no device (client and server, and `dmem server
 * --transport verbs` refuses to start and creates no pool file), connection
 * refused on the bootstrap port, a wrong token, a peer that is not a verbs
 * memory node; and the bootstrap listener survives malformed input. The
 * token tests run the real bootstrap listener of the verbs server
 * (BootstrapListener) with a handler that answers as VerbsServer does,
 * because VerbsServer itself refuses to start without an RDMA device.
 *
 * With an RDMA device (skipped here with the reason): a memory node on
 * DMEM_VERBS_TEST_ADDR (an IP address of an RDMA interface; Soft-RoCE
 * works), a client doing alloc/write/read/cas/faa, and fencing: a revoked
 * client's next write fails and changes no byte.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createServer, type Server, type Socket } from 'node:net';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { openPool } from '../src/open.js';
import { AuthFailedError } from '../plugins/rdma/errors.js';
import { InvalidArgumentError, TransportUnavailableError } from '../src/errors.js';
import { shmPath } from '../plugins/cxl-shm/index.js';
import { VerbsOpError, VerbsUnavailableError } from '../plugins/rdma/verbs-errors.js';
import { loadVerbs, rdmaDevices } from '../plugins/rdma/verbs.js';
import { BootstrapListener, serveVerbs } from '../plugins/rdma/verbs-server.js';
import { TICKET_BYTES, parseVerbsUri } from '../plugins/rdma/verbs-transport.js';
import { LAYOUT_VERSION } from '../src/core.js';
import { mapWholePool } from '../plugins/rdma/memory.js';
import { dmem, uniqueName, withPoolName } from './helpers.js';

/** The error `p` rejects with (fails the test when it resolves). */
async function caught(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a rejection');
}

/** Why the device tests cannot run here, or null when a device is present. */
function noDevice(): string | null {
  try {
    rdmaDevices(loadVerbs());
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

/** A port nothing listens on (bound, then closed). */
async function freePort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  s.close();
  await once(s, 'close');
  return port;
}

/** Runs `fn` with env var `name` set to `value`, restoring it afterwards. */
async function withEnv<T>(name: string, value: string, fn: () => Promise<T>): Promise<T> {
  const old = process.env[name];
  process.env[name] = value;
  try {
    return await fn();
  } finally {
    if (old === undefined) delete process.env[name]; else process.env[name] = old;
  }
}

test('parseVerbsUri: HOST:PORT forms and typed errors for others', () => {
  assert.equal(parseVerbsUri('verbs://10.0.0.5:7420'), { host: '10.0.0.5', port: 7420 });
  assert.equal(parseVerbsUri('verbs://[fe80::1]:7420/'), { host: 'fe80::1', port: 7420 });
  assert.equal(parseVerbsUri('verbs://node-a:1'), { host: 'node-a', port: 1 });
  for (const bad of ['verbs://10.0.0.5', 'verbs:10.0.0.5:1', 'verbs://10.0.0.5:0', 'verbs://10.0.0.5:70000', 'verb://a:1', 'verbs://a:1/x']) {
    assert.throws(() => parseVerbsUri(bad), (e: unknown) => e instanceof InvalidArgumentError && /verbs:\/\/HOST:PORT|port must be/.test((e as Error).message), bad);
  }
});

test('openPool(verbs://) without a token: InvalidArgumentError', async () => {
  const e = await caught(openPool('verbs://127.0.0.1:1'));
  assert.instance(e, InvalidArgumentError);
  assert.match(e.message, /token/);
});

test('library absent: VerbsUnavailableError naming rdma-core, for client and server, no crash', async () => {
  for (const [env, lib] of [['DMEM_LIBIBVERBS', 'libibverbs'], ['DMEM_LIBRDMACM', 'librdmacm']] as const) {
    const bad = `libdmem-absent-${lib}.so.1`;
    await withEnv(env, bad, async () => {
      const e = await caught(openPool('verbs://127.0.0.1:1', { token: 't' }));
      assert.instance(e, VerbsUnavailableError, `${env}: ${e.message}`);
      assert.instance(e, TransportUnavailableError);
      assert.is((e as VerbsUnavailableError).missing, 'library');
      assert.is((e as VerbsUnavailableError).code, 'TRANSPORT_UNAVAILABLE');
      assert.match(e.message, bad);
      assert.match(e.message, /rdma-core/);
      assert.match(e.message, /apt-get install libibverbs1 librdmacm1/);
      const s = await caught(serveVerbs({ ptr: 0n, bytes: 4096, layoutVersion: LAYOUT_VERSION }, { listen: '127.0.0.1:0', token: 't' }));
      assert.instance(s, VerbsUnavailableError);
      assert.is((s as VerbsUnavailableError).missing, 'library');
    });
  }
});

test('no RDMA device: ibv_get_device_list finding none is a typed error naming ibv_devices, rdma-core and the kernel modules', () => {
  const why = noDevice();
  if (why === null) { console.log('skip: no-device error: this machine has an RDMA device'); return; }
  assert.throws(() => rdmaDevices(loadVerbs()), (e: unknown) => e instanceof VerbsUnavailableError && e.missing === 'device');
  assert.match(why, /no RDMA device found/);
  assert.match(why, /ibv_devices/);
  assert.match(why, /ib_uverbs and rdma_ucm/);
  assert.match(why, /rdma_rxe/);
});

test('the verbs server refuses to start without an RDMA device (library call, then the CLI)', async () => {
  if (noDevice() === null) { console.log('skip: server no-device refusal: this machine has an RDMA device'); return; }
  const e = await caught(serveVerbs({ ptr: 0n, bytes: 4096, layoutVersion: LAYOUT_VERSION }, { listen: '127.0.0.1:0', token: 't' }));
  assert.instance(e, VerbsUnavailableError);
  assert.is((e as VerbsUnavailableError).missing, 'device');
  const dir = mkdtempSync(join(tmpdir(), 'dmem-verbs-'));
  const name = uniqueName('verbs-cli');
  try {
    const tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, 'secret\n', { mode: 0o600 });
    const r = dmem('server', '--pool', name, '--size', '16MiB', '--transport', 'verbs', '--listen', '127.0.0.1:0', '--token-file', tokenFile);
    assert.is(r.status, 1, r.stderr);
    assert.match(r.stderr, /no RDMA device found/);
    assert.match(r.stderr, /ibv_devices/);
    assert.not.match(r.stderr, /at .*\.js:\d+/, 'no stack trace');
    assert.not.ok(existsSync(shmPath(name)), 'no pool file was created');
    const u = dmem('server', '--pool', name, '--size', '16MiB', '--transport', 'verbs', '--token-file', tokenFile);
    assert.is(u.status, 2, u.stderr);
    assert.match(u.stderr, /--transport verbs needs --listen/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('connection refused on the bootstrap port: TransportUnavailableError naming the server command', async () => {
  const port = await freePort();
  const e = await caught(openPool(`verbs://127.0.0.1:${port}`, { token: 't' }));
  assert.instance(e, TransportUnavailableError);
  assert.match(e.message, /connection refused by 127\.0\.0\.1:\d+/);
  assert.match(e.message, /dmem server --transport verbs/);
});

/** A bootstrap listener that answers an authenticated hello as VerbsServer.welcome does. */
async function listener(token: string, refused: string[]): Promise<BootstrapListener> {
  return BootstrapListener.open('127.0.0.1:0', Buffer.from(token), {
    welcome: () => ({ v: 1, transport: 'verbs', cmPort: 7471, ticket: Buffer.alloc(TICKET_BYTES, 7).toString('base64'), size: 1 << 24, layoutVersion: LAYOUT_VERSION }),
    line: () => undefined,
    refused: (_remote, reason) => { refused.push(reason); },
  });
}

test('wrong token: AuthFailedError, and nothing about the pool is sent', async () => {
  const refused: string[] = [];
  const l = await listener('right', refused);
  try {
    const e = await caught(openPool(`verbs://127.0.0.1:${l.address.port}`, { token: 'wrong' }));
    assert.instance(e, AuthFailedError);
    assert.is((e as AuthFailedError).code, 'AUTH_FAILED');
    assert.match(e.message, /wrong token/);
    assert.equal(refused, ['wrong token']);
  } finally {
    l.close();
  }
});

test('right token without an RDMA device: the client gets past the bootstrap and reports the missing device', async () => {
  if (noDevice() === null) { console.log('skip: client no-device error: this machine has an RDMA device'); return; }
  const refused: string[] = [];
  const l = await listener('right', refused);
  try {
    const e = await caught(openPool(`verbs://127.0.0.1:${l.address.port}`, { token: 'right' }));
    assert.instance(e, VerbsUnavailableError);
    assert.is((e as VerbsUnavailableError).missing, 'device');
    assert.match(e.message, /ibv_devices/);
    assert.equal(refused, []);
  } finally {
    l.close();
  }
});

/** A TCP server that answers every connection's first line with `reply` (raw text). */
async function fakeNode(reply: string): Promise<Server> {
  const s = createServer((sock: Socket) => { sock.once('data', () => sock.write(reply)); sock.on('error', () => undefined); });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return s;
}

test('a peer that is not a verbs memory node: typed errors that say so', async () => {
  const cases: Array<[string, RegExp]> = [
    [`${JSON.stringify({ v: 1, provider: 'tcp;ofi_rxm', addr: 'AA==', key: '1', base: 0, size: 1, layoutVersion: LAYOUT_VERSION, maxMsgSize: 1 })}\n`, /ofi memory node.*ofi\+PROVIDER:\/\//],
    [`${JSON.stringify({ v: 1, transport: 'verbs', cmPort: 0, ticket: 'x', size: 1, layoutVersion: 1 })}\n`, /malformed bootstrap reply/],
    ['HTTP/1.1 400 Bad Request\r\n\r\n', /bad bootstrap line/],
    [`${JSON.stringify({ v: 1, transport: 'verbs', cmPort: 1, ticket: Buffer.alloc(TICKET_BYTES).toString('base64'), size: 1, layoutVersion: LAYOUT_VERSION + 1000 })}\n`, /layout version/],
  ];
  for (const [reply, want] of cases) {
    const s = await fakeNode(reply);
    try {
      const e = await caught(openPool(`verbs://127.0.0.1:${(s.address() as { port: number }).port}`, { token: 't', connectTimeoutMs: 3000 } as never));
      assert.ok(e instanceof TransportUnavailableError || (e as { code?: string }).code === 'VERSION_MISMATCH', `${e.name}: ${e.message}`);
      assert.match(e.message, want);
    } finally {
      s.close();
    }
  }
});

test('bootstrap listener: oversized and malformed lines close that connection only; the next client is served', async () => {
  const refused: string[] = [];
  const l = await listener('right', refused);
  const { port } = l.address;
  const send = async (text: string): Promise<string> => {
    const { connect } = await import('node:net');
    const c = connect({ host: '127.0.0.1', port });
    c.on('error', () => undefined);
    let got = '';
    c.on('data', (d) => { got += String(d); });
    c.write(text);
    await once(c, 'close');
    return got;
  };
  try {
    assert.is(await send(`${'x'.repeat(10_000)}`), '');
    assert.is(await send('{not json\n'), '');
    assert.is(await send('[1,2]\n'), '');
    assert.ok(refused.some((r) => /longer than/.test(r)), refused.join('; '));
    assert.ok(refused.includes('malformed JSON') && refused.includes('not a JSON object'), refused.join('; '));
    const e = await caught(openPool(`verbs://127.0.0.1:${port}`, { token: 'wrong' }));
    assert.instance(e, AuthFailedError);
  } finally {
    l.close();
  }
});

test('verbs device: one-sided alloc/write/read/cas/faa against a verbs memory node, and a revoked client is fenced', async () => {
  const why = noDevice();
  if (why !== null) { console.log(`skip: verbs device tests: ${why}`); return; }
  const addr = process.env.DMEM_VERBS_TEST_ADDR;
  if (addr === undefined) { console.log('skip: verbs device tests: set DMEM_VERBS_TEST_ADDR to an IP address of an RDMA interface (`rdma link show`, `ip addr`)'); return; }
  await withPoolName('verbs', async (name) => {
    const node = await openPool(`shm:${name}`, { size: '32MiB' });
    const mem = mapWholePool(name, node.geometry.layoutVersion);
    const server = await serveVerbs(mem, { listen: `${addr}:0`, token: 's3cret', pool: node, watchMs: 50 });
    server.fenceOnRevoke(node);
    try {
      const host = addr.includes(':') ? `[${addr}]` : addr;
      const c = await openPool(`verbs://${host}:${server.address.port}`, { token: 's3cret' });
      const g = c.alloc(4096);
      const bytes = new Uint8Array(4096).map((_, i) => i & 0xff);
      c.write(g, bytes);
      assert.equal(c.read(g, 4096), bytes);
      c.write(g, new Uint8Array(8));
      assert.is(c.cas(g, 0n, 5n), 0n);
      assert.is(c.cas(g, 0n, 6n), 5n);
      assert.is(c.faa(g, 3n), 5n);
      assert.is(node.faa(g, 0n), 8n, 'the node sees the client\'s atomics');
      c.free(g);
      const g2 = c.alloc(64);
      c.write(g2, new Uint8Array(8).fill(0x11));
      // Fencing: revoke the client from the node's side; its QP and MR are cut before revokeClient returns.
      const id = c.clientId;
      assert.ok(node.revokeClient(id, node.clientSlot(id).gen));
      assert.is(server.clients().length, 0);
      let failed: unknown = null;
      try { c.write(g2, new Uint8Array(8).fill(0x22)); } catch (e) { failed = e; }
      assert.ok(failed instanceof VerbsOpError, `the write after the cut fails: ${String(failed)}`);
      assert.throws(() => c.read(g2, 8), (e: unknown) => e instanceof VerbsOpError);
      assert.equal(node.read(g2, 8), new Uint8Array(8).fill(0x11), 'the cut client changed no byte');
      c.close();
    } finally {
      await server.close();
      mem.unmap();
      node.close();
    }
  });
});

test.run();
