/**
 * The parent's side of a study run: P worker processes (src/study/worker.ts),
 * each given one job, stepped by barriers (all report ready, then all get
 * go) and asked for one result per step. Any worker error or early exit
 * fails the fleet: every pending and later call rejects with that error.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DmemError } from '../errors.js';
import type { StudyJob } from './protocol.js';

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

type Msg = { type: 'ready' } | { type: 'result'; result: unknown } | { type: 'error'; code: string; message: string };

const live = new Set<StudyFleet>();

/** Kills the workers of every fleet of this process (an interrupted run). */
export function killAllFleets(): void {
  for (const f of live) f.kill();
}

/** Study workers, one job each. */
export class StudyFleet {
  private readonly procs: ChildProcess[] = [];
  private readonly queues: Msg[][] = [];
  private readonly waiters: Array<((m: Msg) => void) | null> = [];
  private failure: Error | null = null;
  private readonly failed: Promise<never>;
  private fail!: (e: Error) => void;
  private stopping = false;

  constructor(jobs: readonly StudyJob[]) {
    this.failed = new Promise<never>((_, reject) => { this.fail = (e) => { if (!this.failure) { this.failure = e; reject(e); } }; });
    this.failed.catch(() => {});
    live.add(this);
    jobs.forEach((job, i) => {
      const child = fork(WORKER, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      this.procs.push(child);
      this.queues.push([]);
      this.waiters.push(null);
      child.on('message', (m: Msg) => {
        if (m.type === 'error') { this.fail(new DmemError(m.code, `study worker ${i}: ${m.message}`)); return; }
        const w = this.waiters[i];
        if (w) { this.waiters[i] = null; w(m); } else this.queues[i].push(m);
      });
      child.on('exit', (code, signal) => { if (!this.stopping) this.fail(new DmemError('WORKER_EXIT', `study worker ${i} exited early (${signal ?? `code ${code}`})`)); });
      child.send({ type: 'job', job });
    });
  }

  private take(i: number): Promise<Msg> {
    const m = this.queues[i].shift();
    if (m) return Promise.resolve(m);
    return Promise.race([new Promise<Msg>((resolve) => { this.waiters[i] = resolve; }), this.failed]);
  }

  /** Waits for every worker's ready, then sends go to all. */
  async barrier(): Promise<void> {
    const ms = await Promise.all(this.procs.map((_, i) => this.take(i)));
    if (ms.some((m) => m.type !== 'ready')) throw new DmemError('WORKER_PROTOCOL', 'study worker sent a result where ready was expected');
    for (const p of this.procs) p.send({ type: 'go' });
  }

  /** One result of every worker, in worker order. */
  async results<T>(): Promise<T[]> {
    const ms = await Promise.all(this.procs.map((_, i) => this.take(i)));
    return ms.map((m) => {
      if (m.type !== 'result') throw new DmemError('WORKER_PROTOCOL', 'study worker sent ready where a result was expected');
      return m.result as T;
    });
  }

  /** SIGKILLs every worker now. */
  kill(): void {
    this.stopping = true;
    for (const p of this.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  }

  /** Disconnects every worker, kills those still alive after 2 s. Never throws. */
  async stop(): Promise<void> {
    live.delete(this);
    this.stopping = true;
    await Promise.all(this.procs.map((p) => new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) { resolve(); return; }
      const t = setTimeout(() => p.kill('SIGKILL'), 2000);
      p.once('exit', () => { clearTimeout(t); resolve(); });
      if (this.failure) p.kill('SIGTERM');
      if (p.connected) p.disconnect();
    })));
  }
}
