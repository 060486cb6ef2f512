/**
 * Server-side mode over TCP (issue 11): a real server on loopback (port 0)
 * in this process, clients in this process and in child processes.
 * - the core scenarios against a tcp pool: every class, > 2 MiB, exhaustion,
 *   double free, invalid addresses, heap, regions, epochs; 4 processes
 *   stamping their chunks;
 * - security: wrong / missing token refused with no pool byte readable or
 *   writable; frames before HELLO close the connection unanswered; TLS;
 *   loopback only without a token;
 * - a fuzz of 10,000 random and malformed frames: server up, the other
 *   client unaffected, census unchanged;
 * - leases: kill -9 and a connection cut mid-request are reclaimed after the
 *   lease; a SIGSTOPped client is fenced and refused when it resumes; a cut
 *   that comes back within the lease resumes its session.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ClientTableFullError, DoubleFreeError, InvalidAddressError, InvalidArgumentError, LeaseExpiredError, PoolExhaustedError, RegionNotFoundError,
  TransportUnavailableError, type PoolCensus,
} from '../src/index.js';
import { serveTcp, type TcpServer } from '../src/transports/tcp/server.js';
import { openTcpPool, type AsyncPool, type RemotePool } from '../src/transports/tcp/index.js';
import {
  AuthFailedError, FrameReader, FrameWriter, HEADER_BYTES, ProtocolError, Op, PROTOCOL_VERSION, ST_ERROR, ST_OK, decodeError, encodeHello,
} from '../src/transports/tcp/protocol.js';
import { Prng } from '../src/bench/prng.js';
import { is, rejects } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const TOKEN = 'test-token-0123456789';
const LEASE = 1000;
const CLIENT = fileURLToPath(new URL('./fixtures/tcp-client.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function server(size = '64MiB', extra: Parameters<typeof serveTcp>[1] = {}): Promise<TcpServer> {
  return serveTcp('memory:', { size, token: TOKEN, leaseMs: LEASE, ...extra });
}

/** What the census says is held (chunks per class), without the live-client count. */
function held(c: PoolCensus): string {
  return JSON.stringify({ held: c.chunks.held, orphan: c.chunks.orphan, perClass: c.perClass });
}

/** Polls until the server's census equals `want` (after leases run out), or fails after `ms`. */
async function censusBecomes(srv: TcpServer, want: string, ms = 8000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const now = held(srv.pool.census());
    if (now === want) return;
    if (Date.now() > until) assert.unreachable(`census did not come back within ${ms} ms:\n got ${now}\nwant ${want}`);
    await sleep(100);
  }
}

/** A raw protocol connection, for the security and fuzz tests. */
class Raw {
  readonly socket: Socket;
  readonly replies: Array<{ st: number; id: number; payload: Buffer }> = [];
  bytesIn = 0;
  closed = false;
  readonly done: Promise<void>;

  constructor(port: number) {
    this.socket = connect(port, '127.0.0.1');
    const reader = new FrameReader(64 * MiB, (st, id, b, o, e) => this.replies.push({ st, id, payload: Buffer.from(b.subarray(o, e)) }));
    this.socket.on('data', (c: Buffer) => { this.bytesIn += c.length; reader.push(c); });
    this.socket.on('error', () => undefined);
    this.done = new Promise((resolve) => this.socket.on('close', () => { this.closed = true; resolve(); }));
  }

  ready(): Promise<void> {
    return new Promise((resolve) => this.socket.once('connect', () => resolve()));
  }

  send(op: number, id: number, payload: Buffer = Buffer.alloc(0), lenOverride?: number): void {
    const h = Buffer.alloc(HEADER_BYTES);
    h.writeUInt32LE(lenOverride ?? HEADER_BYTES - 4 + payload.length, 0);
    h[4] = op;
    h.writeUInt32LE(id, 5);
    this.socket.write(Buffer.concat([h, payload]));
  }

  async hello(token: string): Promise<{ st: number; payload: Buffer }> {
    await this.ready();
    this.send(Op.HELLO, 0, encodeHello({ version: PROTOCOL_VERSION, token: Buffer.from(token), resume: null }));
    return this.reply(0);
  }

