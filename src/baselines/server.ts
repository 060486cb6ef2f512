/**
 * The "server" baseline of the allocator study (FineMem's "fusee"/"rpc"
 * baselines): the memory server allocates on request. The pool is a dmem
 * pool; one server process attaches to it and allocates and frees with
 * dmem's core, single-threaded, on behalf of clients. Clients never touch
 * allocator metadata: they post requests into a request area in the pool
 * (a dmem region named RPC_REGION) and wait for the reply.
 *
 * Request area (bytes from the region's start; one 64 B slot per client):
 *
 *   0    i32 stop (the bench sets 1 to stop the server)   4  i32 slots
 *   8    i32 server ready (1 once it serves)               12 i32 server pid
 *   64 + 64 i:  slot i
 *        0  i32 claim (0 free, 1 taken by a client; CAS)
 *        4  i32 request sequence (client increments to post)
 *        8  i32 op (1 alloc bytes, 2 alloc class, 3 free)
 *        12 i32 reply sequence (server copies the request's when done)
 *        16 f64 argument (bytes, class or gaddr)
 *        24 f64 result (gaddr, 0, or a negative core status)
 *
 * Concurrency argument: a slot has one client (claimed by CAS) and one
 * server. The client writes op and argument with plain stores, then the
 * request sequence with Atomics.store (sequentially consistent, so the
 * earlier stores are visible first); the server reads the sequence with
 * Atomics.load before it reads op and argument, writes the result, then the
 * reply sequence with Atomics.store; the client reads the reply sequence
 * before the result. Same-host only: the mapping is MAP_SHARED on one
 * machine (plugins/cxl-shm), where x86-64 and V8's atomics give this order.
 *
 * Waiting: both sides spin on Atomics.load; after SPIN_BEFORE_SLEEP empty
 * polls they sleep 20 us (Atomics.wait with a timeout on a private buffer),
 * so on a machine with fewer cores than processes the server and the
 * clients still get the CPU. Sleeping is part of the measured latency.
 */
import { Status } from '../abi.js';
import { check } from '../core.js';
import { DmemError, DoubleFreeError, InvalidAddressError, InvalidArgumentError, PoolExhaustedError } from '../errors.js';
import { openPool, type Pool } from '../pool.js';
import type { AllocatorStats, StudyAllocator } from '../study/allocator.js';

/** Name of the request area's region. */
export const RPC_REGION = 'dmem-study-rpc';
/** Bytes of the area's header and of each slot. */
const SLOT_BYTES = 64;
const OP_ALLOC = 1;
const OP_CLASS = 2;
const OP_FREE = 3;
/** Empty polls before a 20 us sleep. */
const SPIN_BEFORE_SLEEP = 2000;
const SLEEP_MS = 0.02;

const sleeper = new Int32Array(new SharedArrayBuffer(4));
function nap(): void {
  Atomics.wait(sleeper, 0, 0, SLEEP_MS);
}

/** Bytes of a request area for `slots` clients. */
export function rpcAreaBytes(slots: number): number {
  return SLOT_BYTES * (slots + 1);
}

/** Int32 and Float64 views of the request area of `pool`. */
function areaViews(pool: Pool): { i32: Int32Array; f64: Float64Array } {
  const view = pool.openRegion(RPC_REGION).map();
  return {
    i32: new Int32Array(view.buffer, view.byteOffset, view.byteLength / 4),
    f64: new Float64Array(view.buffer, view.byteOffset, view.byteLength / 8),
  };
}

/** Core status of a failed server-side operation, for the reply. */
function statusOf(err: unknown): number {
  if (err instanceof PoolExhaustedError) return Status.EXHAUSTED;
  if (err instanceof DoubleFreeError) return Status.DOUBLE_FREE;
  if (err instanceof InvalidAddressError) return Status.INVALID_ADDRESS;
  if (err instanceof InvalidArgumentError) return Status.INVALID_ARGUMENT;
  return Status.CORRUPT;
}

