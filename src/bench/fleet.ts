/**
 * The parent's side of a multi-process benchmark: forks the worker
 * processes (src/bench/worker.ts), hands each its job, and offers the two
 * things a benchmark needs: a start barrier (every worker reports ready,
 * then all get `go` at once) and collecting one result per worker.
 *
 * Failure handling: a worker that reports an error, exits early or cannot be
 * started fails the whole fleet; every pending and later call rejects with
 * that error, and `stop()` kills whatever still runs. The caller owns the
 * pool and removes it in its own `finally`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DmemError } from '../errors.js';
import type { FreedReport, FromWorker, MicroJob, MicroSample, ToWorker, TraceJob, TraceSample } from './protocol.js';

/** Path of the compiled worker module (dist/src/bench/worker.js). */
export const WORKER_PATH = fileURLToPath(new URL('./worker.js', import.meta.url));

type Waiter = { resolve: (m: FromWorker) => void; reject: (e: Error) => void };

/** A set of worker processes running one benchmark job each. */
export class Fleet {
  private readonly children: ChildProcess[] = [];
  private readonly inbox: FromWorker[][] = [];
  private readonly waiting: Array<Waiter | null> = [];
  private readonly exited: boolean[] = [];
  private failure: Error | null = null;
  private stopping = false;

  /**
   * Forks `jobs.length` workers and sends worker i `jobs[i]`.
   * @throws DmemError (code WORKER_START) when a process cannot be forked
   */
  constructor(jobs: ReadonlyArray<MicroJob | TraceJob>) {
    for (let i = 0; i < jobs.length; i++) {
      this.inbox.push([]);
      this.waiting.push(null);
      this.exited.push(false);
      let child: ChildProcess;
      try {
        child = fork(WORKER_PATH, [], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
      } catch (cause) {
        this.stop();
        throw new DmemError('WORKER_START', `cannot start bench worker ${WORKER_PATH}: ${(cause as Error).message}; run \`npm run build\``, { cause });
      }
      this.children.push(child);
      child.on('message', (m: FromWorker) => this.deliver(i, m));
      child.on('error', (err) => this.fail(new DmemError('WORKER_START', `bench worker ${i}: ${err.message}`, { cause: err })));
      child.on('exit', (code, signal) => {
        this.exited[i] = true;
        if (!this.stopping) {
          this.fail(new DmemError('WORKER_EXIT', `bench worker ${i} (pid ${child.pid}) exited early (${signal ?? `code ${code}`})`));
        }
      });
      this.send(i, { type: 'job', job: jobs[i] });
    }
  }

  /** Number of workers. */
  get size(): number {
    return this.children.length;
  }

  /**
   * Start barrier: waits until every worker has sent `ready`, then sends `go`
   * to all of them (back to back, so they start within one IPC round).
   * @throws the fleet's failure (a worker's DmemError, WORKER_EXIT, ABORTED)
   */
  async barrier(): Promise<void> {
    await Promise.all(this.children.map((_, i) => this.expect(i, 'ready')));
    for (let i = 0; i < this.children.length; i++) this.send(i, { type: 'go' });
  }

  /**
   * One result from every worker, in worker order.
   * @throws the fleet's failure
   */
  async results<T extends MicroSample | TraceSample | FreedReport>(kind: T['kind']): Promise<T[]> {
    const msgs = await Promise.all(this.children.map((_, i) => this.expect(i, 'result')));
    return msgs.map((m, i) => {
      const r = (m as Extract<FromWorker, { type: 'result' }>).result;
      if (r.kind !== kind) throw new DmemError('WORKER_PROTOCOL', `bench worker ${i} sent a ${r.kind} result where ${kind} was expected`);
      return r as T;
    });
  }

  /** Fails the fleet with `err` (e.g. on SIGINT): pending and later calls reject with it. */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (let i = 0; i < this.waiting.length; i++) {
      const w = this.waiting[i];
      this.waiting[i] = null;
      w?.reject(err);
    }
  }

  /**
   * Disconnects every worker and waits (up to `graceMs`, ms) for them to
   * exit, then kills the rest with SIGKILL. Never throws.
   */
  async stop(graceMs = 2000): Promise<void> {
    this.stopping = true;
    const exits = this.children.map((c, i) => this.exited[i] ? Promise.resolve() : new Promise<void>((resolve) => c.once('exit', () => resolve())));
    for (let i = 0; i < this.children.length; i++) {
      const c = this.children[i];
      if (this.exited[i]) continue;
      if (this.failure) c.kill('SIGTERM');
      if (c.connected) c.disconnect();
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs); });
    await Promise.race([Promise.all(exits), timeout]);
    clearTimeout(timer);
    for (let i = 0; i < this.children.length; i++) if (!this.exited[i]) this.children[i].kill('SIGKILL');
    await Promise.all(exits);
  }

  private send(i: number, m: ToWorker): void {
    const c = this.children[i];
    if (this.failure || !c.connected) return;
    c.send(m, (err) => {
      if (err) this.fail(new DmemError('WORKER_EXIT', `bench worker ${i}: cannot send ${m.type}: ${err.message}`));
    });
  }

  private deliver(i: number, m: FromWorker): void {
    if (m.type === 'error') {
      this.fail(new DmemError(m.code, `bench worker ${i}: ${m.message}`));
      return;
    }
    const w = this.waiting[i];
    if (w) {
      this.waiting[i] = null;
      w.resolve(m);
    } else {
      this.inbox[i].push(m);
    }
  }

  private next(i: number): Promise<FromWorker> {
    if (this.failure) return Promise.reject(this.failure);
    const queued = this.inbox[i].shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => { this.waiting[i] = { resolve, reject }; });
  }

  private async expect(i: number, type: FromWorker['type']): Promise<FromWorker> {
    const m = await this.next(i);
    if (m.type !== type) throw new DmemError('WORKER_PROTOCOL', `bench worker ${i} sent ${m.type} where ${type} was expected`);
    return m;
  }
}