  async reply(id: number, ms = 5000): Promise<{ st: number; payload: Buffer }> {
    const until = Date.now() + ms;
    for (;;) {
      const r = this.replies.find((x) => x.id === id);
      if (r) return r;
      if (this.closed || Date.now() > until) throw new Error(`no reply to ${id} (closed: ${this.closed})`);
      await sleep(2);
    }
  }
}

function f64(...vs: number[]): Buffer {
  const b = Buffer.alloc(vs.length * 8);
  vs.forEach((v, i) => b.writeDoubleLE(v, i * 8));
  return b;
}

// -------------------------------------------------------------- framing

test('framing: a burst of 1,000 frames in one tick leaves in a few writes, and is read back whole from any chunking', async () => {
  const written: Buffer[] = [];
  let corks = 0;
  const fake = { destroyed: false, cork: () => { corks++; }, uncork: () => undefined, write: (b: Buffer) => { written.push(Buffer.from(b)); return true; } };
  const w = new FrameWriter(fake as unknown as Socket);
  const big = new Uint8Array(5000).fill(9);
  for (let i = 0; i < 1000; i++) {
    const at = w.begin(Op.READ, i, 12);
    w.buf.writeDoubleLE(i * 4096, at);
    w.buf.writeUInt32LE(64, at + 8);
    if (i === 500) w.writeFrame(Op.WRITE, 100_000, f64(1), big);
  }
  await new Promise<void>((r) => process.nextTick(r));
  assert.is(corks, 1, 'one corked flush');
  assert.ok(written.length <= 4, `${written.length} writes for 1,001 frames`);
  const stream = Buffer.concat(written);
  for (const cut of [1, 7, 100, 4096, stream.length]) {
    const got: Array<{ op: number; id: number; len: number }> = [];
    const r = new FrameReader(1 << 20, (op, id, _b, o, e) => got.push({ op, id, len: e - o }));
    for (let at = 0; at < stream.length; at += cut) r.push(stream.subarray(at, at + cut));
    assert.is(got.length, 1001, `chunks of ${cut} B`);
    assert.equal(got[501], { op: Op.WRITE, id: 100_000, len: 8 + 5000 });
    assert.equal(got[1000], { op: Op.READ, id: 999, len: 12 });
  }
  const small = new FrameReader(100, () => undefined);
  assert.throws(() => small.push(Buffer.from([200, 0, 0, 0, 1])), (e: unknown) => e instanceof ProtocolError);
  assert.throws(() => new FrameReader(100, () => undefined).push(Buffer.from([2, 0, 0, 0, 1, 0])), (e: unknown) => e instanceof ProtocolError);
});

// ------------------------------------------------------------------ core