/** What a server did, reported when it stops. */
export interface ServerReport {
  requests: number;
  /** The server's dmem client counters (CAS retries happen there). */
  stats: AllocatorStats;
}

/**
 * Serves requests on the dmem pool at `uri` until the area's stop word is
 * set: creates the request area (region RPC_REGION, `slots` slots), marks
 * it ready, then polls every slot. A malformed request (unknown op, bad
 * argument) gets INVALID_ARGUMENT; a failing operation gets its status; the
 * server never stops on a client's error. `alive` is asked about every
 * 20 ms while idle; the loop ends when it returns false (parent gone).
 */
export async function serve(uri: string, slots: number, onReady: () => void, alive: () => boolean = () => true): Promise<ServerReport> {
  // No block cache: a client's free goes back to the pool at once, as a central allocator's does.
  const pool = await openPool(uri, { create: false, blockCache: 0 });
  try {
    if (!pool.regionExists(RPC_REGION)) pool.createRegion(RPC_REGION, rpcAreaBytes(slots));
    const { i32, f64 } = areaViews(pool);
    const n = Math.min(slots, (i32.length * 4) / SLOT_BYTES - 1);
    Atomics.store(i32, 1, n);
    Atomics.store(i32, 3, process.pid);
    Atomics.store(i32, 2, 1);
    onReady();
    let requests = 0;
    let idle = 0;
    while (Atomics.load(i32, 0) === 0) {
      let served = false;
      for (let s = 0; s < n; s++) {
        const w = (SLOT_BYTES / 4) * (s + 1);
        const req = Atomics.load(i32, w + 1);
        if (req === Atomics.load(i32, w + 3)) continue;
        const op = i32[w + 2];
        const arg = f64[(SLOT_BYTES / 8) * (s + 1) + 2];
        let result = 0;
        try {
          if (op === OP_ALLOC) result = pool.alloc(arg);
          else if (op === OP_CLASS) result = pool.allocClass(arg);
          else if (op === OP_FREE) pool.free(arg);
          else result = Status.INVALID_ARGUMENT;
        } catch (err) {
          result = statusOf(err);
        }
        f64[(SLOT_BYTES / 8) * (s + 1) + 3] = result;
        Atomics.store(i32, w + 3, req);
        requests++;
        served = true;
      }
      if (served) idle = 0;
      else if (++idle > SPIN_BEFORE_SLEEP) {
        nap();
        // Every ~1000 naps (tens of ms), stop when whoever started us is gone.
        if (idle % 1000 === 0 && !alive()) break;
      }
    }
    const st = pool.stats();
    return {
      requests,
      stats: {
        allocs: st.allocs, frees: st.frees,
        allocOps: Math.round(st.transportOps.perAlloc * st.allocs), freeOps: Math.round(st.transportOps.perFree * st.frees),
        casRetries: st.cas.retries, casRetriesMax: st.cas.maxRetries,
      },
    };
  } finally {
    pool.close();
  }
}

/** Sets the stop word of the request area of `pool` (the server exits its loop). */
export function stopServer(pool: Pool): void {
  Atomics.store(areaViews(pool).i32, 0, 1);
}

/**
 * A client of the server: claims a request slot and sends each alloc and
 * free as one request. Counts its own operations on pool memory (the
 * stores of a request, the loads while it waits) as transport operations.
 * CAS retries are the server's (src/study reports them from ServerReport):
 * this client issues no allocator CAS.
 */
export class ServerClient implements StudyAllocator {
  readonly name = 'server' as const;
  private readonly i32: Int32Array;
  private readonly f64: Float64Array;
  private readonly w: number;
  private readonly d: number;
  private seq = 0;
  private allocs = 0;
  private frees = 0;
  private allocOps = 0;
  private freeOps = 0;
  private closed = false;

  private constructor(readonly pool: Pool, views: { i32: Int32Array; f64: Float64Array }, slot: number) {
    this.i32 = views.i32;
    this.f64 = views.f64;
    this.w = (SLOT_BYTES / 4) * (slot + 1);
    this.d = (SLOT_BYTES / 8) * (slot + 1);
    this.seq = Atomics.load(this.i32, this.w + 1);
  }

