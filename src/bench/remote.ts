/**
 * `dmem bench remote`: throughput and latency of a pool served over TCP
 * (server-side mode, src/transports/tcp/), and the same shape against
 * redis-server with redis-benchmark in the same script.
 *
 * One run: C connections (each its own RemotePool, so its own client slot
 * on the server), K requests in flight on each (K loops, each awaiting its
 * previous request), for a fixed time after a warm-up. An op is one request
 * (read, write, cas) or one pair (alloc+free, heap alloc+free: two requests,
 * counted as one op). Latency is per op, performance.now() around it.
 *
 * Redis is the matching shape: `redis-benchmark -t get,set -d 64 -c C -P K`
 * (C connections, K pipelined): 64 B GET against a 64 B read, 64 B SET
 * against a 64 B write.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { DmemError } from '../errors.js';
import { openTcpPool } from '../transports/tcp/index.js';
import type { RemotePool } from '../transports/tcp/client.js';
import { median, percentile } from './percentile.js';

/** What `runRemoteBench` measures. */
export type RemoteOp = 'read' | 'write' | 'cas' | 'alloc' | 'heap';

export interface RemoteBenchOptions {
  url: string;
  token?: string | Buffer;
  op: RemoteOp;
  /** Bytes per read / write / alloc / heap object (cas: always 8). */
  bytes: number;
  /** Requests in flight per connection. */
  inflight: number;
  conns: number;
  /** Measured time (ms, default 2000), after `warmupMs` (default 300). */
  durationMs?: number;
  warmupMs?: number;
  /** The server's pid on this host, to report its CPU time per op. */
  serverPid?: number;
}

/** One run's result. Latencies in microseconds. */
export interface RemoteBenchResult {
  system: 'dmem' | 'redis';
  op: string;
  bytes: number;
  inflight: number;
  conns: number;
  ops: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  /**
   * CPU time per op (us, user + system) of the server process and of the
   * client process over the measured window; null when not measured (the
   * server's CPU needs its pid on this host). Less disturbed by other load
   * on the machine than ops/s.
   */
  serverCpuUsPerOp: number | null;
  clientCpuUsPerOp: number | null;
}

/** CPU time (us, user + system) a process of this host has used, from /proc/PID/stat; NaN when unreadable. */
export function processCpuUs(pid: number): number {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name, in clock ticks (100 per second on Linux).
    return (Number(rest[11]) + Number(rest[12])) * 10_000;
  } catch {
    return NaN;
  }
}

const MAX_SAMPLES = 1 << 21;

/**
 * Runs one measurement against a running server.
 * @throws TransportUnavailableError, AuthFailedError (no server / bad token), PoolExhaustedError
 */