/** Runs the scenarios; returns the census after them (the region directory and delayed-free ring stay: they belong to the pool). */
async function coreScenarios(p: AsyncPool, srv: TcpServer): Promise<string> {
  // Every size class: alloc, write its last byte, read it back, free.
  for (let c = 0; c <= 9; c++) {
    const g = await p.allocClass(c);
    const size = 4 * KiB * 2 ** c;
    await p.write(g + size - 1, Uint8Array.of(c + 1));
    assert.equal([...(await p.read(g + size - 1, 1))], [c + 1]);
    await p.free(g);
    await rejects(p.free(g), (e) => e instanceof DoubleFreeError || e instanceof InvalidAddressError);
  }
  // > 2 MiB, larger than one frame: written and read back in pieces.
  const big = await p.alloc(5 * MiB);
  const data = new Uint8Array(5 * MiB);
  for (let i = 0; i < data.length; i += 4093) data[i] = (i / 4093) & 0xFF;
  await p.write(big, data);
  const back = await p.read(big, data.length);
  assert.ok(Buffer.from(back).equals(Buffer.from(data)), '5 MiB read back intact');
  await p.free(big);
  // Double free, invalid addresses, bad arguments.
  const g = await p.alloc(100);
  await p.free(g);
  await rejects(p.free(g), is(DoubleFreeError));
  await rejects(p.free(12345), is(InvalidAddressError));
  await rejects(p.read(-1, 8), is(InvalidAddressError));
  await rejects(p.write(2 ** 52, Uint8Array.of(1)), is(InvalidAddressError));
  await rejects(p.allocClass(10), is(InvalidArgumentError));
  await rejects(p.alloc(0), is(InvalidArgumentError));
  // CAS and FAA.
  const w = await p.alloc(8);
  // A block's contents are unspecified (with the block cache it is often the one this client just freed).
  await p.write(w, new Uint8Array(8));
  assert.is(await p.cas(w, 0n, 7n), 0n);
  assert.is(await p.cas(w, 0n, 9n), 7n);
  assert.is(await p.faa(w, 5n), 7n);
  assert.is(await p.cas(w + 4, 12n, 0n).catch((e: unknown) => e instanceof InvalidAddressError), true, 'unaligned CAS refused');
  await p.free(w);
  // Heap objects, delayed free inside an epoch, reclaim.
  const objs = await Promise.all([1, 64, 100, 3000, 5000].map((n) => p.heap.alloc(n)));
  assert.is(new Set(objs).size, objs.length);
  await p.write(objs[1], Uint8Array.of(1, 2, 3));
  assert.equal([...(await p.read(objs[1], 3))], [1, 2, 3]);
  for (const o of objs.slice(1)) await p.heap.free(o);
  await rejects(p.heap.free(objs[1]), is(DoubleFreeError));
  await p.epoch(async () => {
    await p.epoch(() => p.heap.freeDelayed(objs[0]));
  });
  // Overlapping (not nested) operations share one server-side epoch.
  assert.equal(await Promise.all([p.epoch(async () => 1), p.epoch(async () => 2), p.epoch(() => 3)]), [1, 2, 3]);
  for (let i = 0; i < 4; i++) await p.reclaim();
  await p.heap.flush();
  // Regions: bounded by the region, survive the handle.
  const r = await p.createRegion('tcp-r', 10_000);
  await r.write(9_996, Uint8Array.of(1, 2, 3, 4));
  await rejects(r.write(9_998, Uint8Array.of(1, 2, 3)), is(InvalidAddressError));
  const r2 = await p.openRegion('tcp-r');
  assert.is(r2.gaddr, r.gaddr);
  assert.equal([...(await r2.read(9_996, 4))], [1, 2, 3, 4]);
  assert.ok(await p.regionExists('tcp-r'));
  assert.equal((await p.listRegions()).map((x) => x.name), ['tcp-r']);
  await rejects(p.free(r.gaddr), (e) => e instanceof InvalidAddressError || e instanceof InvalidArgumentError);
  await p.destroyRegion('tcp-r');
  await rejects(p.openRegion('tcp-r'), is(RegionNotFoundError));
  await rejects(r.read(0, 1), is(InvalidAddressError));
  await r.close();
  await srv.pool.heap.trim();
  return held(srv.pool.census());
}

test('the core scenarios against a tcp pool', async () => {
  const srv = await server();
  try {
    const p = await openTcpPool(srv.url, { token: TOKEN });
    const first = await coreScenarios(p, srv);
    assert.is(await coreScenarios(p, srv), first, 'a second run leaves exactly what the first left: nothing leaked');
    // The session's block cache (on by default) holds freed blocks of classes 0..4: close frees those and nothing else.
    const cached = srv.pool.census().cached.blocks;
    assert.is(await p.close(), cached);
  } finally {
    await srv.close();
  }
});

test('exhaustion: PoolExhaustedError, nothing leaked; close frees what a client still holds', async () => {
  const srv = await server('16MiB');
  try {
    const before = held(srv.pool.census());
    const p = await openTcpPool(srv.url, { token: TOKEN });
    const blocks: number[] = [];
    for (;;) {
      try {
        blocks.push(await p.allocClass(9));
      } catch (e) {
        assert.ok(e instanceof PoolExhaustedError, String(e));
        break;
      }
    }
    assert.ok(blocks.length >= 5, `${blocks.length} sections allocated`);
    const kept = await p.alloc(4096).catch(() => 0);
    assert.is(await p.close(), blocks.length + (kept ? 1 : 0), 'close freed every held block');
    assert.is(held(srv.pool.census()), before);
    await rejects(p.alloc(1), (e) => (e as Error).constructor.name === 'PoolClosedError');
  } finally {
    await srv.close();
  }
});

