/**
 * The ofi transport (plugins/rdma) against a real memory node: `dmem server
 * --transport ofi` in a child process on 127.0.0.1 (ephemeral ports), with
 * one-sided clients in this process and in child processes. Skips with a
 * printed reason when libfabric or the provider is missing.
 *
 * tcp;ofi_rxm: the core's operations one-sided (every size class, > 2 MiB,
 * exhaustion, double free, invalid address, read/write/cas/faa), wrong
 * token, the multi-process stamping test with 2 clients, 2 x 5k CAS
 * increments on one word, a client killed with SIGKILL recovered after its
 * lease, and a paused client that resumes after revocation and cannot write
 * the pool (its key was cut). The asynchronous path (K operations in
 * flight on one transport): 16 in-flight CAS increments plus a second
 * client process total exactly, reads in flight return the right bytes, a
 * cut client's in-flight operations all fail and change nothing, and a
 * short `dmem bench remote --url ofi+...` run prints valid JSON rows.
 * The client rules both memory nodes share (node-clients.ts), with a
 * stand-in cut and no fabric. sockets: the basic operations. Then the
 * stamping test across two network namespaces joined by veth (made and
 * removed here; skipped without root).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { Pool } from '../src/index.js';
import { DoubleFreeError, InvalidAddressError, InvalidArgumentError, PoolExhaustedError, TransportUnavailableError, offsetOf } from '../src/index.js';
import { openOfiPool, parseOfiUri, type OfiTransport } from '../plugins/rdma/transport.js';
import { AuthFailedError, TransportFailedError } from '../plugins/rdma/errors.js';
import { getInfo, ofi, providerString } from '../plugins/rdma/ofi.js';
import { ROOT, is, jsonLines, rejects, uniqueName } from './helpers.js';
import { removeShm } from '../plugins/cxl-shm/index.js';
import { openPool } from '../src/index.js';
import { fenceOf } from '../src/fencing.js';
import { MemoryNode, type ClientConn, type NodeClientEvent, type NodeClientsOptions } from '../plugins/rdma/node-clients.js';
import { once } from 'node:events';

const CLI = join(ROOT, 'dist/src/cli/main.js');
const WORKER = fileURLToPath(new URL('./fixtures/ofi-worker.js', import.meta.url));
const STAMP = fileURLToPath(new URL('./fixtures/stamp-worker.js', import.meta.url));
const TOKEN = `tok-${Math.random().toString(36).slice(2)}`;
// Long enough that a loaded 2-core CI machine does not starve a live client past its lease.
const LEASE_MS = 2500;

/** Why the provider cannot run here, or null. */
function unavailable(provider: string): string | null {
  try {
    const o = ofi();
    const { info } = getInfo(o, providerString(provider), '127.0.0.1', true, true);
    o.freeinfo(info);
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

interface Node { url: string; proc: ChildProcess; name: string; log: string[]; stop(): Promise<void> }

/** Starts `dmem server --transport ofi` on a fresh pool and waits for its `started` line. */
async function startNode(provider: string, dir: string, leaseMs = LEASE_MS, netns: string | null = null, host = '127.0.0.1'): Promise<Node> {
  const name = uniqueName('ofi');
  const tokenFile = join(dir, `token-${name}`);
  writeFileSync(tokenFile, `${TOKEN}\n`);
  const wrap = netns === null ? [] : ['netns', 'exec', netns, process.execPath];
  const proc = spawn(netns === null ? process.execPath : 'ip', [...wrap, CLI, 'server', '--pool', name, '--size', '64MiB', '--transport', 'ofi', '--provider', provider,
    '--listen', `${host}:0`, '--token-file', tokenFile, '--lease-ms', String(leaseMs), '--json', '--remove-on-exit'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => log.push(l));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start: ${log.join('\n')}`)), 15_000);
    createInterface({ input: proc.stdout! }).once('line', (l) => { clearTimeout(timer); resolve((JSON.parse(l) as { url: string }).url); });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`server exited with ${code}: ${log.join('\n')}`)); });
  });
  return {
    url, proc, name, log,
    stop: async () => {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      removeShm(name);
    },
  };
}

function waitFor<T>(what: string, ms: number, probe: () => T | null | undefined | false): Promise<T> {
  const deadline = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      let v: T | null | undefined | false;
      try { v = probe(); } catch (e) { reject(e as Error); return; }
      if (v !== null && v !== undefined && v !== false) { resolve(v); return; }
      if (Date.now() > deadline) { reject(new Error(`timed out waiting for ${what}`)); return; }
      setTimeout(tick, 50);
    };
    tick();
  });
}

/** Every child started here, killed in test.after whatever happened (an IPC channel would keep this process alive). */
const children = new Set<ChildProcess>();
function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

function worker(args: string[]): ChildProcess {
  return track(fork(WORKER, args, { stdio: 'inherit', env: { ...process.env, DMEM_OFI_TOKEN: TOKEN } }));
}

/** Lets due timers (the Pool's lease heartbeat) run between synchronous steps. */
const yieldToTimers = (): Promise<void> => new Promise((r) => setImmediate(r));

function message<T>(c: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    c.once('message', (m) => resolve(m as T));
    c.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
  });
}

const dir = mkdtempSync(join(tmpdir(), 'dmem-rdma-'));
const tcpSkip = unavailable('tcp');
let node: Node | null = null;
let admin: Pool | null = null;

test.before(async () => {
  if (tcpSkip !== null) { console.log(`skip: ofi over tcp;ofi_rxm: ${tcpSkip}`); return; }
  node = await startNode('tcp', dir);
  admin = await openOfiPool(node.url, { token: TOKEN });
});

test.after(async () => {
  for (const c of children) c.kill('SIGKILL');
  try { admin?.close(); } catch { /* its transport may have been cut by a failed test */ }
  await node?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('tcp: every size class, > 2 MiB, read/write/cas/faa one-sided', () => {
  if (admin === null) { console.log('skip: no ofi node'); return; }
  const p = admin;
  for (let c = 0; c <= 9; c++) {
    const g = p.allocClass(c);
    const bytes = 4096 * 2 ** c;
    const pattern = new Uint8Array(bytes).map((_, i) => (i * 7 + c) & 255);
    p.write(g, pattern);
    assert.equal(p.read(g, bytes), pattern, `class ${c} reads back`);
    p.free(g);
  }
  const big = p.alloc(5 * 2 ** 20 + 123);
  const data = new Uint8Array(5 * 2 ** 20 + 123).map((_, i) => (i >> 3) & 255);
  p.write(big, data);
  assert.equal(p.read(big, data.length), data, '5 MiB block reads back');
  p.free(big);
  const w = p.alloc(64);
  p.write(w, new Uint8Array(8));
  assert.is(p.cas(w, 0n, 41n), 0n);
  assert.is(p.cas(w, 0n, 99n), 41n, 'failed CAS returns the word found');
  assert.is(p.faa(w, 1n), 41n);
  assert.is(p.faa(w, -50n), 42n);
  assert.is(p.cas(w, -8n, 0n), -8n, 'signed 64-bit values');
  p.free(w);
  const census = p.census();
  assert.is(census.chunks.held, 0);
});

test('tcp: exhaustion, double free and invalid addresses are typed errors', () => {
  if (admin === null) { console.log('skip: no ofi node'); return; }
  const p = admin;
  const held: number[] = [];
  assert.throws(() => { for (;;) held.push(p.allocClass(9)); }, is(PoolExhaustedError));
  assert.ok(held.length >= 20, `${held.length} sections allocated before exhaustion`);
  for (const g of held) p.free(g);
  const g = p.alloc(4096);
  p.free(g);
  assert.throws(() => p.free(g), is(DoubleFreeError));
  assert.throws(() => p.free(g + 8), (e: unknown) => e instanceof InvalidAddressError || e instanceof DoubleFreeError);
  assert.throws(() => p.read(7, 8), is(InvalidAddressError));
  assert.throws(() => p.write(p.geometry.poolBytes * 4, new Uint8Array(8)), is(InvalidAddressError));
});

test('tcp: wrong token, closed port and bad URIs are refused with typed errors', async () => {
  if (node === null) { console.log('skip: no ofi node'); return; }
  await rejects(openOfiPool(node.url, { token: 'not-the-token' }), is(AuthFailedError));
  await rejects(openOfiPool('ofi+tcp://127.0.0.1:1', { token: TOKEN }), is(TransportUnavailableError));
  await rejects(openOfiPool('ofi+tcp://nohostport', { token: TOKEN }), is(InvalidArgumentError));
  await rejects(openOfiPool(node.url.replace('ofi+tcp', 'ofi+sockets'), { token: TOKEN }), is(TransportUnavailableError));
  assert.ok(node.log.some((l) => l.includes('wrong token')), 'the server logged the refusal');
  const { host, port } = parseOfiUri(node.url);
  for (const junk of ['not json\n', 'x'.repeat(5000), '[1,2]\n', '{"v":1,"token":5}\n', `{"v":1,"token":"${TOKEN}"}\n{"client":"x"}\n`]) {
    const replies: string[] = [];
    await new Promise<void>((resolve) => {
      const sock = connect({ host, port }, () => sock.write(junk));
      sock.setEncoding('utf8');
      sock.on('data', (d: string) => replies.push(d));
      sock.on('error', () => undefined);
      sock.on('close', () => resolve());
    });
    assert.not.ok(replies.join('').includes('"addr"') && !junk.includes(TOKEN), `nothing revealed to ${JSON.stringify(junk.slice(0, 20))}`);
  }
  assert.is(node.proc.exitCode, null, 'the server survived malformed bootstrap lines');
  assert.ok(admin !== null && admin.census().chunks.total > 0, 'and still serves');
});

test('tcp: 2 one-sided client processes stamp every chunk they hold: no chunk held twice', async () => {
  if (node === null || admin === null) { console.log('skip: no ofi node'); return; }
  const url = node.url;
  const kids = [0, 1].map((i) => track(fork(STAMP, [url, String(2000 + i), '1500', '16'], { stdio: 'inherit', env: { ...process.env, DMEM_OFI_TOKEN: TOKEN } })));
  await Promise.all(kids.map((k) => message(k)));
  const done = kids.map((k) => message<{ clientId: number; allocs: number; frees: number; mismatches: number }>(k));
  for (const k of kids) k.send('go');
  const reports = await Promise.all(done);
  assert.is(new Set(reports.map((r) => r.clientId)).size, 2);
  for (const r of reports) {
    assert.is(r.mismatches, 0, `client ${r.clientId}: stamps overwritten`);
    assert.is(r.allocs, r.frees);
    assert.ok(r.allocs > 300, `client ${r.clientId} made ${r.allocs} allocations`);
  }
  const c = admin.census();
  assert.is(c.chunks.held, 0);
  assert.is(c.chunks.orphan, 0);
});

test('tcp: 2 client processes x 5000 CAS increments on one word total exactly 10000', async () => {
  if (node === null || admin === null) { console.log('skip: no ofi node'); return; }
  const N = 5000;
  const g = admin.alloc(8);
  admin.write(g, new Uint8Array(8));
  const kids = [0, 1].map(() => worker(['cas', node!.url, String(g), String(N)]));
  await Promise.all(kids.map((k) => message(k)));
  const done = kids.map((k) => message<{ done: number; retries: number }>(k));
  for (const k of kids) k.send('go');
  const r = await Promise.all(done);
  assert.is(admin.cas(g, 0n, 0n), BigInt(2 * N));
  console.log(`  2 x ${N} remote CAS increments: ${r[0].retries + r[1].retries} retries`);
  admin.free(g);
});

test('tcp async: 16 CAS increments in flight from one client plus a second client process total exactly', async () => {
  if (node === null || admin === null) { console.log('skip: no ofi node'); return; }
  const ASYNC = 3000;
  const SYNC = 2000;
  const t = admin.transport as OfiTransport;
  assert.is(t.inflightLimit, 16);
  const g = admin.alloc(8);
  admin.write(g, new Uint8Array(8));
  const off = offsetOf(g);
  const kid = worker(['cas', node.url, String(g), String(SYNC)]);
  await message(kid);
  const kidDone = message<{ done: number; retries: number }>(kid);
  kid.send('go');
  let remaining = ASYNC;
  let retries = 0;
  let maxInflight = 0;
  const lane = async (): Promise<void> => {
    let v = await t.load64Async(off);
    while (remaining > 0) {
      const p = t.cas64Async(off, v, v + 1n);
      maxInflight = Math.max(maxInflight, t.inflight);
      const found = await p;
      if (found === v) { remaining--; v++; } else { v = found; retries++; }
    }
  };
  await Promise.all(Array.from({ length: 16 }, lane));
  const other = await kidDone;
  assert.is(maxInflight, 16, 'sixteen operations were in flight at once');
  assert.is(admin.cas(g, 0n, 0n), BigInt(ASYNC + SYNC));
  assert.is(t.inflight, 0);
  console.log(`  16 in flight x ${ASYNC} + 1 process x ${SYNC} CAS increments: ${retries} + ${other.retries} retries`);
  admin.free(g);
});

test('tcp async: reads and writes in flight (more than the depth, some over 64 KiB) move the right bytes', async () => {
  if (admin === null) { console.log('skip: no ofi node'); return; }
  const t = admin.transport as OfiTransport;
  const size = 1 << 20;
  const g = admin.alloc(size);
  const off = offsetOf(g);
  const pattern = new Uint8Array(size).map((_, i) => (i * 31 + (i >> 11)) & 255);
  admin.write(g, pattern);
  const shapes = Array.from({ length: 40 }, (_, i) => ({ at: (i * 24_593) % (size - 300_000), len: i === 7 ? 200_000 + 13 : i % 5 === 0 ? 65_536 + i : 8 + i * 97 }));
  const reads = shapes.map((x) => t.readAsync(off + x.at, new Uint8Array(x.len)));
  const word = t.load64Async(off + 4096);
  assert.is(t.inflight, 16, 'the first sixteen pieces are posted at once, the rest queued');
  const got = await Promise.all(reads);
  shapes.forEach((x, i) => assert.equal(got[i], pattern.subarray(x.at, x.at + x.len), `read ${i}: ${x.len} B at ${x.at}`));
  assert.is(await word, new DataView(pattern.buffer).getBigInt64(4096, true));
  const writes = Array.from({ length: 24 }, (_, i) => {
    const src = new Uint8Array(i === 3 ? 150_000 : 4096).fill(i + 1);
    const p = t.writeAsync(off + i * 160_000 % (size - 150_000), src);
    src.fill(0xEE); // copied when called: changing it now changes nothing
    return p;
  });
  await Promise.all(writes);
  await t.store64Async(off + size - 8, -5n);
  assert.is(await t.faa64Async(off + size - 8, 2n), -5n);
  const back = admin.read(g, size);
  const want = pattern.slice();
  for (let i = 0; i < 24; i++) want.fill(i + 1, i * 160_000 % (size - 150_000), i * 160_000 % (size - 150_000) + (i === 3 ? 150_000 : 4096));
  new DataView(want.buffer).setBigInt64(size - 8, -3n, true);
  assert.equal(back, want, 'every async write landed where it was aimed, in the order awaited');
  await rejects(t.readAsync(t.size - 4, new Uint8Array(8)), is(InvalidArgumentError));
  await rejects(openOfiPool(node!.url, { token: TOKEN, inflight: 65 }), is(InvalidArgumentError));
  admin.free(g);
});

test('tcp async: a cut client\'s operations in flight all fail with TransportFailedError and change nothing', async () => {
  if (node === null || admin === null) { console.log('skip: no ofi node'); return; }
  // No idle heartbeat: the client's lease runs out, the node revokes it and closes its key.
  const p = await openOfiPool(node.url, { token: TOKEN, heartbeatMs: 0, opTimeoutMs: 1500 });
  const t = p.transport as OfiTransport;
  const clientId = p.clientId;
  const g = p.alloc(4096);
  const off = offsetOf(g);
  p.write(g, new Uint8Array(4096).fill(3));
  try {
    await waitFor('the key cut', 8 * LEASE_MS, () => node!.log.some((l) => l.includes('client-cut') && l.includes(`"client":${clientId}`)));
    await waitFor('its recovery', 8 * LEASE_MS, () => admin!.clientSlot(clientId).state === 'free');
    const before = new Uint8Array(4096);
    admin.transport.read(off, before);
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 8; i++) ops.push(t.writeAsync(off + i * 512, new Uint8Array(512).fill(0xEE)));
    for (let i = 0; i < 4; i++) ops.push(t.cas64Async(off + 8 * i, new DataView(before.buffer).getBigInt64(8 * i, true), 77n));
    for (let i = 0; i < 4; i++) ops.push(t.faa64Async(off + 64 + 8 * i, 1n));
    ops.push(t.readAsync(off, new Uint8Array(64)));
    assert.is(t.inflight, 16, 'sixteen posted, one queued');
    const results = await Promise.allSettled(ops);
    for (const [i, r] of results.entries()) {
      assert.is(r.status, 'rejected', `op ${i} failed`);
      assert.ok((r as PromiseRejectedResult).reason instanceof TransportFailedError, `op ${i}: ${String((r as PromiseRejectedResult).reason)}`);
    }
    assert.is(t.inflight, 0);
    assert.throws(() => t.load64(off), is(TransportFailedError), 'the transport stays broken');
    const after = new Uint8Array(4096);
    admin.transport.read(off, after);
    assert.equal(after, before, 'nothing it posted after the cut reached the pool');
  } finally {
    try { p.close(); } catch { /* its transport is broken */ }
  }
});

/** Runs `dmem ARGS` without blocking this process's event loop (the admin pool's heartbeat keeps running). */
function dmemAsync(args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = track(spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    c.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    c.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.once('exit', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}

test('bench remote --url ofi+tcp://127.0.0.1:0: a short run prints valid JSON rows for ofi, tcp and the C client', async () => {
  if (tcpSkip !== null) { console.log(`skip: bench remote ofi: ${tcpSkip}`); return; }
  const r = await dmemAsync(['bench', 'remote', '--url', 'ofi+tcp://127.0.0.1:0', '--op', 'cas', '--inflight', '1,4', '--duration-ms', '150', '--reps', '1', '--json'], 120_000);
  assert.is(r.status, 0, r.stderr);
  const lines = jsonLines(r.stdout);
  const rows = lines.filter((l) => typeof l.system === 'string');
  const skipped = lines.filter((l) => typeof l.skipped === 'string').map((l) => l.skipped as string);
  const want = [['ofi-js', 1], ['ofi-js', 4], ['ofi-pool', 1], ['tcp', 1], ['tcp', 4], ['ofi-c', 1], ['ofi-c', 4]] as const;
  for (const [system, k] of want) {
    const row = rows.find((x) => x.system === system && x.inflight === k);
    if (system === 'ofi-c' && row === undefined) {
      assert.ok(skipped.some((s) => s.startsWith('ofi-c:')), 'a missing C client says why');
      console.log(`  ${skipped.join('; ')}`);
      continue;
    }
    assert.ok(row !== undefined, `a ${system} row at ${k} in flight`);
    assert.is(row.op, 'cas');
    assert.is(row.bytes, 8);
    for (const f of ['ops', 'opsPerSec', 'p50Us', 'p99Us']) assert.ok(Number.isFinite(row[f]) && (row[f] as number) > 0, `${system} x${k}: ${f} = ${String(row[f])}`);
    assert.ok((row.p50Us as number) <= (row.p99Us as number));
    if (system === 'ofi-js' || system === 'ofi-pool') assert.ok(row.vsC === null || (row.vsC as number) > 0);
  }
  assert.ok(lines.some((l) => Array.isArray(l.loadBefore)), 'the load average is reported');
  const alloc = await dmemAsync(['bench', 'remote', '--url', 'ofi+tcp://127.0.0.1:0', '--op', 'alloc', '--inflight', '2', '--duration-ms', '150', '--reps', '1', '--json'], 120_000);
  assert.is(alloc.status, 0, alloc.stderr);
  const arows = jsonLines(alloc.stdout).filter((l) => typeof l.system === 'string');
  const procs = arows.find((x) => x.system === 'ofi-pool');
  assert.ok(procs !== undefined && procs.op === 'alloc' && procs.conns === 2 && (procs.opsPerSec as number) > 0, JSON.stringify(arows));
  assert.ok(arows.some((x) => x.system === 'tcp' && x.op === 'alloc'));
  const bad = await dmemAsync(['bench', 'remote', '--url', 'ofi+tcp://127.0.0.1:0', '--op', 'heap'], 30_000);
  assert.not.ok(bad.status === 0);
  assert.match(bad.stderr, /the ofi form measures read/);
});

test('tcp: a client killed with SIGKILL mid-allocation is recovered after its lease', async () => {
  if (node === null || admin === null) { console.log('skip: no ofi node'); return; }
  const before = admin.census().chunks.held;
  const k = worker(['churn', node.url]);
  const { clientId } = await message<{ clientId: number }>(k);
  assert.ok(admin.census().chunks.held > before, 'the churning client holds memory');
  const gone = new Promise((r) => k.once('exit', r));
  k.kill('SIGKILL');
  await gone;
  await waitFor('recovery of the killed client', 8 * LEASE_MS, () => admin!.clientSlot(clientId).state === 'free');
  await waitFor('its memory back', 4 * LEASE_MS, () => admin!.census().chunks.held === before);
  // What it left half done and nobody owns (orphans) is freed by the monitor's grace sweep, a full lease or two later.
  await waitFor('no orphans', 8 * LEASE_MS, () => admin!.census().chunks.orphan === 0);
  assert.ok(node.log.some((l) => l.includes('client recovered')), 'the monitor logged the recovery');
});

test('tcp: a paused client resumed after revocation cannot write the pool (its key was cut)', async () => {
  if (node === null || admin === null) { console.log('skip: no ofi node'); return; }
  const k = worker(['hold', node.url]);
  const { clientId, gaddr } = await message<{ clientId: number; gaddr: number }>(k);
  k.kill('SIGSTOP');
  try {
    await waitFor('the key cut', 6 * LEASE_MS, () => node!.log.some((l) => l.includes('client-cut') && l.includes(`"client":${clientId}`)));
    // Its key is dead, so the server's monitor may recover it at once, while it is still paused (fencing: transport-cut).
    await waitFor('recovery while it is paused', 8 * LEASE_MS, () => admin!.clientSlot(clientId).state === 'free');
  } finally {
    k.kill('SIGCONT');
  }
  const before = new Uint8Array(64);
  admin.transport.read(gaddr, before);
  const reply = message<{ code: string }>(k);
  k.send('write');
  const { code } = await reply;
  assert.is(code, 'TRANSPORT_FAILED', 'the resumed client\'s write fails');
  const after = new Uint8Array(64);
  admin.transport.read(gaddr, after);
  assert.equal(after, before, 'nothing it wrote after the cut landed in the memory it no longer holds');
  const gone = new Promise((r) => k.once('exit', r));
  k.kill('SIGKILL');
  await gone;
});

test('sockets provider: the basic operations one-sided', async () => {
  const why = unavailable('sockets');
  if (why !== null) { console.log(`skip: ofi over sockets: ${why}`); return; }
  // The tcp node's admin client would miss its lease while this process
  // waits on the sockets provider (10-60 ms an operation here): close it.
  admin?.close();
  admin = null;
  const n = await startNode('sockets', dir, 30_000);
  try {
    assert.ok(n.url.startsWith('ofi+sockets://'));
    const p = await openOfiPool(n.url, { token: TOKEN });
    try {
      const gs = [0, 3, 9].map((c) => p.allocClass(c));
      await yieldToTimers();
      const big = new Uint8Array(2 ** 20 + 4096).map((_, i) => i & 255);
      const g = p.alloc(big.length);
      p.write(g, big);
      await yieldToTimers();
      assert.equal(p.read(g, big.length), big, '1 MiB + 4 KiB (two pieces) over sockets reads back');
      p.free(g);
      await yieldToTimers();
      for (const g of gs) {
        p.write(g, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
        assert.equal(p.read(g, 8), new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
      }
      const w = gs[0];
      p.write(w, new Uint8Array(8));
      assert.is(p.cas(w, 0n, 5n), 0n);
      assert.is(p.faa(w, 2n), 5n);
      assert.is(p.cas(w, 7n, 1n), 7n);
      for (const g of gs) p.free(g);
      assert.throws(() => p.free(gs[0]), is(DoubleFreeError));
      assert.is(p.census().chunks.held, 0);
      await rejects(openOfiPool(n.url, { token: 'nope' }), is(AuthFailedError));
    } finally {
      p.close();
    }
  } finally {
    await n.stop();
  }
});

test('cli: --transport ofi without --listen is bad usage; an unknown provider names fi_info', () => {
  const tokenFile = join(dir, 'cli-token');
  writeFileSync(tokenFile, TOKEN);
  const name = uniqueName('ofi-cli');
  try {
    const usage = spawnSync(process.execPath, [CLI, 'server', '--pool', name, '--size', '8MiB', '--transport', 'ofi', '--token-file', tokenFile], { encoding: 'utf8' });
    assert.is(usage.status, 2, usage.stderr);
    assert.match(usage.stderr, /--listen/);
    if (tcpSkip !== null) { console.log(`skip: unknown-provider check: ${tcpSkip}`); return; }
    const bad = spawnSync(process.execPath, [CLI, 'server', '--pool', name, '--size', '8MiB', '--transport', 'ofi', '--provider', 'nosuchprov',
      '--listen', '127.0.0.1:0', '--token-file', tokenFile], { encoding: 'utf8' });
    assert.is(bad.status, 1, bad.stderr);
    assert.match(bad.stderr, /fi_info -p 'nosuchprov'/);
    assert.not.ok(existsSync(`/dev/shm/dmem-${name}`), 'the pool it created for nothing is removed');
  } finally {
    removeShm(name);
  }
});

/** A memory node whose cut is a stand-in (records the order; `failNext` makes one cut fail): node-clients.ts's rules alone. */
class StandInNode extends MemoryNode<ClientConn> {
  readonly severed: number[] = [];
  failNext = false;
  constructor(opts: NodeClientsOptions) { super('stand-in', opts); }
  async open(): Promise<void> {
    await this.openBootstrap('127.0.0.1:0', Buffer.from(TOKEN), (sock, remote) => { this.addClient(sock, remote, {}); return { v: 1 }; });
    this.startWatch();
  }
  protected sever(c: ClientConn): string {
    this.severed.push(c.id);
    c.sock.destroy();
    const failed = this.failNext;
    this.failNext = false;
    return failed ? ' (stand-in cut failed)' : '';
  }
  async close(): Promise<void> { this.closed = true; this.stopClients(); }
}

test('node-clients: the four cut rules, markTransportCut only after a successful cut (stand-in node, no fabric)', async () => {
  const name = uniqueName('node-clients');
  const node = await openPool(`shm:${name}`, { size: '8MiB', clients: 8, heartbeatMs: 0 });
  const a = await openPool(`shm:${name}`, { heartbeatMs: 0 });
  const b = await openPool(`shm:${name}`, { heartbeatMs: 0 });
  const events: NodeClientEvent[] = [];
  const n = new StandInNode({ pool: node, watchMs: 60_000, onEvent: (e) => events.push(e) });
  const cuts = (): string[] => events.filter((e) => e.event === 'client-cut').map((e) => (e as { reason: string }).reason);
  const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 50));
  try {
    await n.open();
    n.fenceOnRevoke(node);
    const { port } = n.address;
    /** An authenticated bootstrap connection that reports `client` (or nothing). */
    const join = async (client: Pool | null): Promise<ReturnType<typeof connect>> => {
      const s = connect({ host: '127.0.0.1', port });
      s.on('error', () => undefined);
      await once(s, 'connect');
      s.write(`${JSON.stringify({ v: 1, token: TOKEN })}\n`);
      await once(s, 'data');
      if (client !== null) s.write(`${JSON.stringify({ client: client.clientId, gen: client.clientSlot(client.clientId).gen })}\n`);
      await settle();
      return s;
    };
    const sa = await join(a);
    assert.equal(n.clients().map((c) => c.client), [a.clientId]);
    // Rule 4: an unreported connection goes with a cut of an id nobody reported.
    await join(null);
    assert.is(n.cutClient(7777, 'test'), 1);
    assert.ok(cuts().at(-1)!.startsWith('test (client 7777 unknown'), cuts().join('; '));
    // Rule 1: the monitor's revocation cuts before revokeClient returns, and the client counts as fenced.
    const gen = a.clientSlot(a.clientId).gen;
    assert.ok(node.revokeClient(a.clientId, gen));
    assert.is(cuts().at(-1), 'revoked');
    assert.equal(n.clients(), []);
    assert.equal(fenceOf(node, node.clientSlot(a.clientId)), { fenced: true, reason: 'transport-cut' });
    await once(sa, 'close');
    // A cut that fails says so and does not mark the client: the monitor must not count it as fenced.
    await join(b);
    n.failNext = true;
    assert.ok(node.revokeClient(b.clientId, b.clientSlot(b.clientId).gen));
    assert.is(cuts().at(-1), 'revoked (stand-in cut failed)');
    assert.is(fenceOf(node, node.clientSlot(b.clientId)).fenced, false, 'a revoked client in this live process, not cut: not fenced');
    // Rule 2: a connection whose slot is not LIVE in the generation it reports is cut (here on its report).
    await join(b);
    assert.match(cuts().at(-1)!, new RegExp(`^slot ${b.clientId} is revoked \\(gen \\d+, reported \\d+\\)$`));
    // Rule 3: the bootstrap connection closing cuts it; a bad report cuts too.
    const sc = await join(null);
    sc.destroy();
    await settle();
    assert.is(cuts().at(-1), 'bootstrap connection closed');
    const sd = await join(null);
    sd.write(`${JSON.stringify({ client: 0, gen: 1 })}\n`);
    await settle();
    assert.is(cuts().at(-1), 'bad client report');
    assert.equal(n.severed.length, new Set(n.severed).size, 'each connection is severed once');
    assert.is(n.severed.length, 6);
  } finally {
    await n.close();
    for (const p of [a, b, node]) { try { p.close(); } catch { /* revoked */ } }
    removeShm(name);
  }
});

/** Runs `ip ARGS`; returns null on success or the error text. */
function ip(args: string[]): string | null {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  return r.status === 0 ? null : (r.error?.message ?? r.stderr.trim()) || `ip exited with ${r.status}`;
}

test('tcp across two network namespaces joined by veth: 2 stamping clients in one, the node in the other', async () => {
  if (tcpSkip !== null) { console.log(`skip: netns: ${tcpSkip}`); return; }
  if (process.getuid?.() !== 0) { console.log('skip: netns: needs root (ip netns add)'); return; }
  const tag = `${process.pid % 100000}`;
  const [a, b] = [`dmem-a-${tag}`, `dmem-b-${tag}`];
  const [va, vb] = [`dv${tag}a`, `dv${tag}b`];
  const net = `10.213.${process.pid % 250}`;
  const setup: string[][] = [
    ['netns', 'add', a], ['netns', 'add', b], ['link', 'add', va, 'type', 'veth', 'peer', 'name', vb],
    ['link', 'set', va, 'netns', a], ['link', 'set', vb, 'netns', b],
    ['-n', a, 'addr', 'add', `${net}.1/24`, 'dev', va], ['-n', b, 'addr', 'add', `${net}.2/24`, 'dev', vb],
    ['-n', a, 'link', 'set', va, 'up'], ['-n', b, 'link', 'set', vb, 'up'], ['-n', a, 'link', 'set', 'lo', 'up'], ['-n', b, 'link', 'set', 'lo', 'up'],
  ];
  let n: Node | null = null;
  try {
    for (const step of setup) {
      const err = ip(step);
      if (err !== null) { console.log(`skip: netns: ip ${step.join(' ')}: ${err}`); return; }
    }
    n = await startNode('tcp', dir, LEASE_MS, a, `${net}.1`);
    assert.ok(n.url.includes(`${net}.1`), n.url);
    const kids = [0, 1].map((i) => track(spawn('ip', ['netns', 'exec', b, process.execPath, STAMP, n!.url, String(3000 + i), '400', '8'], {
      stdio: ['inherit', 'inherit', 'inherit', 'ipc'], env: { ...process.env, DMEM_OFI_TOKEN: TOKEN },
    })));
    await Promise.all(kids.map((k) => message(k)));
    const done = kids.map((k) => message<{ clientId: number; allocs: number; frees: number; mismatches: number }>(k));
    for (const k of kids) k.send('go');
    const reports = await Promise.all(done);
    for (const r of reports) {
      assert.is(r.mismatches, 0, `client ${r.clientId}: stamps overwritten`);
      assert.is(r.allocs, r.frees);
      assert.ok(r.allocs > 50, `client ${r.clientId} made ${r.allocs} allocations across the veth`);
    }
    assert.is(reports[0].clientId === reports[1].clientId, false);
  } finally {
    await n?.stop();
    ip(['netns', 'del', a]);
    ip(['netns', 'del', b]);
  }
});

test.run();
