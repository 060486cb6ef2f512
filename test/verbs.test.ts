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
 * On a software RDMA device (test/verbs-soft.ts: rdma_cm and the HCA
 * simulated behind verbs.ts's Verbs interface, the ops-table dispatch and
 * the struct layouts real): the real VerbsServer and client end to end,
 * the Pool API, both atomic reply byte orders, refusals (wrong token,
 * forged ticket, HCA-only atomics), and fencing through the lease monitor.
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
import { RDMA_CM_EVENT, RDMA_PS_TCP, loadVerbs, nativeBlock, rdmaDevices, writeSockaddr } from '../plugins/rdma/verbs.js';
import { BootstrapListener } from '../plugins/rdma/bootstrap.js';
import { serveVerbs, type VerbsServer, type VerbsServerEvent } from '../plugins/rdma/verbs-server.js';
import type { Pool } from '../src/pool.js';
import { LeaseMonitor } from '../src/monitor.js';
import { softRdma } from './verbs-soft.js';
import { CmChannel, type CmEvent } from '../plugins/rdma/verbs-cm.js';
import { randomBytes } from 'node:crypto';
import { TICKET_BYTES, VerbsTransport, openVerbsPool, parseVerbsUri } from '../plugins/rdma/verbs-transport.js';
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

/** Polls `cond` every 10 ms for up to 5 s. */
async function waitUntil(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting until ${what}`);
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

/** A memory node on a software RDMA device: a fresh shm pool, mapped and served by VerbsServer; all torn down after `fn`. */
async function withSoftNode(
  opts: { replyBigEndian?: boolean; onEvent?: (e: VerbsServerEvent) => void; fence?: boolean },
  fn: (x: { soft: ReturnType<typeof softRdma>; node: Pool; server: VerbsServer; url: string }) => Promise<void>,
): Promise<void> {
  const soft = softRdma();
  soft.state.replyBigEndian = opts.replyBigEndian ?? false;
  try {
    await withPoolName('verbs-soft', async (name) => {
      const node = await openPool(`shm:${name}`, { size: '16MiB', clients: 8, heartbeatMs: 0 });
      const mem = mapWholePool(name, node.geometry.layoutVersion);
      const server = await serveVerbs(mem, { listen: '127.0.0.1:0', token: 'tok', pool: node, watchMs: 50, verbs: soft.verbs, onEvent: opts.onEvent });
      if (opts.fence) server.fenceOnRevoke(node);
      try {
        await fn({ soft, node, server, url: `verbs://127.0.0.1:${server.address.port}` });
      } finally {
        await server.close();
        mem.unmap();
        node.close();
      }
    });
  } finally {
    soft.dispose();
  }
}

for (const replyBigEndian of [false, true]) {
  test(`soft RDMA device, atomic replies ${replyBigEndian ? 'big-endian' : 'in host order'}: the byte-order probe, transfers over the 1 MiB staging area, signed atomics`, async () => {
    await withSoftNode({ replyBigEndian }, async ({ soft, node, url }) => {
      const c = await openVerbsPool(url, { token: 'tok', verbs: soft.verbs, heartbeatMs: 0 });
      assert.is((c.transport as VerbsTransport).atomicReplyBigEndian, replyBigEndian);
      const g = c.alloc(3 << 20);
      const big = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
      const posted = soft.state.posted.get(0) ?? 0;
      c.write(g, big);
      assert.ok((soft.state.posted.get(0) ?? 0) - posted >= 3, 'three RDMA WRITEs of at most 1 MiB');
      assert.equal(c.read(g, big.length), big);
      assert.equal(node.read(g, 64), big.subarray(0, 64));
      c.write(g, new Uint8Array(8));
      assert.is(c.cas(g, 0n, -2n), 0n);
      assert.is(c.cas(g, 0n, 9n), -2n, 'a failed CAS returns the word found, sign and byte order intact');
      assert.is(c.faa(g, 5n), -2n);
      assert.is(node.faa(g, 0n), 3n);
      c.free(g);
      c.close();
    });
  });
}