test('4 client processes stamping their chunks over tcp: no chunk held twice, nothing left', async () => {
  const srv = await server('256MiB');
  try {
    const before = held(srv.pool.census());
    const kids = Array.from({ length: 4 }, (_, i) => fork(CLIENT, ['stamp', srv.url, TOKEN, String(100 + i), '1500', '24'], { stdio: 'inherit' }));
    await Promise.all(kids.map((c) => new Promise<void>((resolve, reject) => {
      c.once('message', () => resolve());
      c.once('exit', (code) => reject(new Error(`client exited with ${code}`)));
    })));
    const done = kids.map((c) => new Promise<{ clientId: number; allocs: number; frees: number; mismatches: number }>((resolve, reject) => {
      c.once('message', (m) => resolve(m as never));
      c.once('exit', (code) => { if (code !== 0) reject(new Error(`client exited with ${code}`)); });
    }));
    for (const c of kids) c.send('go');
    const reports = await Promise.all(done);
    assert.is(new Set(reports.map((r) => r.clientId)).size, 4, 'four distinct client slots');
    for (const r of reports) {
      assert.is(r.mismatches, 0, `client ${r.clientId}: stamps overwritten`);
      assert.is(r.allocs, r.frees);
      assert.ok(r.allocs > 300, `client ${r.clientId} made ${r.allocs} allocations`);
    }
    assert.is(held(srv.pool.census()), before);
  } finally {
    await srv.close();
  }
});

test('a full client table refuses the next connection with ClientTableFullError; a closed session frees its slot', async () => {
  const srv = await server('8MiB', { clients: 3 });
  try {
    const a = await openTcpPool(srv.url, { token: TOKEN });
    const b = await openTcpPool(srv.url, { token: TOKEN });
    await rejects(openTcpPool(srv.url, { token: TOKEN }), is(ClientTableFullError));
    await a.close();
    const c = await openTcpPool(srv.url, { token: TOKEN });
    assert.ok((await c.alloc(1)) > 0);
    await b.close();
    await c.close();
  } finally {
    await srv.close();
  }
});

// -------------------------------------------------------------- security

test('wrong or missing token: refused, no pool byte readable or writable, others still served', async () => {
  const srv = await server();
  try {
    const good = await openTcpPool(srv.url, { token: TOKEN });
    const g = await good.alloc(4096);
    await good.write(g, Uint8Array.of(42));
    await rejects(openTcpPool(srv.url, { token: 'wrong' }), is(AuthFailedError));
    await rejects(openTcpPool(srv.url), is(AuthFailedError));
    await rejects(openTcpPool(srv.url, { token: TOKEN.slice(0, -1) }), is(AuthFailedError));

    // A wrong HELLO followed at once by a write and a read of the good client's block.
    const raw = new Raw(srv.port);
    await raw.ready();
    const t0 = Date.now();
    raw.send(Op.HELLO, 0, encodeHello({ version: PROTOCOL_VERSION, token: Buffer.from('guess'), resume: null }));
    raw.send(Op.WRITE, 1, Buffer.concat([f64(g), Buffer.from([7])]));
    raw.send(Op.READ, 2, Buffer.concat([f64(g), Buffer.from([1, 0, 0, 0])]));
    await raw.done;
    assert.ok(Date.now() - t0 >= 150, 'the refusal was delayed');
    assert.is(raw.replies.length, 1, 'only the refusal was answered');
    assert.is(raw.replies[0].st, ST_ERROR);
    assert.is(decodeError(raw.replies[0].payload).code, 'AUTH_FAILED');

    // Another protocol version: refused with VERSION_MISMATCH.
    const raw3 = new Raw(srv.port);
    await raw3.ready();
    raw3.send(Op.HELLO, 0, encodeHello({ version: PROTOCOL_VERSION + 1, token: Buffer.from(TOKEN), resume: null }));
    await raw3.done;
    assert.is(decodeError(raw3.replies[0].payload).code, 'VERSION_MISMATCH');

    // Requests before HELLO: closed without a byte of reply.
    const raw2 = new Raw(srv.port);
    await raw2.ready();
    raw2.send(Op.READ, 1, Buffer.concat([f64(g), Buffer.from([1, 0, 0, 0])]));
    await raw2.done;
    assert.is(raw2.bytesIn, 0);

    assert.equal([...(await good.read(g, 1))], [42], 'block untouched');
    assert.ok((await good.alloc(64)) > 0, 'the good client is still served');
    await good.close();
  } finally {
    await srv.close();
  }
});

test('without a token only loopback addresses are served', async () => {
  await rejects(serveTcp('memory:', { size: '8MiB', listen: '0.0.0.0:0' }), is(InvalidArgumentError));
  const srv = await serveTcp('memory:', { size: '8MiB', listen: '127.0.0.1:0' });
  try {
    const p = await openTcpPool(srv.url);
    assert.ok((await p.alloc(10)) > 0);
    await p.close();
  } finally {
    await srv.close();
  }
});

