/**
 * Several memory nodes (issue 11): two servers with node ids 1 and 2 on
 * loopback; allocations land on both, every gaddr routes to its node,
 * most-free prefers the emptier node, and stopping one node fails only its
 * gaddrs while the other keeps serving (and takes the new allocations).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, nodeOf } from '../src/index.js';
import { NodeUnavailableError, loadNodesConfig, openTcpPool, serveTcp, type TcpServer } from '../src/transports/tcp/index.js';
import { is, rejects } from './helpers.js';

const TOKEN = 'nodes-token';

async function twoNodes(): Promise<[TcpServer, TcpServer]> {
  return Promise.all([1, 2].map((node) => serveTcp('memory:', { size: '32MiB', token: TOKEN, node, leaseMs: 1000 }))) as Promise<[TcpServer, TcpServer]>;
}

test('round-robin: allocations land on both nodes, each gaddr reaches its node; a stopped node fails only its gaddrs', async () => {
  const [a, b] = await twoNodes();
  try {
    const p = await openTcpPool([a.url, b.url], { token: TOKEN });
    assert.equal(p.nodeIds, [1, 2]);
    const gs: number[] = [];
    for (let i = 0; i < 10; i++) gs.push(await p.alloc(4096));
    const on = (n: number): number[] => gs.filter((g) => nodeOf(g) === n);
    assert.is(on(1).length, 5);
    assert.is(on(2).length, 5);
    for (const g of gs) await p.write(g, Uint8Array.of(nodeOf(g), 7));
    for (const g of gs) assert.equal([...(await p.read(g, 2))], [nodeOf(g), 7]);
    assert.is((await a.pool.census()).chunks.held, 5, 'node 1 holds its five');
    assert.is((await b.pool.census()).chunks.held, 5, 'node 2 holds its five');
    const h = await p.heap.alloc(64);
    await p.heap.free(h);
    assert.is(await p.epoch(async () => 3), 3, 'an epoch over both nodes');
    const r = await p.createRegion('on-some-node', 5000);
    assert.ok(await p.regionExists('on-some-node'));
    assert.is((await p.openRegion('on-some-node')).gaddr, r.gaddr);
    await p.destroyRegion('on-some-node');

    await b.close();
    for (const g of on(2)) await rejects(p.read(g, 2), is(NodeUnavailableError));
    await rejects(p.free(on(2)[0]), (e) => e instanceof NodeUnavailableError && e.node === 2);
    for (const g of on(1)) assert.equal([...(await p.read(g, 2))], [1, 7], 'node 1 still serves its gaddrs');
    for (let i = 0; i < 4; i++) assert.is(nodeOf(await p.alloc(4096)), 1, 'new allocations go to the node that is up');
    const c = await p.census();
    assert.is(c.perClass[0].blocks, 5 + 4, 'the census covers the nodes that answer: 4 KiB blocks of node 1');
    await p.close();
  } finally {
    await a.close();
    await b.close();
  }
});

test('most-free puts allocations on the emptier node; a config file names nodes by id and is checked', async () => {
  const [a, b] = await twoNodes();
  const dir = mkdtempSync(join(tmpdir(), 'dmem-nodes-'));
  try {
    const filler = await openTcpPool(a.url, { token: TOKEN });
    for (let i = 0; i < 6; i++) await filler.allocClass(9);
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
    writeFileSync(join(dir, 'nodes.json'), JSON.stringify({ nodes: [{ id: 1, url: a.url }, { id: 2, url: b.url }], policy: 'most-free', tokenFile: join(dir, 'token') }));
    const p = await openTcpPool(loadNodesConfig(join(dir, 'nodes.json')));
    assert.is(p.policy, 'most-free');
    for (let i = 0; i < 5; i++) assert.is(nodeOf(await p.alloc(64 * 1024)), 2, 'node 2 has more free');
    await p.close();
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ nodes: [{ id: 2, url: a.url }], token: TOKEN }));
    await rejects(openTcpPool(loadNodesConfig(join(dir, 'bad.json'))), is(InvalidArgumentError));
    await rejects(openTcpPool([a.url, a.url], { token: TOKEN }), is(InvalidArgumentError));
    const before = a.liveSessions;
    await rejects(openTcpPool([a.url, 'tcp://127.0.0.1:1'], { token: TOKEN, connectTimeoutMs: 2000 }), is(NodeUnavailableError));
    assert.is(a.liveSessions, before, 'the session opened on the node that answered was closed again');
    await filler.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await a.close();
    await b.close();
  }
});

test.run();
