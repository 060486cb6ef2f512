/**
 * The pool each allocator of the study runs on, made by the bench's parent
 * process: a temporary shm file `dmem-study-<pid>-<n>` (sparse, removed when
 * released or at exit). For `server` the parent also starts the allocation
 * server process (src/baselines/server-main.ts) and stops it on release.
 *
 * `reservedBytes()` is what the allocator has reserved pool-wide now, read
 * from metadata: for dmem (and the server, which allocates with dmem) the
 * census's free bytes at the start minus now; for the one-sided array the
 * chunks whose header is taken. The memtest divides it by the bytes its
 * workers requested (fragmentation).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openPool, type Pool } from '../pool.js';
import { DmemError } from '../errors.js';
import { removeShm } from '../../plugins/cxl-shm/index.js';
import { openOnesided, OnesidedPool } from '../baselines/onesided.js';
import { ServerClient, stopServer, type ServerReport } from '../baselines/server.js';
import { DmemAllocator, type AllocatorName, type StudyAllocator } from './allocator.js';

/** Where a worker finds a study pool. */
export interface PoolSpec {
  allocator: AllocatorName;
  /** shm name (file /dev/shm/dmem-NAME). */
  name: string;
}

/** Attaches a client of `spec`'s allocator (in a worker or a test). */
export async function attachAllocator(spec: PoolSpec, seed?: number): Promise<StudyAllocator> {
  switch (spec.allocator) {
    case 'dmem': return DmemAllocator.open(`shm:${spec.name}`, seed);
    case 'onesided-array': return openOnesided(spec.name, { seed });
    case 'server': return ServerClient.connect(`shm:${spec.name}`);
  }
}

const SERVER_MAIN = fileURLToPath(new URL('../baselines/server-main.js', import.meta.url));
let counter = 0;
/** Pools of this process not yet released (for an interrupted run). */
const open = new Set<StudyPool>();

/** Releases every study pool this process still holds (stops servers, removes files). Never throws. */
export async function releaseAllStudyPools(): Promise<void> {
  await Promise.all([...open].map((p) => p.release().catch(() => null)));
}

/** A study pool held by the parent. */
export interface StudyPool {
  spec: PoolSpec;
  /** Bytes the allocator holds reserved pool-wide now. */
  reservedBytes(): number;
  /** Stops the server (server only; its report), closes the parent's client, removes the file. Idempotent. */
  release(): Promise<ServerReport | null>;
}

/**
 * Creates a temporary pool of `bytes` for `allocator` with room for `procs`
 * clients (and, for `server`, starts the server and waits until it serves).
 * @throws the errors of openPool / openOnesided; DmemError SERVER_START when the server fails to start
 */
export async function createStudyPool(allocator: AllocatorName, bytes: number, procs: number): Promise<StudyPool> {
  const name = `dmem-study-${process.pid}-${counter++}`;
  removeShm(name);
  const spec: PoolSpec = { allocator, name };
  const removeAtExit = (): void => { removeShm(name); };
  process.once('exit', removeAtExit);
  let released = false;
  const cleanup = (): void => {
    released = true;
    removeShm(name);
    process.removeListener('exit', removeAtExit);
  };
  const section = 2 * 2 ** 20;
  const size = Math.ceil(bytes / section) * section;
  if (allocator === 'onesided-array') {
    const oa: OnesidedPool = openOnesided(name, { size });
    const p: StudyPool = {
      spec,
      reservedBytes: () => oa.reservedBytes(),
      async release() { open.delete(p); if (!released) { oa.close(); cleanup(); } return null; },
    };
    open.add(p);
    return p;
  }
  let pool: Pool;
  try {
    pool = await openPool(`shm:${name}`, { size, clients: Math.min(4093, Math.max(256, procs + 8)) });
  } catch (err) {
    cleanup();
    throw err;
  }
  let server: ChildProcess | null = null;
  let report: Promise<ServerReport> | null = null;
  if (allocator === 'server') {
    try {
      ({ server, report } = await startServer(`shm:${name}`, procs + 8));
    } catch (err) {
      pool.close();
      cleanup();
      throw err;
    }
  }
  const free0 = pool.census().freeBytes;
  const p: StudyPool = {
    spec,
    reservedBytes: () => free0 - pool.census().freeBytes,
    async release() {
      open.delete(p);
      if (released) return null;
      let r: ServerReport | null = null;
      try {
        if (server && report) {
          stopServer(pool);
          r = await report;
        }
      } finally {
        if (server && server.exitCode === null) server.kill('SIGKILL');
        pool.close();
        cleanup();
      }
      return r;
    },
  };
  open.add(p);
  return p;
}

/** Forks the server process and waits for its `ready`; `report` resolves when it stops. */
function startServer(uri: string, slots: number): Promise<{ server: ChildProcess; report: Promise<ServerReport> }> {
  return new Promise((resolve, reject) => {
    const server = fork(SERVER_MAIN, [uri, String(slots)], { serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let ready = false;
    let settle: { resolve: (r: ServerReport) => void; reject: (e: Error) => void } | null = null;
    const report = new Promise<ServerReport>((res, rej) => { settle = { resolve: res, reject: rej }; });
    report.catch(() => {});
    server.on('message', (m: { type: string; message?: string; report?: ServerReport }) => {
      if (m.type === 'ready') { ready = true; resolve({ server, report }); }
      else if (m.type === 'report') settle!.resolve(m.report!);
      else if (m.type === 'error') {
        const err = new DmemError('SERVER_START', `allocation server for ${uri}: ${m.message}`);
        if (!ready) reject(err); else settle!.reject(err);
      }
    });
    server.on('exit', (code, signal) => {
      const err = new DmemError('SERVER_EXIT', `allocation server for ${uri} exited (${signal ?? `code ${code}`})`);
      if (!ready) reject(err); else settle!.reject(err);
    });
  });
}