test('TLS: a self-signed server, a client that trusts it; a plain client is refused', async () => {
  const probe = spawnSync('openssl', ['version']);
  if (probe.status !== 0) {
    console.log('skip: openssl is not installed, no certificate to test TLS with');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'dmem-tls-'));
  try {
    const gen = spawnSync('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=dmem-test',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'pipe' });
    assert.is(gen.status, 0, String(gen.stderr));
    const cert = readFileSync(join(dir, 'cert.pem'));
    const srv = await server('16MiB', { tls: { cert, key: readFileSync(join(dir, 'key.pem')) } });
    try {
      assert.ok(srv.url.startsWith('tls://'));
      const p = await openTcpPool(srv.url, { token: TOKEN, tls: { ca: cert } });
      const g = await p.alloc(100);
      await p.write(g, Uint8Array.of(9, 8));
      assert.equal([...(await p.read(g, 2))], [9, 8]);
      await p.close();
      await rejects(openTcpPool(srv.url, { token: TOKEN, connectTimeoutMs: 2000 }), is(TransportUnavailableError));
      await rejects(openTcpPool(srv.url.replace('tls:', 'tcp:'), { token: TOKEN, connectTimeoutMs: 2000 }), is(TransportUnavailableError));
    } finally {
      await srv.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------ fuzz

test('10,000 random and malformed frames: server up, other client unaffected, census unchanged', async () => {
  const srv = await server('256MiB');
  try {
    const other = await openTcpPool(srv.url, { token: TOKEN });
    const og = await other.alloc(4096);
    const pattern = new Uint8Array(4096).map((_, i) => (i * 7) & 0xFF);
    await other.write(og, pattern);
    const before = held(srv.pool.census());
    const { dataOffset, dataBytes } = srv.pool.geometry;
    const prng = new Prng(12345);
    const rnd = (): number => prng.next();
    const pick = <T>(a: readonly T[]): T => a[rnd() % a.length];
    const gaddr = (): number => {
      for (;;) {
        const g = pick([() => dataOffset + (rnd() % dataBytes), () => rnd() * 2 ** 20 + rnd(), () => -rnd(), () => NaN, () => 2 ** 53, () => 0])();
        if (!(g + 8192 > og && g < og + 4096)) return g; // never aim at the other client's block
      }
    };
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd() & 0xFF));
    const wellFormed = (): [number, Buffer] => {
      const op = pick([Op.FREE, Op.READ, Op.WRITE, Op.CAS, Op.FAA, Op.HEAP_FREE, Op.HEAP_FREE_DELAYED, Op.ALLOC_CLASS, Op.ALLOC,
        Op.REGION_OPEN, Op.REGION_EXISTS, Op.REGION_DESTROY, Op.REGION_READ, Op.REGION_WRITE, Op.REGION_CLOSE, Op.EPOCH_ENTER,
        Op.EPOCH_EXIT, Op.PING, Op.STATS, Op.EPOCH_STATE]);
      switch (op) {
        case Op.FREE: case Op.HEAP_FREE: case Op.HEAP_FREE_DELAYED: return [op, f64(gaddr())];
        case Op.ALLOC: return [op, f64(pick([1, 4096, -5, 1e300, NaN, 3 * MiB, rnd()]))];
        case Op.ALLOC_CLASS: return [op, Buffer.from([rnd() & 0xFF])];
        case Op.READ: { const b = Buffer.alloc(12); b.writeDoubleLE(gaddr(), 0); b.writeUInt32LE(pick([0, 1, 8, 4096, rnd()]), 8); return [op, b]; }
        case Op.WRITE: return [op, Buffer.concat([f64(gaddr()), bytes(rnd() % 64)])];
        case Op.CAS: return [op, Buffer.concat([f64(gaddr()), bytes(16)])];
        case Op.FAA: return [op, Buffer.concat([f64(gaddr()), bytes(8)])];
        case Op.REGION_OPEN: case Op.REGION_EXISTS: case Op.REGION_DESTROY: return [op, Buffer.concat([Buffer.from('fz'), bytes(rnd() % 50)])];
        case Op.REGION_READ: return [op, bytes(16)];
        case Op.REGION_WRITE: return [op, bytes(12 + (rnd() % 20))];
        case Op.REGION_CLOSE: return [op, bytes(4)];
        default: return [op, Buffer.alloc(0)];
      }
    };
    let frames = 0;
    let closedByServer = 0;
    let answered = 0;
    while (frames < 10_000) {
      const raw = new Raw(srv.port);
      if (rnd() % 10 === 0) {
        // Before HELLO: random bytes, a bad magic, an oversized or undersized length.
        await raw.ready();
        const kind = rnd() % 4;
        if (kind === 0) raw.socket.write(bytes(1 + (rnd() % 200)));
        else if (kind === 1) raw.send(Op.HELLO, 0, bytes(rnd() % 100));
        else if (kind === 2) raw.send(rnd() & 0xFF, rnd(), bytes(8), 5000 + rnd());
        else raw.send(Op.READ, 1, bytes(12));
        frames++;
        await raw.done;
        closedByServer++;
        continue;
      }
      assert.is((await raw.hello(TOKEN)).st, ST_OK);
      let id = 1;
      // A burst of well-formed requests with random arguments: each is answered.
      const n = 50 + (rnd() % 150);
      for (let i = 0; i < n; i++) { const [op, p] = wellFormed(); raw.send(op, id++, p); }
      frames += n;
      await raw.reply(id - 1);
      answered += raw.replies.length;
      // Then one malformed frame: the server closes this connection.
      const bad = rnd() % 5;
      if (bad === 0) raw.send(0x7F + (rnd() % 0x80), id, bytes(8));
      else if (bad === 1) raw.send(Op.CAS, id, bytes(rnd() % 24));
      else if (bad === 2) raw.send(Op.READ, id, bytes(12), 2 ** 31);
      else if (bad === 3) raw.send(Op.HELLO, id, bytes(30));
      else raw.send(Op.ALLOC, id, bytes(8), 2);
      frames++;
      await raw.done;
      closedByServer++;
    }
    assert.ok(answered > 8000, `${answered} well-formed requests answered`);
    assert.ok(closedByServer > 50);
    // The other client: its block intact, still served.
    assert.ok(Buffer.from(await other.read(og, 4096)).equals(Buffer.from(pattern)));
    // Sessions cut without BYE are closed after the lease: then nothing they held remains.
    await srv.pool.heap.trim();
    await censusBecomes(srv, before);
    const g2 = await other.alloc(64);
    await other.free(g2);
    await other.close();
  } finally {
    await srv.close();
  }
});

