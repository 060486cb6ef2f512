/**
 * The chaos run (issue 9, "Tests"; `dmem bench chaos --events N`): several
 * client processes churn stamped blocks and heap objects on one shm pool
 * under a running lease monitor with a short lease, while a driver sends
 * random events — SIGSTOP/SIGCONT pauses, most longer than the lease (the
 * paused client is revoked and must stay harmless when it resumes), and
 * kill -9 — replacing every client that dies or finds itself fenced. One
 * more client (the survivor) is never touched and checks all of its stamps
 * on every pass. At the end every paused client is resumed, everyone is
 * stopped, the monitor reclaims what the dead and the fenced held, and the
 * run reports double holds (stamps found overwritten), lost stamps, leaked
 * chunks and fsck's verdict.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { removeShm } from '../../plugins/cxl-shm/index.js';
import { LeaseMonitor } from '../monitor.js';
import { openPool } from '../pool.js';
import { Prng } from './prng.js';

/** Options of `runChaos`. */
export interface ChaosOptions {
  /** Events to send (pauses and kills), >= 1. */
  events: number;
  /** Churning clients (besides the survivor), default 4. */
  clients?: number;
  /** The pool's lease in ms (default 300). */
  leaseMs?: number;
  /** Pool size in bytes (default 128 MiB). */
  poolBytes?: number;
  seed?: number;
  /** Called after every event with the count so far (progress). */
  onEvent?: (done: number) => void;
}

/** What a chaos run saw. */
export interface ChaosResult {
  events: number;
  pauses: number;
  /** Pauses longer than the lease (the client was revoked while stopped). */
  pausesPastLease: number;
  kills: number;
  /** Clients that resumed to find themselves fenced (LeaseExpiredError) and were replaced. */
  fenced: number;
  recoveries: number;
  /** Orphan units (allocated, owned by no live client) the monitor's grace sweep freed. */
  orphansFreed: number;
  /** Allocations the pool had no room for (skipped; a small `poolBytes` makes them happen, after every block cache was flushed and stolen). */
  exhausted: number;
  /** Stamps found overwritten: a block or object held by two clients at once. */
  doubleHolds: number;
  /** Errors other than being fenced, from any client (should be none). */
  errors: string[];
  /** Chunks still held after everyone stopped and was recovered (should be 0). */
  leakedChunks: number;
  orphanChunks: number;
  fsckClean: boolean;
  /** Allocations and checks the survivor made (it never paused or died). */
  survivorChecks: number;
  durationMs: number;
  seed: number;
}

const WORKER = fileURLToPath(new URL('./chaos-worker.js', import.meta.url));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Worker { proc: ChildProcess; exited: boolean; paused: boolean }

/**
 * Runs the chaos scenario on a temporary pool (removed at the end).
 * @throws DmemError from opening the pool; a worker that never starts
 */