test('soft RDMA device, end to end: dmem\'s verbs memory node and client, the lease monitor, fencing by QP error + MR deregistration', async () => {
  const events: VerbsServerEvent[] = [];
  await withSoftNode({ onEvent: (e) => events.push(e), fence: true }, async ({ soft, node, server, url }) => {
    assert.equal(server.devices, ['soft0']);
    const c = await openVerbsPool(url, { token: 'tok', verbs: soft.verbs, heartbeatMs: 0 });
    assert.is(c.transport.kind, 'verbs');
    await waitUntil(() => server.clients().length === 1, 'the client reported its id');
    assert.is(server.clients()[0].client, c.clientId);
    const g = c.alloc(8192);
    const bytes = new Uint8Array(8192).map((_, i) => (i * 13) & 0xff);
    c.write(g, bytes);
    assert.equal(node.read(g, 8192), bytes, 'the node sees the client\'s write');
    assert.equal(c.read(g, 8192), bytes);
    c.write(g, new Uint8Array(8));
    assert.is(c.cas(g, 0n, 41n), 0n);
    assert.is(c.faa(g, 1n), 41n);
    assert.is(node.cas(g, 42n, 43n), 42n, 'CPU and RDMA atomics on the same word');
    assert.is(c.faa(g, 0n), 43n);
    c.free(g);
    // The real server refuses a wrong token, and an rdma_cm connection whose ticket it never gave.
    assert.instance(await caught(openVerbsPool(url, { token: 'nope', verbs: soft.verbs })), AuthFailedError);
    assert.ok(events.some((e) => e.event === 'refused' && e.reason === 'wrong token'));
    // An rdma_cm connection with a ticket the node never gave is rejected, and nothing is registered for it.
    const regs = soft.state.calls.filter((x) => x.startsWith('reg_mr')).length;
    const ch = CmChannel.open(soft.verbs);
    const got: CmEvent[] = [];
    ch.onEvent = (e) => got.push(e);
    ch.start(10);
    const out: [bigint | null] = [null];
    assert.is(soft.verbs.createId(ch.ch, out, null, RDMA_PS_TCP), 0);
    const blk = nativeBlock(soft.verbs, 4096);
    writeSockaddr(blk, 0, '127.0.0.1', server.cmPort);
    soft.verbs.resolveAddr(out[0]!, null, blk.ptr, 1000);
    blk.view.set(randomBytes(TICKET_BYTES), 2048);
    const k = soft.verbs.koffi;
    k.encode(blk.ptr, 1024 + k.offsetof(soft.verbs.t.rdma_conn_param, 'private_data'), 'void *', blk.ptr + 2048n);
    blk.data.setUint8(1024 + k.offsetof(soft.verbs.t.rdma_conn_param, 'private_data_len'), TICKET_BYTES);
    assert.is(soft.verbs.connect(out[0]!, blk.ptr + 1024n), 0);
    await waitUntil(() => got.some((e) => e.type === RDMA_CM_EVENT.REJECTED), 'the forged connection was rejected');
    assert.ok(events.some((e) => e.event === 'refused' && e.reason === 'unknown ticket'));
    assert.is(soft.state.calls.filter((x) => x.startsWith('reg_mr')).length, regs, 'no MR for a forged ticket');
    await ch.stop();
    soft.verbs.destroyId(out[0]!);
    soft.verbs.free(blk.ptr);
    ch.close();
    // A second client: its own QP and MR (its own rkey), the same pool; closing it cuts its connection.
    const c2 = await openVerbsPool(url, { token: 'tok', verbs: soft.verbs, heartbeatMs: 0 });
    await waitUntil(() => server.clients().length === 2, 'the second client reported its id');
    const shared = c2.alloc(64);
    c2.write(shared, new Uint8Array(8));
    for (let i = 0; i < 50; i++) { c.faa(shared, 1n); c2.faa(shared, 2n); }
    assert.is(node.faa(shared, 0n), 150n);
    c2.free(shared);
    c2.close();
    await waitUntil(() => server.clients().length === 1, 'the server cut the closed client');
    const held = c.alloc(4096);
    c.write(held, new Uint8Array(16).fill(0x11));
    // A client refused by the node (HCA-only atomics) gets the node's reason as a typed error.
    soft.state.atomicCap = 1;
    const refused = await caught(openVerbsPool(url, { token: 'tok', verbs: soft.verbs, heartbeatMs: 0 }));
    soft.state.atomicCap = 2;
    assert.instance(refused, VerbsUnavailableError);
    assert.is((refused as VerbsUnavailableError).missing, 'atomics');
    assert.match(refused.message, /IBV_ATOMIC_HCA.*--hca-atomics/);
    // The client pauses past its lease: the monitor revokes it, the server cuts its QP and MR
    // before revokeClient returns, tells the fencing authority, and the monitor recovers it at once.
    soft.state.calls.length = 0;
    const monitor = new LeaseMonitor(node, { intervalMs: 60_000 });
    await new Promise((r) => setTimeout(r, node.leaseMs + 300));
    const sweep = monitor.sweep();
    assert.equal(sweep.revoked, [c.clientId]);
    assert.is(sweep.recovered.length, 1, JSON.stringify(sweep));
    assert.is(sweep.recovered[0].reason, 'transport-cut');
    assert.ok(soft.state.calls.indexOf('modify_qp 6') >= 0 && soft.state.calls.indexOf('modify_qp 6') < soft.state.calls.indexOf('dereg_mr'), soft.state.calls.join(', '));
    assert.ok(soft.state.calls.indexOf('dereg_mr') < soft.state.calls.indexOf('destroy_qp'), soft.state.calls.join(', '));
    assert.ok(events.some((e) => e.event === 'client-cut' && e.client === c.clientId && e.reason === 'revoked'), JSON.stringify(events));
    assert.is(server.clients().length, 0);
    // It resumes: its write fails and no byte of the (recovered) block changes.
    const snapshot = node.transport.mapped!.view(held, 16)!.slice(); // node 0: a gaddr is the pool offset
    const err = (() => { try { c.write(held, new Uint8Array(16).fill(0x22)); return null; } catch (e) { return e; } })();
    assert.instance(err, VerbsOpError, String(err));
    assert.match((err as Error).message, /transport retry counter exceeded|remote access error/);
    assert.equal(node.transport.mapped!.view(held, 16), snapshot, 'no byte changed');
    assert.equal(snapshot.subarray(0, 16), new Uint8Array(16).fill(0x11));
    assert.throws(() => c.alloc(64), (e: unknown) => e === err, 'broken for good');
    // close() cannot release a slot through a dead QP (it says so), but tears the connection down.
    soft.state.calls.length = 0;
    assert.throws(() => c.close(), (e: unknown) => e === err);
    assert.equal(soft.state.calls, ['destroy_qp', 'destroy_id', 'dereg_mr', 'dealloc_pd']);
  });
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