// ---------------------------------------------------------------- leases

function holder(url: string, n: number): Promise<{ child: ChildProcess; clientId: number }> {
  const child = fork(CLIENT, ['hold', url, TOKEN, String(n)], { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, clientId: (m as { clientId: number }).clientId }));
    child.once('exit', (code) => reject(new Error(`holder exited with ${code}`)));
  });
}

test('kill -9 of a remote client and a connection cut mid-request: memory reclaimed after the lease', async () => {
  const srv = await server();
  try {
    const empty = held(srv.pool.census());
    const { child } = await holder(srv.url, 6);
    assert.is.not(held(srv.pool.census()), empty);
    child.kill('SIGKILL');
    await censusBecomes(srv, empty);

    // A raw client allocates, then its connection dies in the middle of a 1 MiB write.
    const raw = new Raw(srv.port);
    assert.is((await raw.hello(TOKEN)).st, ST_OK);
    raw.send(Op.ALLOC_CLASS, 1, Buffer.from([8]));
    const g = (await raw.reply(1)).payload.readDoubleLE(0);
    assert.is.not(held(srv.pool.census()), empty);
    const h = Buffer.alloc(HEADER_BYTES + 8);
    h.writeUInt32LE(HEADER_BYTES - 4 + 8 + MiB, 0);
    h[4] = Op.WRITE;
    h.writeUInt32LE(2, 5);
    h.writeDoubleLE(g, HEADER_BYTES);
    raw.socket.write(Buffer.concat([h, Buffer.alloc(1000)]));
    await sleep(50);
    raw.socket.destroy();
    assert.ok(srv.liveSessions >= 1, 'the session waits for a resume');
    await censusBecomes(srv, empty);
    assert.is(srv.liveSessions, 0);
  } finally {
    await srv.close();
  }
});