export async function runChaos(opts: ChaosOptions): Promise<ChaosResult> {
  const seed = opts.seed ?? (Date.now() >>> 0);
  const rng = new Prng(seed);
  const lease = opts.leaseMs ?? 300;
  const name = `chaos-${process.pid}-${seed}`;
  const admin = await openPool(`shm:${name}`, { size: opts.poolBytes ?? 128 * 2 ** 20 });
  const t0 = performance.now();
  const r: ChaosResult = {
    events: 0, pauses: 0, pausesPastLease: 0, kills: 0, fenced: 0, recoveries: 0, orphansFreed: 0, exhausted: 0, doubleHolds: 0, errors: [],
    leakedChunks: 0, orphanChunks: 0, fsckClean: false, survivorChecks: 0, durationMs: 0, seed,
  };
  const workers = new Set<Worker>();
  let sweeping = true;
  let workerSeed = seed;
  let loop: Promise<void> = Promise.resolve();
  try {
    admin.setLeaseMs(lease);
    const monitor = new LeaseMonitor(admin, { onRecovery: () => { r.recoveries++; } });
    loop = (async () => {
      while (sweeping) {
        try { r.orphansFreed += monitor.sweep().orphansFreed; } catch (e) { r.errors.push(`monitor: ${String(e)}`); }
        await sleep(lease / 4);
      }
    })();

    const spawnWorker = async (mode: 'churn' | 'survive'): Promise<Worker> => {
      const proc = fork(WORKER, [name, mode, String(++workerSeed)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const w: Worker = { proc, exited: false, paused: false };
      workers.add(w);
      const ready = new Promise<void>((resolve, reject) => {
        proc.on('message', (raw) => {
          const m = raw as { type: string; detail?: string; code?: string; message?: string; checks?: number };
          if (m.type === 'ready') resolve();
          else if (m.type === 'mismatch') { r.doubleHolds++; r.errors.push(String(m.detail)); }
          else if (m.type === 'fenced' && mode === 'survive') r.errors.push('the survivor, never paused, was fenced: the machine starved it past its lease (use a longer --lease-ms)');
          else if (m.type === 'fenced') r.fenced++;
          else if (m.type === 'exhausted') r.exhausted++;
          else if (m.type === 'error') r.errors.push(`${m.code}: ${m.message}`);
          else if (m.type === 'done' && mode === 'survive') r.survivorChecks = m.checks ?? 0;
        });
        proc.once('exit', () => { w.exited = true; workers.delete(w); reject(new Error('worker exited before it was ready')); });
      });
      await ready;
      return w;
    };
    await spawnWorker('survive');
    const churners: Worker[] = [];
    for (let i = 0; i < (opts.clients ?? 4); i++) churners.push(await spawnWorker('churn'));

    const paused: Array<Promise<void>> = [];
    while (r.events < opts.events) {
      await sleep(5 + rng.below(25));
      // Replace every churner that died or was fenced.
      for (let i = 0; i < churners.length; i++) if (churners[i].exited) churners[i] = await spawnWorker('churn');
      const w = churners[rng.below(churners.length)];
      if (w.exited || w.paused) continue;
      r.events++;
      if (rng.below(100) < 30) {
        w.proc.kill('SIGKILL');
        r.kills++;
      } else {
        const ms = Math.floor(lease * (0.2 + rng.below(300) / 100));
        if (ms > lease) r.pausesPastLease++;
        r.pauses++;
        w.paused = true;
        w.proc.kill('SIGSTOP');
        paused.push(sleep(ms).then(() => { if (!w.exited) w.proc.kill('SIGCONT'); w.paused = false; }));
      }
      opts.onEvent?.(r.events);
    }
    await Promise.all(paused);
    const live = [...workers];
    // A worker may have died (kill -9, or fenced and exited) after its last
    // event and before its 'exit' arrives: a send to it fails, and the wait
    // below covers it, so the failure is dropped instead of surfacing as an
    // unhandled EPIPE 'error' of the child process.
    for (const w of live) if (!w.exited && w.proc.connected) w.proc.send('stop', () => { /* see above */ });
    await Promise.all(live.map((w) => (w.exited ? Promise.resolve() : new Promise<void>((res) => w.proc.once('exit', () => res())))));
    if (r.survivorChecks === 0 && !r.errors.some((e) => e.startsWith('the survivor'))) r.errors.push('the survivor did not report');

    // The dead and the fenced are recovered by the monitor; wait for it.
    const deadline = Date.now() + 20 * lease + 5000;
    for (;;) {
      const others = admin.clientSlots().filter((s) => s.id !== admin.clientId && s.state !== 'free');
      const c = admin.census().chunks;
      if ((others.length === 0 && c.held === 0 && c.orphan === 0) || Date.now() > deadline) break;
      await sleep(lease / 4);
    }
    sweeping = false;
    await loop;
    const c = admin.census().chunks;
    r.leakedChunks = c.held;
    r.orphanChunks = c.orphan;
    r.fsckClean = admin.fsck().clean;
  } finally {
    sweeping = false;
    await loop;
    for (const w of workers) w.proc.kill('SIGKILL');
    admin.close();
    removeShm(name);
    r.durationMs = performance.now() - t0;
  }
  return r;
}
