/**
 * `dmem bench ofi`: one-sided operations over libfabric, from JS (the
 * OfiTransport through koffi, and the Wasm core for alloc+free) and from a
 * small C client (bench/peers/ofi_client.c, built here with gcc against
 * libfabric) on the same memory node and the same memory registration, so
 * the cost of the FFI + JS + Wasm path is the difference of the two.
 *
 * Operations: 8 B read (fi_read), 8 B CAS (fi_compare_atomic), 4 KiB write
 * (fi_write), each through the Pool API (`js`: the core first checks that
 * the range lies in an allocated block, which reads pool metadata) and
 * through the OfiTransport alone (`js-transport`), and alloc+free of one 4 KiB block (JS only: the allocator is
 * the Wasm core; one pair counts as one operation). JS runs with one
 * operation in flight (the synchronous transport the core uses; the
 * asynchronous path with K in flight is measured by `dmem bench remote
 * --url ofi+...`, src/bench/ofi-remote.ts); the C client runs
 * with 1 and with `inflight` (default 16). Each repetition runs every
 * (side, op) once, interleaved, and the reported figures are the medians
 * over repetitions.
 */
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { TransportUnavailableError } from '../errors.js';
import type { Pool } from '../pool.js';
import { offsetOf } from '../gaddr.js';
import { median, percentile } from './percentile.js';

/** Options of `runOfiBench`. */
export interface OfiBenchOptions {
  /** An existing memory node (`ofi+tcp://HOST:PORT`) and its token; default: start one on 127.0.0.1. */
  url?: string;
  token?: string;
  /** Provider of the node started here (default tcp). */
  provider?: string;
  /** Operations per measurement (default 5000). */
  ops?: number;
  /** Repetitions (default 3). */
  reps?: number;
  /** In-flight depth of the C client's second run (default 16). */
  inflight?: number;
}

/** One measured row (medians over repetitions). */
export interface OfiBenchRow {
  /** `js`: the Pool API (address check in the core + transport); `js-transport`: OfiTransport alone; `c`: bench/peers/ofi_client.c. */
  side: 'js' | 'js-transport' | 'c';
  op: 'read8' | 'cas8' | 'write4k' | 'alloc+free';
  inflight: number;
  opsPerSec: number;
  p50Us: number;
  p99Us: number;
}

/** The run's rows, and why the C side is missing if it is. */
export interface OfiBenchResult {
  url: string;
  provider: string;
  rows: OfiBenchRow[];
  cSkipped: string | null;
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CLIENT_SRC = join(ROOT, 'bench/peers/ofi_client.c');

/** Builds the C client into `dir`; returns its path, or why it cannot be built. */
export function buildClient(dir: string): { path: string } | { skip: string } {
  if (!existsSync(CLIENT_SRC)) return { skip: `${CLIENT_SRC} not found` };
  if (spawnSync('gcc', ['--version']).status !== 0) return { skip: 'gcc not found (apt-get install gcc)' };
  if (!existsSync('/usr/include/rdma/fabric.h')) return { skip: 'libfabric headers not found (apt-get install libfabric-dev)' };
  const path = join(dir, 'ofi_client');
  try {
    execFileSync('gcc', ['-O2', '-o', path, CLIENT_SRC, '-lfabric'], { stdio: 'pipe' });
  } catch (e) {
    return { skip: `gcc failed: ${String((e as { stderr?: Buffer }).stderr ?? e).slice(0, 300)}` };
  }
  return { path };
}

/** A memory node started here: its URL, pid and a stop function. */
export interface OfiNode { url: string; pid: number; stop: () => Promise<void> }

/** Starts `dmem server --transport ofi` on a temporary pool listening on `host`, port 0; resolves once it printed its URL. */
export async function startNode(provider: string, token: string, dir: string, host = '127.0.0.1'): Promise<OfiNode> {
  const name = `dmem-bench-ofi-${process.pid}`;
  const tokenFile = join(dir, 'token');
  writeFileSync(tokenFile, token);
  const cli = join(ROOT, 'dist/src/cli/main.js');
  const proc = spawn(process.execPath, [cli, 'server', '--pool', name, '--size', '256MiB', '--transport', 'ofi', '--provider', provider,
    '--listen', `${host.includes(':') ? `[${host}]` : host}:0`, '--token-file', tokenFile, '--json', '--remove-on-exit', '--lease-ms', '10000'], { stdio: ['ignore', 'pipe', 'ignore'] });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', (l) => resolve((JSON.parse(l) as { url: string }).url));
    proc.once('exit', (code) => reject(new TransportUnavailableError(`the ofi memory node exited with ${code} before starting`)));
  });
  return {
    url, pid: proc.pid!,
    stop: async () => {
      if (proc.exitCode !== null) return;
      const done = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await done;
    },
  };
}