test('a paused (SIGSTOP) remote client is fenced: memory reclaimed, and refused when it resumes', async () => {
  const srv = await server();
  try {
    const empty = held(srv.pool.census());
    const { child } = await holder(srv.url, 4);
    const other = await openTcpPool(srv.url, { token: TOKEN });
    child.kill('SIGSTOP');
    await censusBecomes(srv, empty);
    child.kill('SIGCONT');
    const answer = await new Promise<{ ok?: boolean; code?: string }>((resolve) => {
      child.once('message', (m) => resolve(m as never));
      child.send('try');
    });
    assert.is(answer.code, 'LEASE_EXPIRED', JSON.stringify(answer));
    child.kill('SIGKILL');
    assert.ok((await other.alloc(64)) > 0, 'others still served');
    await other.close();
  } finally {
    await srv.close();
  }
});

test('an idle client keeps its session for many leases: its pings renew it', async () => {
  const srv = await server();
  try {
    const p = await openTcpPool(srv.url, { token: TOKEN });
    const g = await p.alloc(4096);
    await sleep(3 * LEASE);
    assert.is(srv.liveSessions, 1);
    await p.write(g, Uint8Array.of(1));
    await p.free(g);
    await p.close();
  } finally {
    await srv.close();
  }
});

test('a connection cut and restored within the lease resumes its session and keeps its blocks', async () => {
  const srv = await server();
  try {
    const p = await openTcpPool(srv.url, { token: TOKEN }) as RemotePool;
    const id = p.clientId;
    const g = await p.alloc(4096);
    await p.write(g, Uint8Array.of(5, 6, 7));
    const inFlight = p.read(g, 3);
    (p as unknown as { socket: Socket }).socket.destroy();
    await inFlight.then(() => undefined, (e: unknown) => assert.ok(e instanceof TransportUnavailableError, String(e)));
    assert.equal([...(await p.read(g, 3))], [5, 6, 7], 'resumed, block kept');
    assert.is(p.clientId, id);
    assert.is(srv.liveSessions, 1);
    // Someone else presenting the session id with a guessed secret is refused.
    const session = (p as unknown as { session: { id: Buffer } }).session;
    const raw = new Raw(srv.port);
    await raw.ready();
    raw.send(Op.HELLO, 0, encodeHello({ version: PROTOCOL_VERSION, token: Buffer.from(TOKEN), resume: { id: session.id, secret: Buffer.alloc(32, 1) } }));
    await raw.done;
    assert.is(decodeError(raw.replies[0].payload).code, 'AUTH_FAILED');
    assert.equal([...(await p.read(g, 3))], [5, 6, 7], 'the owner is unaffected');
    await p.free(g);
    await p.close();
    assert.is(srv.liveSessions, 0);
    await rejects(p.read(g, 1), (e) => !(e instanceof LeaseExpiredError));
  } finally {
    await srv.close();
  }
});

// ------------------------------------------------------------------ scale

test('1,000 connections to one server, each its own client slot, each allocating and freeing', async () => {
  const srv = await server('64MiB', { clients: 1024 });
  const pools: RemotePool[] = [];
  try {
    const empty = held(srv.pool.census());
    for (let i = 0; i < 1000; i += 50) pools.push(...await Promise.all(Array.from({ length: 50 }, () => openTcpPool(srv.url, { token: TOKEN }))));
    assert.is(new Set(pools.map((p) => p.clientId)).size, 1000, 'distinct client slots');
    assert.is(srv.liveSessions, 1000);
    const gs = await Promise.all(pools.map((p) => p.alloc(4096)));
    assert.is(new Set(gs).size, 1000, 'distinct blocks');
    await Promise.all(pools.map((p, i) => p.write(gs[i], Uint8Array.of(i & 0xFF, i >> 8))));
    const back = await Promise.all(pools.map((p, i) => p.read(gs[(i + 1) % 1000], 2)));
    back.forEach((b, i) => assert.is(b[0] | (b[1] << 8), (i + 1) % 1000));
    await Promise.all(pools.map((p, i) => p.free(gs[i])));
    assert.is(held(srv.pool.census()), empty);
    await Promise.all(pools.map((p) => p.close()));
    assert.is(srv.liveSessions, 0);
  } finally {
    await Promise.all(pools.map((p) => p.close()));
    await srv.close();
  }
});

test.run();