  /**
   * Connects to the server of the dmem pool at `uri`: attaches a dmem client
   * (to map the request area and for read/write) and claims a free slot.
   * @throws DmemError SERVER_NOT_READY (no request area yet), SERVER_FULL (every slot taken)
   */
  static async connect(uri: string): Promise<ServerClient> {
    const pool = await openPool(uri, { create: false });
    try {
      if (!pool.regionExists(RPC_REGION)) throw new DmemError('SERVER_NOT_READY', `no allocation server serves ${uri} (region ${RPC_REGION} is missing)`);
      const views = areaViews(pool);
      if (Atomics.load(views.i32, 2) !== 1) throw new DmemError('SERVER_NOT_READY', `the allocation server of ${uri} is not ready`);
      const n = Atomics.load(views.i32, 1);
      for (let s = 0; s < n; s++) {
        if (Atomics.compareExchange(views.i32, (SLOT_BYTES / 4) * (s + 1), 0, 1) === 0) return new ServerClient(pool, views, s);
      }
      throw new DmemError('SERVER_FULL', `all ${n} request slots of the allocation server of ${uri} are taken`);
    } catch (err) {
      pool.close();
      throw err;
    }
  }

  /** Posts one request and waits for its reply; returns the result and the operations spent. */
  private call(op: number, arg: number): number {
    if (this.closed) throw new DmemError('POOL_CLOSED', 'server client is closed');
    const i32 = this.i32;
    const w = this.w;
    this.f64[this.d + 2] = arg;
    i32[w + 2] = op;
    const seq = (this.seq = (this.seq + 1) | 0);
    Atomics.store(i32, w + 1, seq);
    let ops = 3;
    let spins = 0;
    for (;;) {
      ops++;
      if (Atomics.load(i32, w + 3) === seq) break;
      if (++spins > SPIN_BEFORE_SLEEP) {
        nap();
        if (Atomics.load(i32, 0) !== 0) throw new DmemError('SERVER_STOPPED', 'the allocation server stopped before it answered');
      }
    }
    ops++;
    const r = this.f64[this.d + 3];
    if (op === OP_FREE) this.freeOps += ops;
    else this.allocOps += ops;
    return r;
  }

  alloc(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 1) throw new InvalidArgumentError(`server alloc: bytes must be a positive integer, got ${bytes}`);
    const r = this.call(OP_ALLOC, bytes);
    if (r < 0) check(r, `server alloc(${bytes})`);
    this.allocs++;
    return r;
  }

  allocClass(cls: number): number {
    if (!Number.isInteger(cls) || cls < 0 || cls > 9) throw new InvalidArgumentError(`server allocClass: cls must be an integer 0..9, got ${cls}`);
    const r = this.call(OP_CLASS, cls);
    if (r < 0) check(r, `server allocClass(${cls})`);
    this.allocs++;
    return r;
  }

  free(gaddr: number): void {
    if (typeof gaddr !== 'number' || !Number.isSafeInteger(gaddr)) throw new InvalidArgumentError(`server free: gaddr must be an integer, got ${String(gaddr)}`);
    const r = this.call(OP_FREE, gaddr);
    if (r < 0) check(r, `server free(${gaddr})`);
    this.frees++;
  }

  read(gaddr: number, length: number): Uint8Array { return this.pool.read(gaddr, length); }
  write(gaddr: number, bytes: Uint8Array): void { this.pool.write(gaddr, bytes); }

  /** This client's counters; casRetries are 0 here (the server's are in its ServerReport). */
  stats(): AllocatorStats {
    return { allocs: this.allocs, frees: this.frees, allocOps: this.allocOps, freeOps: this.freeOps, casRetries: 0, casRetriesMax: 0 };
  }

  /** Releases the slot and detaches. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.i32, this.w, 0);
    this.pool.close();
  }
}
