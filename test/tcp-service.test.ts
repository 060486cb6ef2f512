/**
 * The compute-node service (issue 11, part 5): local applications reach
 * two memory nodes through one service on a Unix socket; an application
 * killed with -9 has its memory freed on the nodes after the local lease.
 * And the CLI end to end: `dmem server --listen` x2, `dmem client --config`,
 * an application over the socket.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { nodeOf } from '../src/index.js';
import { openTcpPool, serveTcp, type TcpServer } from '../src/transports/tcp/index.js';
import { serveComputeNode } from '../src/transports/tcp/service.js';
import { ROOT, uniqueName, withPoolName } from './helpers.js';

const TOKEN = 'svc-token';
const CLIENT = fileURLToPath(new URL('./fixtures/tcp-client.js', import.meta.url));
const MAIN = join(ROOT, 'dist/src/cli/main.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const held4k = (s: TcpServer): number => s.pool.census().perClass.slice(0, 4).reduce((a, c) => a + c.blocks, 0);

test('local applications share the service; one killed -9 has its memory freed after the lease', async () => {
  const nodes = await Promise.all([1, 2].map((node) => serveTcp('memory:', { size: '32MiB', token: TOKEN, node, leaseMs: 1000 })));
  const dir = mkdtempSync(join(tmpdir(), 'dmem-svc-'));
  const svc = await serveComputeNode({ nodes: nodes.map((n) => n.url), token: TOKEN, listen: { path: join(dir, 'sock') }, leaseMs: 1000 });
  try {
    assert.is(svc.url, `unix:${join(dir, 'sock')}`);
    const app = await openTcpPool(svc.url);
    const gs: number[] = [];
    for (let i = 0; i < 6; i++) gs.push(await app.alloc(4096));
    assert.equal([...new Set(gs.map(nodeOf))].sort(), [1, 2], 'spread over both nodes');
    for (const g of gs) await app.write(g, Uint8Array.of(nodeOf(g)));
    for (const g of gs) assert.equal([...(await app.read(g, 1))], [nodeOf(g)]);
    const o = await app.heap.alloc(100);
    await app.heap.free(o);
    assert.is(await app.epoch(async () => 'in'), 'in');
    assert.is(svc.owned, 6);
    assert.is(held4k(nodes[0]) + held4k(nodes[1]), 6);

    // Another application in its own process, killed with -9 while holding blocks.
    const child = fork(CLIENT, ['hold', svc.url, '', '5'], { stdio: 'inherit' });
    await new Promise<void>((resolve, reject) => { child.once('message', () => resolve()); child.once('exit', (c) => reject(new Error(`exit ${c}`))); });
    assert.is(svc.owned, 11);
    child.kill('SIGKILL');
    const until = Date.now() + 6000;
    while (svc.owned !== 6 && Date.now() < until) await sleep(100);
    assert.is(svc.owned, 6, 'the dead application\'s blocks were freed');
    assert.is(held4k(nodes[0]) + held4k(nodes[1]), 6, 'and on the memory nodes too');

    for (const g of gs) await app.free(g);
    assert.is(svc.owned, 0);
    await app.close();
  } finally {
    await svc.close();
    await Promise.all(nodes.map((n) => n.close()));
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Spawns the CLI; resolves with the child and its first stdout JSON line. */
async function cli(args: string[]): Promise<{ child: ChildProcess; first: Record<string, unknown> }> {
  const child = spawn(process.execPath, [MAIN, ...args, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', (l) => resolve(JSON.parse(l) as Record<string, unknown>));
    child.once('exit', (code) => reject(new Error(`dmem ${args[0]} exited with ${code}`)));
  });
  return { child, first };
}

async function stop(c: ChildProcess): Promise<number | null> {
  if (c.exitCode !== null) return c.exitCode;
  const done = new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
  c.kill('SIGTERM');
  return done;
}

test('CLI: two `dmem server --listen --node` and `dmem client --config`; an application over the socket', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmem-cli-svc-'));
  const children: ChildProcess[] = [];
  try {
    await withPoolName('tcpcli-a', async (a) => withPoolName('tcpcli-b', async (b) => {
      writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
      const servers = [];
      for (const [pool, node] of [[a, 1], [b, 2]] as const) {
        const s = await cli(['server', '--pool', pool, '--size', '32MiB', '--listen', '127.0.0.1:0', '--token-file', join(dir, 'token'), '--node', String(node)]);
        children.push(s.child);
        assert.is(s.first.node, node);
        servers.push(s.first.url as string);
      }
      writeFileSync(join(dir, 'nodes.json'), JSON.stringify({ nodes: [{ id: 1, url: servers[0] }, { id: 2, url: servers[1] }], tokenFile: join(dir, 'token') }));
      const sock = join(dir, `${uniqueName('s')}.sock`);
      const c = await cli(['client', '--config', join(dir, 'nodes.json'), '--socket', sock]);
      children.push(c.child);
      assert.is(c.first.url, `unix:${sock}`);
      const app = await openTcpPool(`unix:${sock}`);
      const g1 = await app.alloc(10);
      const g2 = await app.alloc(10);
      assert.equal([nodeOf(g1), nodeOf(g2)].sort(), [1, 2]);
      await app.write(g2, Uint8Array.of(3));
      assert.equal([...(await app.read(g2, 1))], [3]);
      await app.close();
      const st = spawnSync(process.execPath, [MAIN, 'stat', '--config', join(dir, 'nodes.json'), '--json'], { encoding: 'utf8' });
      assert.is(st.status, 0, st.stderr);
      const rows = st.stdout.trim().split('\n').map((l) => JSON.parse(l) as { node: number; census: { liveClients: number } | null });
      assert.equal(rows.map((r) => r.node), [1, 2], 'dmem stat shows every node');
      assert.ok(rows.every((r) => r.census !== null && r.census.liveClients >= 1));
      for (const ch of children.reverse()) assert.is(await stop(ch), 0);
    }));
  } finally {
    for (const ch of children) ch.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a memory server stopped (SIGSTOP) for two leases keeps its sessions: the stall is not taken for silent clients', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dmem-stall-'));
  let server: ChildProcess | null = null;
  try {
    await withPoolName('tcpstall', async (pool) => {
      writeFileSync(join(dir, 'token'), TOKEN);
      const s = await cli(['server', '--pool', pool, '--size', '32MiB', '--lease-ms', '1000', '--listen', '127.0.0.1:0', '--token-file', join(dir, 'token')]);
      server = s.child;
      const p = await openTcpPool(s.first.url as string, { token: TOKEN });
      const id = p.clientId;
      const g = await p.alloc(4096);
      await p.write(g, Uint8Array.of(42));
      server.kill('SIGSTOP');
      await sleep(2500);
      server.kill('SIGCONT');
      await sleep(600);
      assert.equal([...(await p.read(g, 1))], [42], 'the session and its block survived');
      assert.is(p.clientId, id);
      await p.free(g);
      await p.close();
      assert.is(await stop(server), 0);
      server = null;
    });
  } finally {
    (server as ChildProcess | null)?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
