/**
 * Shared by the multi-process recovery and fencing tests: child processes
 * that report over IPC, a parent's stamped blocks, a hand-driven lease
 * monitor, and the end-state checks (only the parent holds memory, no
 * orphans, fsck clean, stamps intact, all free space allocatable).
 */
import * as assert from 'uvu/assert';
import { fork, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { LeaseMonitor, PoolExhaustedError, type Pool, type RecoveryEvent, type SweepResult } from '../src/index.js';

const CHUNK = 4096;
const MiB = 1024 * 1024;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------ child processes

export interface Msg { type: string; [key: string]: unknown }
export interface Exit { code: number | null; signal: NodeJS.Signals | null }

/** Every child not yet exited, so each test can kill what it left behind. */
const running = new Set<Child>();

export class Child {
  readonly proc: ChildProcess;
  readonly messages: Msg[] = [];
  private readonly taken = new Set<Msg>();
  exit: Exit | null = null;
  readonly exited: Promise<Exit>;

  /**
   * @param wrap a command that runs the child's node (e.g. `unshare --pid --fork`), which keeps the IPC channel
   */
  constructor(readonly script: string, args: string[], env: Record<string, string> = {}, wrap: string[] = []) {
    const base = { ...process.env };
    delete base.DMEM_CRASH_POINT;
    delete base.DMEM_CRASH_ACTION;
    const options = { stdio: ['inherit', 'inherit', 'inherit', 'ipc'] as StdioOptions, env: { ...base, ...env } };
    this.proc = wrap.length === 0
      ? fork(script, args, options)
      : spawn(wrap[0], [...wrap.slice(1), process.execPath, script, ...args], options);
    running.add(this);
    this.proc.on('message', (m) => this.messages.push(m as Msg));
    this.exited = new Promise((resolve) => {
      this.proc.once('exit', (code, signal) => {
        this.exit = { code, signal };
        running.delete(this);
        resolve(this.exit);
      });
    });
  }

  get pid(): number { return this.proc.pid ?? -1; }

  send(m: string): void { this.proc.send(m); }

  /** What the child said and how it ended, for failure messages. */
  describe(): string {
    const said = this.messages.filter((m) => m.type !== 'progress').map((m) => JSON.stringify(m).slice(0, 300));
    return `child ${this.pid} (${this.script.split('/').pop()}): exit ${JSON.stringify(this.exit)}; messages ${said.join(' | ') || 'none'}`;
  }

  /** The first message of `type` not taken before; fails when the child exits first or after `timeoutMs`. */
  async take(type: string, timeoutMs = 15_000): Promise<Msg> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.find((x) => x.type === type && !this.taken.has(x));
      if (m) { this.taken.add(m); return m; }
      if (this.exit !== null) {
        await sleep(20); // let messages sent just before the exit arrive
        const late = this.messages.find((x) => x.type === type && !this.taken.has(x));
        if (late) { this.taken.add(late); return late; }
        throw new Error(`expected a "${type}" message, but the child exited: ${this.describe()}`);
      }
      if (Date.now() > deadline) throw new Error(`no "${type}" message within ${timeoutMs} ms: ${this.describe()}`);
      await sleep(5);
    }
  }

  /** Waits for the exit (at most `timeoutMs`). */
  async exitWithin(timeoutMs = 10_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`child did not exit within ${timeoutMs} ms: ${this.describe()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Kills every child still running (SIGKILL works on stopped ones too) and waits for them. */
export async function killAll(): Promise<void> {
  const left = [...running];
  for (const c of left) c.proc.kill('SIGKILL');
  await Promise.all(left.map((c) => c.exited));
}

// ------------------------------------------------------------- parent blocks

export const PARENT_MAGIC = 0x50415245;

export interface Held { g: number; chunks: number; serial: number }

/** Allocates one block per class (10 = `largeBytes` above 2 MiB) and stamps both ends of every chunk. */
export function allocStamped(pool: Pool, classes: number[], largeBytes = 3 * MiB): Held[] {
  const held: Held[] = [];
  for (const cls of classes) {
    const g = cls === 10 ? pool.alloc(largeBytes) : pool.allocClass(cls);
    const chunks = cls === 10 ? Math.ceil(largeBytes / (2 * MiB)) * 512 : 2 ** cls;
    const b = { g, chunks, serial: held.length + 1 };
    for (let k = 0; k < chunks; k++) {
      pool.write(b.g + k * CHUNK, parentStamp(b, k, 0));
      pool.write(b.g + k * CHUNK + CHUNK - 16, parentStamp(b, k, 1));
    }
    held.push(b);
  }
  return held;
}

export function parentStamp(b: Held, k: number, end: number): Uint8Array {
  const s = new Uint8Array(16);
  const v = new DataView(s.buffer);
  v.setUint32(0, PARENT_MAGIC, true);
  v.setUint32(4, b.serial, true);
  v.setUint32(8, k, true);
  v.setUint32(12, end, true);
  return s;
}

/** Descriptions of every parent stamp that is not what the parent wrote. */
export function brokenStamps(pool: Pool, held: Held[]): string[] {
  const bad: string[] = [];
  const got = new Uint8Array(16);
  for (const b of held) {
    for (let k = 0; k < b.chunks; k++) {
      for (const end of [0, 1]) {
        pool.readInto(b.g + k * CHUNK + (end ? CHUNK - 16 : 0), got);
        const want = parentStamp(b, k, end);
        if (!got.every((x, i) => x === want[i])) bad.push(`block ${b.g} chunk ${k} ${end ? 'end' : 'start'}: ${Buffer.from(got).toString('hex')}`);
      }
    }
  }
  return bad;
}

export const chunksOf = (held: Held[]): number => held.reduce((a, b) => a + b.chunks, 0);

/**
 * Allocates every free chunk (4 KiB * 16 blocks, then single chunks, until
 * the pool is exhausted), overwrites the start of each with a pattern,
 * checks that the parent's stamps survived, frees it all again. Returns the
 * chunks it got and the gaddr of every chunk, so a caller can check that the
 * count equals the census and that a dead client's memory was among them.
 */
export function fillFreeSpace(pool: Pool, keep = false): { chunks: number; blocks: Array<{ g: number; chunks: number }>; chunkSet: Set<number> } {
  const blocks: Array<{ g: number; chunks: number }> = [];
  for (const cls of [4, 0]) {
    for (;;) {
      let g: number;
      try {
        g = pool.allocClass(cls);
      } catch (e) {
        if (e instanceof PoolExhaustedError) break;
        throw e;
      }
      blocks.push({ g, chunks: 2 ** cls });
    }
  }
  const fill = new Uint8Array(16).fill(0xEE);
  const chunkSet = new Set<number>();
  for (const b of blocks) {
    for (let k = 0; k < b.chunks; k++) {
      pool.write(b.g + k * CHUNK, fill);
      chunkSet.add(b.g + k * CHUNK);
    }
  }
  if (!keep) for (const b of blocks) pool.free(b.g);
  return { chunks: blocks.reduce((a, b) => a + b.chunks, 0), blocks, chunkSet };
}

// ------------------------------------------------------------------- monitor

/** Drives a LeaseMonitor by hand and keeps every recovery it made. */
export class Sweeper {
  readonly events: RecoveryEvent[] = [];
  readonly results: SweepResult[] = [];
  readonly monitor: LeaseMonitor;

  constructor(readonly pool: Pool) {
    this.monitor = new LeaseMonitor(pool);
  }

  private get quarter(): number { return Math.max(5, Math.floor(this.pool.leaseMs / 4)); }

  once(): SweepResult {
    const r = this.monitor.sweep();
    this.events.push(...r.recovered);
    this.results.push(r);
    return r;
  }

  /** Sweeps every quarter lease until `done()` (true) or `timeoutMs` (false). */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.once();
      if (done()) return true;
      if (Date.now() > deadline) return false;
      await sleep(this.quarter);
    }
  }

  /** Sweeps every quarter lease for `ms`. */
  async during(ms: number): Promise<void> {
    await this.until(() => false, ms);
  }
}

/**
 * True when only `admin` is registered, the census holds exactly `held`
 * chunks, no orphan, and every other chunk is free (census counts a LARGE
 * tail section without a head neither as held nor as orphan, so free + held
 * must make up the total too).
 */
export function settled(admin: Pool, held: number): () => boolean {
  return () => {
    if (admin.clientSlots().some((s) => s.id !== admin.clientId && s.state !== 'free')) return false;
    const c = admin.census().chunks;
    return c.held === held && c.orphan === 0 && c.free + c.held === c.total;
  };
}

/** The pool's state, for failure messages. */
export function describePool(admin: Pool): string {
  const slots = admin.clientSlots().filter((s) => s.state !== 'free')
    .map((s) => `${s.id}:${s.state}${s.id === admin.clientId ? '(admin)' : ''}${s.recoverer ? ` by ${s.recoverer}` : ''} pid ${s.pid} ack ${s.acknowledged}`);
  const c = admin.census();
  const f = admin.fsck();
  return `slots [${slots.join(', ')}]; census chunks ${JSON.stringify(c.chunks)} sections ${JSON.stringify(c.sections)} sealedSpans ${c.sealedSpans}; fsck ${JSON.stringify(f)}`;
}

/** The end state every recovery test asserts: the parent's blocks and nothing else, clean, stamps intact, free space whole. */
export function assertOnlyParentHolds(admin: Pool, mine: Held[], what: string, poolOwned = 0): void {
  const c = admin.census();
  assert.is(c.chunks.held, chunksOf(mine) + poolOwned, `${what}: held chunks equal what the live parent holds (${describePool(admin)})`);
  assert.is(c.chunks.orphan, 0, `${what}: no orphan chunks (${describePool(admin)})`);
  assert.is(c.chunks.free + c.chunks.held, c.chunks.total, `${what}: every chunk is free or held by the parent (${describePool(admin)})`);
  assert.is(c.liveClients, 1, `${what}: only the parent is live`);
  const f = admin.fsck();
  assert.ok(f.clean, `${what}: fsck clean: ${JSON.stringify(f)}`);
  assert.equal(brokenStamps(admin, mine), [], `${what}: the parent's stamps are intact`);
  const fill = fillFreeSpace(admin);
  assert.is(fill.chunks, c.chunks.free, `${what}: every free chunk can be allocated again`);
  assert.equal(brokenStamps(admin, mine), [], `${what}: the parent's stamps survive a fill of all free space (no chunk held twice)`);
  assert.is(admin.census().chunks.held, chunksOf(mine) + poolOwned, `${what}: the fill was freed again`);
}