/** Times `n` calls of `fn` one by one (µs per call) and returns [ops/s, p50 µs, p99 µs]. */
function timeJs(n: number, fn: () => void): [number, number, number] {
  const lat = new Float64Array(n);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const s = performance.now();
    fn();
    lat[i] = performance.now() - s;
  }
  const total = performance.now() - t0;
  lat.sort();
  return [(n * 1000) / total, percentile(lat, 0.5) * 1000, percentile(lat, 0.99) * 1000];
}

/**
 * Runs the benchmark (see the file comment).
 * @throws TransportUnavailableError when libfabric or the provider is missing, or the node cannot be reached
 */
export async function runOfiBench(opts: OfiBenchOptions = {}): Promise<OfiBenchResult> {
  const { openOfiPool } = await import('../../plugins/rdma/transport.js');
  const ops = opts.ops ?? 5000;
  const reps = opts.reps ?? 3;
  const depth = opts.inflight ?? 16;
  const dir = mkdtempSync(join(tmpdir(), 'dmem-ofi-bench-'));
  const token = opts.token ?? `bench-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const node = opts.url === undefined ? await startNode(opts.provider ?? 'tcp', token, dir) : null;
  const url = opts.url ?? node!.url;
  let pool: Pool | null = null;
  try {
    pool = await openOfiPool(url, { token });
    const p = pool;
    const t = p.transport as import('../../plugins/rdma/transport.js').OfiTransport;
    const client = buildClient(dir);
    const g = p.alloc(4096);
    p.write(g, new Uint8Array(4096));
    const offset = offsetOf(g);
    const small = new Uint8Array(8);
    const page = new Uint8Array(4096);
    const js: Record<string, () => void> = {
      read8: () => p.readInto(g, small),
      cas8: () => { p.cas(g, 0n, 0n); },
      write4k: () => p.write(g, page),
      'alloc+free': () => p.free(p.allocClass(0)),
    };
    const raw: Record<string, () => void> = {
      read8: () => { t.load64(offset); },
      cas8: () => { t.cas64(offset, 0n, 0n); },
      write4k: () => t.write(offset, page),
    };
    const samples = new Map<string, Array<[number, number, number]>>();
    const add = (key: string, v: [number, number, number]): void => { samples.set(key, [...(samples.get(key) ?? []), v]); };
    for (let r = 0; r < reps; r++) {
      for (const op of ['read8', 'cas8', 'write4k', 'alloc+free'] as const) {
        add(`js ${op} 1`, timeJs(ops, js[op]));
        if (op === 'alloc+free') continue;
        add(`js-transport ${op} 1`, timeJs(ops, raw[op]));
        if (!('path' in client)) continue;
        for (const inflight of depth > 1 ? [1, depth] : [1]) {
          const out = execFileSync(client.path, [
            t.target.prov, t.target.host, Buffer.from(t.target.addr).toString('hex'), t.target.key.toString(), String(t.target.base),
            String(offset), op, String(ops), String(inflight),
          ], { encoding: 'utf8' });
          const j = JSON.parse(out) as { ops_per_s: number; p50_ns: number; p99_ns: number };
          add(`c ${op} ${inflight}`, [j.ops_per_s, j.p50_ns / 1000, j.p99_ns / 1000]);
        }
      }
    }
    const rows: OfiBenchRow[] = [];
    for (const [key, v] of samples) {
      const [side, op, inflight] = key.split(' ');
      rows.push({
        side: side as OfiBenchRow['side'], op: op as OfiBenchRow['op'], inflight: Number(inflight),
        opsPerSec: median(v.map((x) => x[0])), p50Us: median(v.map((x) => x[1])), p99Us: median(v.map((x) => x[2])),
      });
    }
    p.free(g);
    return { url, provider: t.target.prov, rows, cSkipped: 'skip' in client ? client.skip : null };
  } finally {
    try {
      pool?.close();
    } catch { /* a broken transport: the nodes below must still stop */ }
    await node?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Options of `runOfiFrag`. */
export interface OfiFragOptions {
  provider?: string;
  /** Client process counts to run, in order (default [1, 2]). */
  procs?: number[];
  /** Blocks each process holds (N, default 1000), freed and allocated per epoch (M, default 250), epochs (default 8). */
  blocks?: number;
  churn?: number;
  epochs?: number;
  /** Repetitions (default 3); rows are medians. */
  reps?: number;
}

/** One frag row: medians over repetitions. */
export interface OfiFragRow {
  procs: number;
  /** Allocations per second per process while filling (median over processes and repetitions). */
  fillAllocsPerSec: number;
  /** Frees + allocations per second of all processes together during the epochs. */
  churnOpsPerSec: number;
  casRetries: number;
  opsPerAlloc: number;
  opsPerFree: number;
}

/**
 * FineMem's frag pattern on class 0 (4 KiB), one-sided over ofi, with 1 and
 * 2 client processes on a memory node started here on 127.0.0.1
 * (src/bench/ofi-frag-worker.ts); process counts interleaved per repetition.
 * @throws TransportUnavailableError when libfabric or the provider is missing
 */
export async function runOfiFrag(opts: OfiFragOptions = {}): Promise<OfiFragRow[]> {
  const { fork } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'dmem-ofi-frag-'));
  const token = `frag-${process.pid}-${Math.random().toString(36).slice(2)}`;
  const node = await startNode(opts.provider ?? 'tcp', token, dir);
  const worker = fileURLToPath(new URL('./ofi-frag-worker.js', import.meta.url));
  const runs = new Map<number, Array<{ fill: number; churn: number; retries: number; perAlloc: number; perFree: number }>>();
  try {
    for (let r = 0; r < (opts.reps ?? 3); r++) {
      for (const procs of opts.procs ?? [1, 2]) {
        const kids = Array.from({ length: procs }, (_, i) => fork(worker, [node.url, String(r * 100 + i + 1), String(opts.blocks ?? 1000), String(opts.churn ?? 250), String(opts.epochs ?? 8)], {
          env: { ...process.env, DMEM_OFI_TOKEN: token }, stdio: 'inherit',
        }));
        try {
          const msg = <T>(k: (typeof kids)[number]): Promise<T> => new Promise((resolve, reject) => {
            k.once('message', (m) => resolve(m as T));
            k.once('exit', (code) => reject(new Error(`frag worker exited with ${code}`)));
          });
          await Promise.all(kids.map((k) => msg(k)));
          const done = kids.map((k) => msg<{ fillAllocsPerS: number; churnOpsPerS: number; casRetries: number; opsPerAlloc: number; opsPerFree: number }>(k));
          for (const k of kids) k.send('go');
          const rs = await Promise.all(done);
          runs.set(procs, [...(runs.get(procs) ?? []), {
            fill: median(rs.map((x) => x.fillAllocsPerS)), churn: rs.reduce((a, x) => a + x.churnOpsPerS, 0),
            retries: rs.reduce((a, x) => a + x.casRetries, 0), perAlloc: median(rs.map((x) => x.opsPerAlloc)), perFree: median(rs.map((x) => x.opsPerFree)),
          }]);
        } finally {
          for (const k of kids) if (k.exitCode === null) k.kill('SIGKILL');
        }
      }
    }
  } finally {
    await node.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return [...runs].map(([procs, v]) => ({
    procs, fillAllocsPerSec: median(v.map((x) => x.fill)), churnOpsPerSec: median(v.map((x) => x.churn)),
    casRetries: median(v.map((x) => x.retries)), opsPerAlloc: median(v.map((x) => x.perAlloc)), opsPerFree: median(v.map((x) => x.perFree)),
  }));
}
