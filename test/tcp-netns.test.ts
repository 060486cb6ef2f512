/**
 * Two hosts (issue 11): a memory server and a client in two network
 * namespaces joined by a veth pair, which the test makes and removes. The
 * client reaches the server only over the veth link (10.x.y.1 <-> .2).
 * Skipped, with the reason printed, without the rights to make namespaces.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { ROOT, withPoolName } from './helpers.js';

const MAIN = join(ROOT, 'dist/src/cli/main.js');
const CLIENT = fileURLToPath(new URL('./fixtures/tcp-client.js', import.meta.url));

function ip(...args: string[]): { ok: boolean; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  return { ok: r.status === 0, err: `${r.stderr ?? ''}${r.error?.message ?? ''}`.trim() };
}

test('server and client in two network namespaces over a veth pair', async () => {
  const tag = `${process.pid % 100000}`;
  const nsS = `dmem-s-${tag}`;
  const nsC = `dmem-c-${tag}`;
  const probe = ip('netns', 'add', nsS);
  if (!probe.ok) {
    console.log(`skip: cannot make a network namespace (${probe.err || 'ip failed'}); needs root or CAP_SYS_ADMIN and iproute2`);
    return;
  }
  const subnet = `10.${200 + (process.pid % 50)}.${process.pid % 250}`;
  const dir = mkdtempSync(join(tmpdir(), 'dmem-netns-'));
  let server: ChildProcess | null = null;
  try {
    for (const step of [
      ['netns', 'add', nsC],
      ['link', 'add', `vs${tag}`, 'type', 'veth', 'peer', 'name', `vc${tag}`],
      ['link', 'set', `vs${tag}`, 'netns', nsS],
      ['link', 'set', `vc${tag}`, 'netns', nsC],
      ['-n', nsS, 'addr', 'add', `${subnet}.1/24`, 'dev', `vs${tag}`],
      ['-n', nsC, 'addr', 'add', `${subnet}.2/24`, 'dev', `vc${tag}`],
      ['-n', nsS, 'link', 'set', `vs${tag}`, 'up'],
      ['-n', nsC, 'link', 'set', `vc${tag}`, 'up'],
      ['-n', nsS, 'link', 'set', 'lo', 'up'],
      ['-n', nsC, 'link', 'set', 'lo', 'up'],
    ]) {
      const r = ip(...step);
      assert.ok(r.ok, `ip ${step.join(' ')}: ${r.err}`);
    }
    writeFileSync(join(dir, 'token'), 'netns-token\n');
    await withPoolName('netns', async (pool) => {
      server = spawn('ip', ['netns', 'exec', nsS, process.execPath, MAIN, 'server', '--pool', pool, '--size', '32MiB',
        '--listen', `${subnet}.1:0`, '--token-file', join(dir, 'token'), '--node', '7', '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
      const started = await new Promise<{ url: string; port: number }>((resolve, reject) => {
        createInterface({ input: server!.stdout! }).once('line', (l) => resolve(JSON.parse(l) as { url: string; port: number }));
        server!.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
      });
      assert.is(started.url, `tcp://${subnet}.1:${started.port}`);
      const c = spawnSync('ip', ['netns', 'exec', nsC, process.execPath, CLIENT, 'probe', started.url, 'netns-token'], { encoding: 'utf8', timeout: 30_000 });
      assert.is(c.status, 0, c.stderr);
      const out = JSON.parse(c.stdout.trim()) as { clientId: number; node: number; readBack: number[] };
      assert.is(out.node, 7, 'served by the node in the other namespace');
      assert.equal(out.readBack, [1, 2, 3, 4]);
      // The server is not reachable from the client namespace on its loopback.
      const lo = spawnSync('ip', ['netns', 'exec', nsC, process.execPath, CLIENT, 'probe', `tcp://127.0.0.1:${started.port}`, 'netns-token'], { encoding: 'utf8', timeout: 30_000 });
      assert.is.not(lo.status, 0, 'nothing listens on the client namespace\'s loopback');
      const s = server as ChildProcess;
      const exited = new Promise<number | null>((resolve) => s.once('exit', (code) => resolve(code)));
      s.kill('SIGTERM');
      assert.is(await exited, 0);
      server = null;
    });
  } finally {
    (server as ChildProcess | null)?.kill('SIGKILL');
    ip('netns', 'del', nsC);
    ip('netns', 'del', nsS);
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
