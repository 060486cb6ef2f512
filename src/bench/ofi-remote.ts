/**
 * `dmem bench remote --url ofi+PROVIDER://HOST:PORT`: one-sided operations
 * over libfabric with K operations in flight, next to the same operations
 * through the TCP transport's server-side mode and through a C client, in
 * one run, interleaved, medians of several repetitions.
 *
 * Systems (one row each per op and depth K):
 *   ofi-js    the OfiTransport's asynchronous path (koffi + JS, no Wasm):
 *             K loops on one transport, each awaiting its previous op, so
 *             K fabric operations are in flight (read, cas, write);
 *   ofi-pool  the Pool API (the Wasm core, synchronous): read, cas and
 *             write at K = 1 in this process (the core first checks that
 *             the range is an allocated block: more remote reads), and
 *             alloc(4096) + free in K client processes
 *             (src/bench/ofi-alloc-worker.ts), one connection and one
 *             operation in flight each: allocation stays synchronous per
 *             client;
 *   ofi-c     bench/peers/ofi_client.c on the same memory node and key,
 *             K in flight (read, cas, write; it has no allocator);
 *   tcp       `dmem server --listen` (server-side mode, a child process on
 *             a temporary shm pool started here), one connection with K
 *             requests in flight (src/bench/remote.ts).
 *
 * Ops: read = 8 B read, cas = 8 B CAS (0 -> 0, always succeeds on the zeroed
 * word), write = 4 KiB write, alloc = alloc(4096) + free (one pair, one op).
 * Every run: a warm-up, then a fixed measured time (the C client: a fixed
 * count, sized from the ofi-js run just before it, so about as long; its
 * first operation includes connection setup). Latency per op in us, from
 * its call (post) to its completion as the caller sees it.
 */