export async function runRemoteBench(o: RemoteBenchOptions): Promise<RemoteBenchResult> {
  const pools: RemotePool[] = [];
  try {
    for (let i = 0; i < o.conns; i++) pools.push(await openTcpPool(o.url, { token: o.token }));
    const bytes = o.op === 'cas' ? 8 : o.bytes;
    const targets = o.op === 'alloc' || o.op === 'heap' ? [] : await Promise.all(pools.map((p) => p.alloc(Math.max(8, bytes))));
    const payload = new Uint8Array(bytes).fill(0x5A);
    const samples = new Float64Array(MAX_SAMPLES);
    let n = 0;
    let measuring = false;
    let stop = false;
    const one = (p: RemotePool, target: number): Promise<unknown> => {
      switch (o.op) {
        case 'read': return p.read(target, bytes);
        case 'write': return p.write(target, payload);
        case 'cas': return p.cas(target, 0n, 0n);
        case 'alloc': return p.alloc(bytes).then((g) => p.free(g));
        default: return p.heap.alloc(bytes).then((g) => p.heap.free(g));
      }
    };
    const loop = async (p: RemotePool, target: number): Promise<void> => {
      while (!stop) {
        const t0 = performance.now();
        await one(p, target);
        if (measuring) samples[n++ & (MAX_SAMPLES - 1)] = performance.now() - t0;
      }
    };
    const loops: Promise<void>[] = [];
    pools.forEach((p, i) => { for (let k = 0; k < o.inflight; k++) loops.push(loop(p, targets[i] ?? 0)); });
    await sleep(o.warmupMs ?? 300);
    measuring = true;
    const t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const srv0 = o.serverPid === undefined ? NaN : processCpuUs(o.serverPid);
    await sleep(o.durationMs ?? 2000);
    measuring = false;
    const seconds = (performance.now() - t0) / 1000;
    const ops = n;
    const cpu = process.cpuUsage(cpu0);
    const srv = o.serverPid === undefined ? NaN : processCpuUs(o.serverPid) - srv0;
    stop = true;
    await Promise.all(loops);
    const sorted = samples.slice(0, Math.min(n, MAX_SAMPLES)).sort();
    let sum = 0;
    for (let i = 0; i < sorted.length; i++) sum += sorted[i];
    return {
      system: 'dmem', op: o.op, bytes, inflight: o.inflight, conns: o.conns, ops, opsPerSec: ops / seconds,
      p50Us: percentile(sorted, 0.5) * 1000, p99Us: percentile(sorted, 0.99) * 1000, meanUs: sorted.length ? (sum / sorted.length) * 1000 : 0,
      serverCpuUsPerOp: Number.isNaN(srv) || ops === 0 ? null : srv / ops,
      clientCpuUsPerOp: ops === 0 ? null : (cpu.user + cpu.system) / ops,
    };
  } finally {
    await Promise.all(pools.map((p) => p.close().catch(() => 0)));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A free loopback TCP port (bound and released; another process could take it in between). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', () => resolve()));
  const a = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return typeof a === 'object' && a !== null ? a.port : 0;
}

/** A `dmem server --listen` child process on a temporary shm pool. */
export interface ServerProcess { url: string; token: string; pid: number; stop(): Promise<void> }

/**
 * Starts `dmem server --listen 127.0.0.1:0` in a child process on a new
 * temporary shm pool of `size`, with a random token; stop() ends it and
 * removes the pool.
 */
export async function startServerProcess(size = '1GiB', clients = 1024): Promise<ServerProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'dmem-bench-remote-'));
  const token = `bench-${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(join(dir, 'token'), token);
  const main = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const child = spawn(process.execPath, [
    main, 'server', '--pool', `dmem-bench-remote-${process.pid}`, '--size', size, '--clients', String(clients),
    '--listen', '127.0.0.1:0', '--token-file', join(dir, 'token'), '--remove-on-exit', '--json',
  ], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.once('line', (l) => {
      try {
        resolve((JSON.parse(l) as { url: string }).url);
      } catch {
        reject(new DmemError('BENCH_SERVER', `dmem server printed ${l}`));
      }
    });
    child.once('exit', (code) => reject(new DmemError('BENCH_SERVER', `dmem server exited with ${code} before it was up`)));
  });
  return {
    url, token, pid: child.pid!,
    stop: async () => {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await gone;
  clearTimeout(t);
}

/** redis-server and redis-benchmark, or the reason they cannot run. */
export function redisAvailable(): string | null {
  for (const bin of ['redis-server', 'redis-benchmark']) {
    if (spawnSync(bin, ['--version'], { stdio: 'ignore' }).status !== 0) return `${bin} is not installed (apt-get install redis-server redis-tools)`;
  }
  return null;
}

/** A redis-server on a free loopback port, without persistence. */
export async function startRedis(): Promise<{ port: number; pid: number; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    if (spawnSync('redis-cli', ['-p', String(port), 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG') break;
    await sleep(50);
  }
  return { port, pid: child.pid!, stop: () => stopChild(child) };
}

/**
 * redis-benchmark -t get,set -d BYTES -c CONNS -P PIPELINE -n REQUESTS --csv
 * against `port`. @returns the GET and SET rows
 */
export function runRedisBenchmark(port: number, bytes: number, conns: number, pipeline: number, requests: number, serverPid?: number): RemoteBenchResult[] {
  const out: RemoteBenchResult[] = [];
  // One test per run, so each one's CPU time (bash's `time` for redis-benchmark, /proc for the server) is its own.
  for (const t of ['set', 'get']) {
    const srv0 = serverPid === undefined ? NaN : processCpuUs(serverPid);
    const r = spawnSync('bash', ['-c', 'TIMEFORMAT="cpu %U %S"; time redis-benchmark "$@"', 'redis-benchmark',
      '-p', String(port), '-t', t, '-d', String(bytes), '-c', String(conns), '-P', String(pipeline), '-n', String(requests), '--csv', '-q',
    ], { encoding: 'utf8' });
    const srv = serverPid === undefined ? NaN : processCpuUs(serverPid) - srv0;
    if (r.status !== 0) throw new DmemError('BENCH_REDIS', `redis-benchmark failed: ${r.stderr}`);
    const cpu = /cpu ([\d.]+) ([\d.]+)/.exec(r.stderr);
    for (const line of r.stdout.split('\n')) {
      const f = line.split(',').map((x) => x.replace(/"/g, ''));
      if (f[0] !== 'GET' && f[0] !== 'SET') continue;
      out.push({
        system: 'redis', op: f[0].toLowerCase(), bytes, inflight: pipeline, conns, ops: requests, opsPerSec: Number(f[1]),
        p50Us: Number(f[4]) * 1000, p99Us: Number(f[6]) * 1000, meanUs: Number(f[2]) * 1000,
        serverCpuUsPerOp: Number.isNaN(srv) ? null : srv / requests,
        clientCpuUsPerOp: cpu ? ((Number(cpu[1]) + Number(cpu[2])) * 1e6) / requests : null,
      });
    }
  }
  return out;
}

/** One row of the comparison table: medians over the repetitions. */
export interface RemoteTableRow extends RemoteBenchResult {
  /** dmem read / redis GET or dmem write / redis SET at the same shape (ops/s), when both ran. */
  vsRedis: number | null;
}

/** The rows of the standard table: [op, bytes]. */
export const TABLE_SHAPES: ReadonlyArray<readonly [RemoteOp, number]> = [
  ['read', 64], ['write', 64], ['cas', 8], ['write', 4096], ['alloc', 4096], ['heap', 64],
];

/**
 * The table: every shape at 1 and 16 in flight over `conns`
 * connections, and redis-benchmark GET/SET 64 B at -P 1 and -P 16,
 * interleaved, `reps` times; medians.
 * @param onRow called with each repetition's result as it comes (progress)
 */
export async function runRemoteTable(o: {
  url: string; token?: string; serverPid?: number; conns: number; inflights: number[]; reps: number; durationMs: number; redis: boolean;
  onRow?: (r: RemoteBenchResult) => void;
}): Promise<{ rows: RemoteTableRow[]; redisSkipped: string | null }> {
  const runs = new Map<string, RemoteBenchResult[]>();
  const add = (r: RemoteBenchResult): void => {
    const k = `${r.system}:${r.op}:${r.bytes}:${r.inflight}`;
    runs.set(k, [...(runs.get(k) ?? []), r]);
    o.onRow?.(r);
  };
  const redisSkipped = o.redis ? redisAvailable() : 'not asked for (--no-redis)';
  const redis = redisSkipped === null ? await startRedis() : null;
  try {
    for (let rep = 0; rep < o.reps; rep++) {
      for (const k of o.inflights) {
        for (const [op, bytes] of TABLE_SHAPES) add(await runRemoteBench({ url: o.url, token: o.token, serverPid: o.serverPid, op, bytes, inflight: k, conns: o.conns, durationMs: o.durationMs }));
        if (redis) {
          // About as long as one dmem run per op.
          const requests = Math.max(10_000, Math.round((k === 1 ? 60_000 : 400_000) * o.durationMs / 2000));
          for (const r of runRedisBenchmark(redis.port, 64, o.conns, k, requests, redis.pid)) add(r);
        }
      }
    }
  } finally {
    await redis?.stop();
  }
  const rows: RemoteTableRow[] = [];
  const medOrNull = (xs: Array<number | null>): number | null => (xs.some((x) => x === null) ? null : median(xs as number[]));
  const med = (rs: RemoteBenchResult[]): RemoteBenchResult => ({
    ...rs[0], ops: median(rs.map((r) => r.ops)), opsPerSec: median(rs.map((r) => r.opsPerSec)),
    p50Us: median(rs.map((r) => r.p50Us)), p99Us: median(rs.map((r) => r.p99Us)), meanUs: median(rs.map((r) => r.meanUs)),
    serverCpuUsPerOp: medOrNull(rs.map((r) => r.serverCpuUsPerOp)), clientCpuUsPerOp: medOrNull(rs.map((r) => r.clientCpuUsPerOp)),
  });
  for (const rs of runs.values()) rows.push({ ...med(rs), vsRedis: null });
  for (const r of rows) {
    if (r.system !== 'dmem' || r.bytes !== 64 || (r.op !== 'read' && r.op !== 'write')) continue;
    const peer = rows.find((x) => x.system === 'redis' && x.op === (r.op === 'read' ? 'get' : 'set') && x.inflight === r.inflight);
    if (peer) r.vsRedis = r.opsPerSec / peer.opsPerSec;
  }
  return { rows, redisSkipped };
}

/** What `runScaleBench` saw. */
export interface ScaleResult {
  connections: number;
  /** Time to open them all (ms), 50 at a time. */
  openMs: number;
  /** Time for every connection to alloc 4 KiB and free it, all at once (ms). */
  allocFreeMs: number;
  /** Server resident memory before and with every connection open (bytes, /proc/PID/status VmRSS). */
  serverRssBefore: number;
  serverRssAfter: number;
  /** (after - before) / connections (bytes). */
  rssPerConnection: number;
  /** Server virtual size growth per connection (bytes; each session's Wasm memory is reserved here). */
  vmPerConnection: number;
  /** Sessions the server held, all distinct client slots. */
  distinctClients: number;
}

function procStatus(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/**
 * Opens `n` connections (each its own client slot) to a `dmem server
 * --listen` child process on a pool with n + 64 slots, has each alloc and
 * free, and reads what the server process grew by.
 */
export async function runScaleBench(n: number): Promise<ScaleResult> {
  const server = await startServerProcess('1GiB', Math.min(4093, n + 64));
  const pools: RemotePool[] = [];
  try {
    await sleep(500);
    const rss0 = procStatus(server.pid, 'VmRSS');
    const vm0 = procStatus(server.pid, 'VmSize');
    let t = performance.now();
    for (let i = 0; i < n; i += 50) {
      pools.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => openTcpPool(server.url, { token: server.token }))));
    }
    const openMs = performance.now() - t;
    t = performance.now();
    const gs = await Promise.all(pools.map((p) => p.alloc(4096)));
    await Promise.all(pools.map((p, i) => p.free(gs[i])));
    const allocFreeMs = performance.now() - t;
    await sleep(200);
    const rss1 = procStatus(server.pid, 'VmRSS');
    const vm1 = procStatus(server.pid, 'VmSize');
    return {
      connections: n, openMs, allocFreeMs, serverRssBefore: rss0, serverRssAfter: rss1,
      rssPerConnection: (rss1 - rss0) / n, vmPerConnection: (vm1 - vm0) / n,
      distinctClients: new Set(pools.map((p) => p.clientId)).size,
    };
  } finally {
    for (let i = 0; i < pools.length; i += 100) await Promise.all(pools.slice(i, i + 100).map((p) => p.close().catch(() => 0)));
    await server.stop();
  }
}