import { execFile, fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { DmemError, InvalidArgumentError } from '../errors.js';
import type { Pool } from '../pool.js';
import type { OfiTransport, OfiUri } from '../../plugins/rdma/transport.js';
import { buildClient, startNode, type OfiNode } from './ofi-bench.js';
import type { AllocRunReport } from './ofi-alloc-worker.js';
import { offsetOf } from '../gaddr.js';
import { median, percentile } from './percentile.js';
import { processCpuUs, runRemoteBench, startServerProcess, type RemoteBenchResult, type ServerProcess } from './remote.js';

/** What one row measures. */
export type OfiRemoteOp = 'read' | 'cas' | 'write' | 'alloc';
/** Bytes per op (alloc: the block size). */
export const OFI_REMOTE_BYTES: Readonly<Record<OfiRemoteOp, number>> = { read: 8, cas: 8, write: 4096, alloc: 4096 };
/** See the file comment. */
export type OfiRemoteSystem = 'ofi-js' | 'ofi-pool' | 'ofi-c' | 'tcp';

/** Options of `runOfiRemote`. */
export interface OfiRemoteOptions {
  /** `ofi+PROVIDER://HOST:PORT` of a running memory node, or port 0 to start one here on HOST. */
  url: string;
  /** The node's token (needed unless the node is started here). */
  token?: string;
  ops: OfiRemoteOp[];
  /** Depths K (1..64). */
  inflights: number[];
  reps: number;
  /** Measured time per run (ms) after `warmupMs` (default 300). */
  durationMs: number;
  warmupMs?: number;
  /** Run the tcp side (default true). */
  tcp?: boolean;
  /** Called with every repetition's row as it comes. */
  onRow?: (r: OfiRemoteRow) => void;
}

/**
 * One row: medians over repetitions, in the shape of `dmem bench remote`'s
 * rows (src/bench/remote.ts: latencies in us, CPU in us per op, null when
 * not measured: the C client's CPU, a node not started here). `inflight`:
 * operations in flight against the node (alloc: client processes, one in
 * flight each); `conns`: the client endpoints carrying them.
 */
export interface OfiRemoteRow extends Omit<RemoteBenchResult, 'system' | 'op' | 'meanUs'> {
  system: OfiRemoteSystem;
  op: OfiRemoteOp;
  /** This row's ops/s over the C client's at the same op and depth, when both ran. */
  vsC: number | null;
}

/** The run's rows, why a side did not run, and the machine's load average before and after. */
export interface OfiRemoteResult {
  url: string;
  tcpUrl: string | null;
  rows: OfiRemoteRow[];
  skipped: string[];
  loadBefore: number[];
  loadAfter: number[];
}

const MAX_SAMPLES = 1 << 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const C_OPS: Record<string, string> = { read: 'read8', cas: 'cas8', write: 'write4k' };

/**
 * Checks `runOfiRemote`'s URL, depths and token before anything starts.
 * @returns the parsed URL (port 0: the port is 1 here) and whether to start a node
 * @throws InvalidArgumentError
 */
export async function checkOfiRemote(o: Pick<OfiRemoteOptions, 'url' | 'token' | 'inflights'>): Promise<{ u: OfiUri; port0: boolean }> {
  const { parseOfiUri, MAX_INFLIGHT } = await import('../../plugins/rdma/transport.js');
  const port0 = /:0\/?$/.test(o.url);
  const u = parseOfiUri(port0 ? o.url.replace(/:0(\/?)$/, ':1$1') : o.url);
  for (const k of o.inflights) if (!Number.isInteger(k) || k < 1 || k > MAX_INFLIGHT) throw new InvalidArgumentError(`--inflight: ofi depths are 1..${MAX_INFLIGHT}, got ${k}`);
  if (!port0 && o.token === undefined) throw new InvalidArgumentError(`${o.url}: give the memory node's --token-file (or port 0 to start a node here)`);
  return { u, port0 };
}

/**
 * Runs the comparison (see the file comment).
 * @throws InvalidArgumentError (bad URL, depth, missing token), TransportUnavailableError (no libfabric, node unreachable), AuthFailedError
 */
export async function runOfiRemote(o: OfiRemoteOptions): Promise<OfiRemoteResult> {
  const { openOfiPool } = await import('../../plugins/rdma/transport.js');
  const { u, port0 } = await checkOfiRemote(o);
  const loadBefore = loadavg();
  const dir = mkdtempSync(join(tmpdir(), 'dmem-ofi-remote-'));
  const token = o.token ?? `bench-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const kmax = Math.max(...o.inflights);
  const skipped: string[] = [];
  const warmupMs = o.warmupMs ?? 300;
  let node: OfiNode | null = null;
  let tcp: ServerProcess | null = null;
  let pool: Pool | null = null;
  const workers: ChildProcess[] = [];
  try {
    node = port0 ? await startNode(u.name, token, dir, u.host) : null;
    const url = node?.url ?? o.url;
    if (o.tcp === false) skipped.push('tcp: not asked for');
    else tcp = await startServerProcess('1GiB');
    pool = await openOfiPool(url, { token, inflight: kmax });
    const p = pool;
    const t = p.transport as OfiTransport;
    const g = p.alloc(4096);
    p.write(g, new Uint8Array(4096));
    const off = offsetOf(g);
    const client = o.ops.some((op) => op !== 'alloc') ? buildClient(dir) : null;
    if (client !== null && 'skip' in client) skipped.push(`ofi-c: ${client.skip}`);
    if (o.ops.includes('alloc')) skipped.push('ofi-c alloc: the C client has no allocator (alloc is the Wasm core\'s)');
    const nodeCpu = (): number => (node === null ? NaN : processCpuUs(node.pid));
    const runs = new Map<string, OfiRemoteRow[]>();
    const add = (r: OfiRemoteRow): void => {
      const k = `${r.system}:${r.op}:${r.inflight}`;
      runs.set(k, [...(runs.get(k) ?? []), r]);
      o.onRow?.(r);
    };
    const row = (system: OfiRemoteSystem, op: OfiRemoteOp, inflight: number, conns: number, lat: Float64Array, seconds: number,
      srvUs: number, cliUs: number): OfiRemoteRow => {
      lat.sort();
      return {
        system, op, bytes: OFI_REMOTE_BYTES[op], inflight, conns, ops: lat.length, opsPerSec: lat.length / seconds,
        p50Us: percentile(lat, 0.5), p99Us: percentile(lat, 0.99),
        serverCpuUsPerOp: Number.isNaN(srvUs) || lat.length === 0 ? null : srvUs / lat.length,
        clientCpuUsPerOp: Number.isNaN(cliUs) || lat.length === 0 ? null : cliUs / lat.length, vsC: null,
      };
    };

    /** K loops on the asynchronous path, each awaiting its previous op. */
    const jsAsync = async (op: OfiRemoteOp, k: number): Promise<OfiRemoteRow> => {
      const samples = new Float64Array(MAX_SAMPLES);
      let n = 0;
      let measuring = false;
      let stop = false;
      const page = new Uint8Array(4096);
      const loop = async (): Promise<void> => {
        const dst = new Uint8Array(8);
        while (!stop) {
          const t0 = performance.now();
          if (op === 'read') await t.readAsync(off, dst);
          else if (op === 'cas') await t.cas64Async(off, 0n, 0n);
          else await t.writeAsync(off, page);
          if (measuring) samples[n++ & (MAX_SAMPLES - 1)] = (performance.now() - t0) * 1000;
        }
      };
      const loops = Array.from({ length: k }, loop);
      await sleep(warmupMs);
      measuring = true;
      const cpu0 = process.cpuUsage();
      const srv0 = nodeCpu();
      const t0 = performance.now();
      await sleep(o.durationMs);
      measuring = false;
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const srv = nodeCpu() - srv0;
      const count = n;
      stop = true;
      await Promise.all(loops);
      return row('ofi-js', op, k, 1, samples.slice(0, Math.min(count, MAX_SAMPLES)), seconds, srv, cpu.user + cpu.system);
    };

    /** The Pool API, synchronous, in this process (K = 1). */
    const poolSync = (op: OfiRemoteOp): OfiRemoteRow => {
      const small = new Uint8Array(8);
      const page = new Uint8Array(4096);
      const one = op === 'read' ? (): void => { p.readInto(g, small); } : op === 'cas' ? (): void => { p.cas(g, 0n, 0n); } : (): void => p.write(g, page);
      for (const end = performance.now() + warmupMs; performance.now() < end;) one();
      const lat: number[] = [];
      const cpu0 = process.cpuUsage();
      const srv0 = nodeCpu();
      const t0 = performance.now();
      for (let now = t0, end = t0 + o.durationMs; now < end;) {
        one();
        const tt = performance.now();
        lat.push((tt - now) * 1000);
        now = tt;
      }
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      return row('ofi-pool', op, 1, 1, Float64Array.from(lat), seconds, nodeCpu() - srv0, cpu.user + cpu.system);
    };

    /** alloc + free in K client processes at once. */
    const allocProcs = async (k: number): Promise<OfiRemoteRow> => {
      const worker = fileURLToPath(new URL('./ofi-alloc-worker.js', import.meta.url));
      while (workers.length < k) {
        const w = fork(worker, [url, String(workers.length + 1)], { env: { ...process.env, DMEM_OFI_TOKEN: token }, stdio: 'inherit' });
        workers.push(w);
        await message(w);
      }
      const srv0 = nodeCpu();
      const replies = workers.slice(0, k).map((w) => message<AllocRunReport>(w));
      for (const w of workers.slice(0, k)) w.send({ warmupMs, durationMs: o.durationMs });
      const rs = await Promise.all(replies);
      const srv = nodeCpu() - srv0;
      const lat = Float64Array.from(rs.flatMap((r) => r.latUs));
      const r = row('ofi-pool', 'alloc', k, k, lat, 1, srv, rs.reduce((a, x) => a + x.cpuUs, 0));
      r.opsPerSec = rs.reduce((a, x) => a + x.ops / x.seconds, 0);
      return r;
    };

    /** The C client on the same node and key, `count` ops, K in flight. */
    const cRun = async (path: string, op: OfiRemoteOp, k: number, count: number): Promise<OfiRemoteRow> => {
      const srv0 = nodeCpu();
      const { stdout } = await promisify(execFile)(path, [
        t.target.prov, t.target.host, Buffer.from(t.target.addr).toString('hex'), t.target.key.toString(), String(t.target.base),
        String(off), C_OPS[op], String(count), String(k),
      ], { encoding: 'utf8' });
      const srv = nodeCpu() - srv0;
      const j = JSON.parse(stdout) as { ops_per_s: number; p50_ns: number; p99_ns: number; count: number };
      return {
        system: 'ofi-c', op, bytes: OFI_REMOTE_BYTES[op], inflight: k, conns: 1, ops: j.count, opsPerSec: j.ops_per_s,
        p50Us: j.p50_ns / 1000, p99Us: j.p99_ns / 1000, serverCpuUsPerOp: Number.isNaN(srv) ? null : srv / j.count, clientCpuUsPerOp: null, vsC: null,
      };
    };

    for (let rep = 0; rep < o.reps; rep++) {
      for (const op of o.ops) {
        for (const k of o.inflights) {
          if (op === 'alloc') {
            add(await allocProcs(k));
          } else {
            const js = await jsAsync(op, k);
            add(js);
            if (k === 1) add(poolSync(op));
            if (client !== null && 'path' in client) add(await cRun(client.path, op, k, Math.round(Math.min(2e6, Math.max(1000, js.opsPerSec * o.durationMs / 1000)))));
          }
          if (tcp !== null) {
            const r = await runRemoteBench({
              url: tcp.url, token: tcp.token, serverPid: tcp.pid, op, bytes: OFI_REMOTE_BYTES[op], inflight: k, conns: 1, durationMs: o.durationMs, warmupMs,
            });
            const { meanUs: _mean, system: _dmem, ...same } = r;
            add({ ...same, system: 'tcp', op, bytes: OFI_REMOTE_BYTES[op], vsC: null });
          }
        }
      }
    }
    p.free(g);
    const rows = [...runs.values()].map((rs): OfiRemoteRow => ({
      ...rs[0], ops: median(rs.map((r) => r.ops)), opsPerSec: median(rs.map((r) => r.opsPerSec)), p50Us: median(rs.map((r) => r.p50Us)),
      p99Us: median(rs.map((r) => r.p99Us)), serverCpuUsPerOp: medianOrNull(rs.map((r) => r.serverCpuUsPerOp)),
      clientCpuUsPerOp: medianOrNull(rs.map((r) => r.clientCpuUsPerOp)),
    }));
    for (const r of rows) {
      const c = rows.find((x) => x.system === 'ofi-c' && x.op === r.op && x.inflight === r.inflight);
      if (c !== undefined && r.system !== 'ofi-c') r.vsC = r.opsPerSec / c.opsPerSec;
    }
    return { url, tcpUrl: tcp?.url ?? null, rows, skipped, loadBefore, loadAfter: loadavg() };
  } finally {
    for (const w of workers) if (w.connected) w.send('exit');
    await Promise.all(workers.map((w) => (w.exitCode !== null ? null : new Promise((r) => {
      const t = setTimeout(() => w.kill('SIGKILL'), 5000);
      w.once('exit', () => { clearTimeout(t); r(null); });
    }))));
    try {
      pool?.close();
    } catch { /* a broken transport: the nodes below must still stop */ }
    await tcp?.stop();
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function medianOrNull(xs: Array<number | null>): number | null {
  return xs.some((x) => x === null) ? null : median(xs as number[]);
}

function message<T>(c: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null): void => reject(new DmemError('BENCH_WORKER', `an ofi bench client process exited with ${code} (see its error above)`));
    c.once('message', (m) => { c.off('exit', onExit); resolve(m as T); });
    c.once('exit', onExit);
  });
}
