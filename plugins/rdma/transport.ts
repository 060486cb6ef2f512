/**
 * The one-sided ofi transport (../shared/DESIGN.md, "Two ways to run the
 * core", 1): the Wasm core runs in this client and reaches the memory
 * node's registered pool with RDMA operations through libfabric:
 *
 *   load64, read   -> fi_read
 *   store64, write -> fi_write (FI_DELIVERY_COMPLETE when the provider offers it)
 *   cas64          -> fi_compare_atomic (FI_CSWAP, FI_UINT64)
 *   faa64          -> fi_fetch_atomic   (FI_SUM,   FI_UINT64)
 *
 * Every synchronous call posts one operation and polls the completion
 * queue until it completes (giving the core up with sched_yield every 64
 * empty polls, so that waiting clients do not starve the node's progress
 * thread on a busy machine), so the transport is synchronous like shared
 * memory and the core drives it through the same imports. The memory node's CPU does no
 * per-allocation work (its provider may, below the API: ofi_rxm over tcp
 * emulates RMA and atomics in the target's progress thread).
 *
 * Ordering argument: one operation is in flight at a time, and the next is
 * posted only after the previous one's completion was read. With
 * FI_DELIVERY_COMPLETE a write's completion means its data is in the pool,
 * so "write data, then CAS to publish" keeps its order for every other
 * client; without it (providers that refuse the flag) the writes and the
 * CAS still travel in order on the one connection to the target, whose
 * progress applies them in order (tcp and sockets both do).
 *
 * Buffers: operands, results, bulk staging and the operation context live
 * in one malloc'd block (ofi.ts, NativeBuffer), since the fabric reads and
 * writes them after the posting call returned; bulk transfers are copied
 * through a 1 MiB staging area (or the provider's max message size, if
 * smaller), one operation per piece.
 *
 * Operations in flight (the asynchronous path): `readAsync`, `writeAsync`,
 * `load64Async`, `store64Async`, `cas64Async` and `faa64Async` post up to
 * `inflight` (default 16, at most 64) operations at once, each with its own
 * slot (operands, result, staging and fi_context) in a second malloc'd block,
 * and return a Promise per operation. Completions are reaped from the same
 * CQ by a pump on the event loop (setImmediate, while anything is in flight
 * or queued) and by the synchronous path, whichever reads them: an entry's
 * op_context names its slot (or the synchronous context), so neither path
 * loses the other's completions. Operations beyond the depth wait in a FIFO
 * and are posted as slots free up. Ordering: operations in flight together
 * may complete in any order (a caller that needs "write, then CAS" awaits
 * the write first); each write still carries FI_DELIVERY_COMPLETE, so its
 * promise resolves only once the data is in the pool. The Wasm core never
 * uses this path: allocation stays synchronous per client.
 * Concurrency: everything here runs on the one JS thread that owns the
 * transport (the domain is not opened thread-safe); the pump and a
 * synchronous call never overlap, and a slot's buffers belong to the
 * provider from its post to its completion (or to the endpoint's close
 * after a failure) and to this code otherwise.
 *
 * Failure: an error completion, a failed post, or no completion within
 * `opTimeoutMs` leaves an operation of unknown fate in the provider, so the
 * transport marks itself broken and every later call throws the same
 * TransportFailedError. That is also what a client sees after the memory
 * node cut its key (fencing): atomics and reads fail, and writes never land.
 * Breaking rejects every operation in flight or queued on the asynchronous
 * path with that error; their slots are never reused (the provider may
 * still hold them) and are freed only after the endpoint is closed.
 */
import { connect, type Socket } from 'node:net';
import { InvalidArgumentError, TransportUnavailableError, VersionMismatchError } from '../../src/errors.js';
import { LAYOUT_VERSION } from '../../src/core.js';
import { Pool, ownTransport, type PoolOptions } from '../../src/pool.js';
import type { Transport } from '../../src/transport.js';
import { AuthFailedError, TransportFailedError } from './errors.js';
import { BOOTSTRAP_VERSION, readLines, sendLine, type BootstrapInfo } from './bootstrap.js';
import { OfiEndpoint } from './endpoint.js';
import { StagedTransport } from './staged-transport.js';
import {
  FI_CSWAP, FI_EAGAIN, FI_EAVAIL, FI_SUM, FI_UINT64, PROVIDERS as PROVIDER_NAMES, fiError, nativeBuffer, providerString,
  type KFunc, type NativeBuffer,
} from './ofi.js';

/** Byte offsets in the operation block. */
const OPERAND = 0;
const COMPARE = 8;
const RESULT = 16;
const CONTEXT = 64;
const CQ_ENTRY = 128;
const ERR_ENTRY = 192;
const STAGE = 512;
/** Bulk staging bytes per operation (1 MiB). */
export const STAGE_BYTES = 1 << 20;
/** Completion entries read per fi_cq_read (FI_CQ_FORMAT_CONTEXT: 8 B each, at CQ_ENTRY). */
const REAP = 8;
/**
 * One asynchronous slot (the operand, compare and result words sit at the
 * operation block's offsets):
 *
 *   0 operand | 8 compare | 16 result | 24 - | 32 fi_context (32 B) | 64 stage (64 KiB)
 */
const SLOT_CONTEXT = 32;
const SLOT_STAGE = 64;
/** Staging bytes per asynchronous slot (64 KiB): larger reads and writes are split into pieces, one slot each. */
export const SLOT_STAGE_BYTES = 1 << 16;
const SLOT_BYTES = SLOT_STAGE + SLOT_STAGE_BYTES;
/** Default and largest number of asynchronous operations in flight per transport. */
export const DEFAULT_INFLIGHT = 16;
export const MAX_INFLIGHT = 64;
/** Empty polls of a synchronous wait between two sched_yield calls (a power of two). */
const YIELD_EVERY = 64;
/** fi_cq_read calls per pump turn while nothing completes, before yielding to the event loop. */
const PUMP_SPIN = 32;
/** Default time an operation may take before the transport gives up on it (ms). */
export const DEFAULT_OP_TIMEOUT_MS = 10_000;

/** Where a one-sided client finds the pool: filled in from the bootstrap. */
export interface OfiTarget {
  prov: string;
  /** Host the client reaches the server on (for fi_getinfo). */
  host: string;
  addr: Uint8Array;
  key: bigint;
  base: number;
  size: number;
  maxMsgSize: number;
}

/** Options of an OfiTransport. */
export interface OfiTransportOptions {
  /** How long one operation may take before the transport gives up (ms, default 10000). */
  opTimeoutMs?: number;
  /** Asynchronous operations in flight at most (1..64, default 16); more wait in a queue. */
  inflight?: number;
  /** Called once by close() (the bootstrap connection's end). */
  onClose?: () => void;
}

/** An asynchronous operation waiting for a free slot (see `submit`). */
interface QueuedOp {
  op: number;
  offset: number;
  len: number;
  buf: Uint8Array | null;
  bufOff: number;
  a: bigint;
  b: bigint;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

/** The asynchronous path's malloc'd slots and their bookkeeping (created on first use). */
interface Slots {
  blk: NativeBuffer;
  /** blk.ptr as a Number (exact: user-space pointers are below 2^47). */
  baseNum: number;
  /** Native addresses of each slot's operand, compare, result, context and stage (decoded once). */
  operand: bigint[];
  compare: bigint[];
  result: bigint[];
  ctx: bigint[];
  stage: bigint[];
  /** What each busy slot is doing: op (0 read, 1 write, 2 CAS, 3 FAA), where to copy a read, when it was posted. */
  op: Uint8Array;
  len: Int32Array;
  buf: Array<Uint8Array | null>;
  bufOff: Int32Array;
  postedAt: Float64Array;
  resolve: Array<((v: unknown) => void) | null>;
  reject: Array<((e: Error) => void) | null>;
  /** Stack of free slot numbers; `free` of them are valid. */
  freeStack: Int32Array;
  free: number;
}

/** See the file comment (bulk read/write, the bounds check and close: StagedTransport). */
export class OfiTransport extends StagedTransport<TransportFailedError> implements Transport {
  readonly kind = 'ofi';
  readonly ep: OfiEndpoint;
  /** Where the pool is (the bootstrap's answer): a C peer can use the same key (bench/peers/ofi_client.c). */
  readonly target: OfiTarget;
  /** Asynchronous operations in flight at most (the depth); more wait in a queue. */
  readonly inflightLimit: number;
  private readonly peer: bigint;
  private readonly key: bigint;
  private readonly base: number;
  protected readonly piece: number;
  protected readonly stage: Uint8Array;
  private readonly opTimeoutMs: number;
  private readonly blk: NativeBuffer;
  private readonly p: { operand: bigint; compare: bigint; result: bigint; ctx: bigint; entry: bigint; err: bigint; stage: bigint };
  /** The synchronous context's address as a Number, to tell its completion from the slots'. */
  private readonly syncCtxNum: number;
  private readonly fread: KFunc;
  private readonly fwrite: KFunc;
  private readonly fcas: KFunc;
  private readonly ffaa: KFunc;
  private readonly cqRead: KFunc;
  private readonly schedYield: () => number;
  private readonly epPtr: bigint;
  private readonly cqPtr: bigint;
  /** Set by `reap` when the synchronous operation's completion was read. */
  private syncDone = false;
  private slots: Slots | null = null;
  /** Asynchronous operations posted and not yet completed. */
  private inflightNow = 0;
  private readonly queue: QueuedOp[] = [];
  private queueHead = 0;
  private pumpScheduled = false;
  private pumps = 0;

  /**
   * Opens an endpoint on `t.prov` and resolves the memory node's address.
   * @throws TransportUnavailableError (libfabric or the provider missing, address refused)
   * @throws InvalidArgumentError (inflight outside 1..64)
   */
  constructor(t: OfiTarget, opts: OfiTransportOptions = {}) {
    super('ofi', t.size, opts.onClose);
    const depth = opts.inflight ?? DEFAULT_INFLIGHT;
    if (!Number.isInteger(depth) || depth < 1 || depth > MAX_INFLIGHT) throw new InvalidArgumentError(`ofi: inflight must be an integer 1..${MAX_INFLIGHT}, got ${depth}`);
    this.ep = OfiEndpoint.open({ prov: t.prov, node: t.host, server: false });
    try {
      this.peer = this.ep.insert(t.addr);
      this.blk = nativeBuffer(this.ep.o, STAGE + STAGE_BYTES);
    } catch (e) {
      this.ep.close();
      throw e;
    }
    const b = this.blk.ptr;
    this.p = {
      operand: b + BigInt(OPERAND), compare: b + BigInt(COMPARE), result: b + BigInt(RESULT), ctx: b + BigInt(CONTEXT),
      entry: b + BigInt(CQ_ENTRY), err: b + BigInt(ERR_ENTRY), stage: b + BigInt(STAGE),
    };
    this.syncCtxNum = Number(this.p.ctx);
    this.target = t;
    this.key = t.key;
    this.base = t.base;
    this.piece = Math.max(8, Math.min(STAGE_BYTES, t.maxMsgSize, this.ep.facts.maxMsgSize));
    this.stage = this.blk.view.subarray(STAGE, STAGE + STAGE_BYTES);
    this.opTimeoutMs = opts.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS;
    this.inflightLimit = depth;
    this.fread = this.ep.read;
    this.fwrite = this.ep.write;
    this.fcas = this.ep.compareAtomic;
    this.ffaa = this.ep.fetchAtomic;
    this.cqRead = this.ep.cqRead;
    this.schedYield = this.ep.o.schedYield;
    this.epPtr = this.ep.ep;
    this.cqPtr = this.ep.cq;
  }

  load64(offset: number): bigint {
    this.check(offset, 8);
    this.post(0, offset, 8, this.p.result);
    return this.blk.data.getBigInt64(RESULT, true);
  }

  store64(offset: number, value: bigint): void {
    this.check(offset, 8);
    this.blk.data.setBigInt64(OPERAND, value, true);
    this.post(1, offset, 8, this.p.operand);
  }

  cas64(offset: number, expected: bigint, desired: bigint): bigint {
    this.check(offset, 8);
    this.blk.data.setBigInt64(OPERAND, desired, true);
    this.blk.data.setBigInt64(COMPARE, expected, true);
    this.post(2, offset, 1, 0n);
    return this.blk.data.getBigInt64(RESULT, true);
  }

  faa64(offset: number, delta: bigint): bigint {
    this.check(offset, 8);
    this.blk.data.setBigInt64(OPERAND, delta, true);
    this.post(3, offset, 1, 0n);
    return this.blk.data.getBigInt64(RESULT, true);
  }

  /** fi_read of `n` bytes into the staging area (StagedTransport.read). */
  protected readStage(offset: number, n: number): void {
    this.post(0, offset, n, this.p.stage);
  }

  /** fi_write of the staging area's first `n` bytes (StagedTransport.write). */
  protected writeStage(offset: number, n: number): void {
    this.post(1, offset, n, this.p.stage);
  }

  // ---- The asynchronous path (file comment, "Operations in flight") ----

  /** Asynchronous operations posted and not yet completed (at most `inflightLimit`). */
  get inflight(): number { return this.inflightNow; }

  /**
   * fi_read of `dst.length` bytes at `offset` into `dst`, in pieces of at
   * most 64 KiB (one slot each). Resolves with `dst`.
   * @throws (rejects) InvalidArgumentError outside the pool, TransportFailedError (see the file comment)
   */
  readAsync(offset: number, dst: Uint8Array): Promise<Uint8Array> {
    const bad = this.refusal(offset, dst.length);
    if (bad !== null) return Promise.reject(bad);
    const piece = Math.min(this.piece, SLOT_STAGE_BYTES);
    if (dst.length <= piece) return new Promise((resolve, reject) => this.submit(0, offset, dst.length, dst, 0, 0n, 0n, () => resolve(dst), reject));
    const parts: Promise<unknown>[] = [];
    for (let done = 0; done < dst.length; done += piece) {
      const n = Math.min(piece, dst.length - done);
      parts.push(new Promise((resolve, reject) => this.submit(0, offset + done, n, dst, done, 0n, 0n, resolve, reject)));
    }
    return Promise.all(parts).then(() => dst);
  }

  /**
   * fi_write of `src` at `offset` (FI_DELIVERY_COMPLETE where granted), in
   * pieces of at most 64 KiB. `src` is copied before this returns. Resolves
   * once every piece is in the pool.
   * @throws (rejects) InvalidArgumentError outside the pool, TransportFailedError
   */
  writeAsync(offset: number, src: Uint8Array): Promise<void> {
    const bad = this.refusal(offset, src.length);
    if (bad !== null) return Promise.reject(bad);
    const piece = Math.min(this.piece, SLOT_STAGE_BYTES);
    if (src.length <= piece) return new Promise((resolve, reject) => this.submit(1, offset, src.length, src, 0, 0n, 0n, resolve as (v: unknown) => void, reject));
    const parts: Promise<unknown>[] = [];
    for (let done = 0; done < src.length; done += piece) {
      const n = Math.min(piece, src.length - done);
      parts.push(new Promise((resolve, reject) => this.submit(1, offset + done, n, src, done, 0n, 0n, resolve, reject)));
    }
    return Promise.all(parts).then(() => undefined);
  }

  /** 8-byte fi_read of the word at `offset`. @throws (rejects) as readAsync */
  load64Async(offset: number): Promise<bigint> {
    const bad = this.refusal(offset, 8);
    if (bad !== null) return Promise.reject(bad);
    return new Promise((resolve, reject) => this.submit(0, offset, 8, null, 0, 0n, 0n, resolve as (v: unknown) => void, reject));
  }

  /** 8-byte fi_write of `value` at `offset`. @throws (rejects) as writeAsync */
  store64Async(offset: number, value: bigint): Promise<void> {
    const bad = this.refusal(offset, 8);
    if (bad !== null) return Promise.reject(bad);
    return new Promise((resolve, reject) => this.submit(1, offset, 8, null, 0, value, 0n, resolve as (v: unknown) => void, reject));
  }

  /** fi_compare_atomic (FI_CSWAP, FI_UINT64); resolves with the word found (== expected on success). @throws (rejects) as readAsync */
  cas64Async(offset: number, expected: bigint, desired: bigint): Promise<bigint> {
    const bad = this.refusal(offset, 8);
    if (bad !== null) return Promise.reject(bad);
    return new Promise((resolve, reject) => this.submit(2, offset, 8, null, 0, desired, expected, resolve as (v: unknown) => void, reject));
  }

  /** fi_fetch_atomic (FI_SUM, FI_UINT64); resolves with the word before the add. @throws (rejects) as readAsync */
  faa64Async(offset: number, delta: bigint): Promise<bigint> {
    const bad = this.refusal(offset, 8);
    if (bad !== null) return Promise.reject(bad);
    return new Promise((resolve, reject) => this.submit(3, offset, 8, null, 0, delta, 0n, resolve as (v: unknown) => void, reject));
  }

  /**
   * Closes the endpoint (StagedTransport.close then closes the bootstrap
   * connection); rejects asynchronous operations still in flight.
   */
  protected shutdown(): void {
    if (this.broken === null) this.breakAll(new TransportFailedError('ofi transport is closed', 0));
    this.ep.close();
    // The provider may have held these buffers until its endpoint closed.
    this.ep.o.free(this.blk.ptr);
    if (this.slots !== null) this.ep.o.free(this.slots.blk.ptr);
  }

  /** Allocates the slot block on first use. */
  private slotTable(): Slots {
    if (this.slots !== null) return this.slots;
    const k = this.inflightLimit;
    const blk = nativeBuffer(this.ep.o, k * SLOT_BYTES);
    const at = (i: number, off: number): bigint => blk.ptr + BigInt(i * SLOT_BYTES + off);
    const idx = Array.from({ length: k }, (_, i) => i);
    const freeStack = new Int32Array(k);
    for (let i = 0; i < k; i++) freeStack[i] = k - 1 - i;
    this.slots = {
      blk, baseNum: Number(blk.ptr),
      operand: idx.map((i) => at(i, OPERAND)), compare: idx.map((i) => at(i, COMPARE)), result: idx.map((i) => at(i, RESULT)),
      ctx: idx.map((i) => at(i, SLOT_CONTEXT)), stage: idx.map((i) => at(i, SLOT_STAGE)),
      op: new Uint8Array(k), len: new Int32Array(k), buf: new Array<Uint8Array | null>(k).fill(null), bufOff: new Int32Array(k),
      postedAt: new Float64Array(k), resolve: new Array<null>(k).fill(null), reject: new Array<null>(k).fill(null), freeStack, free: k,
    };
    return this.slots;
  }

  /**
   * Posts an asynchronous operation now if a slot is free and nothing is
   * queued before it, else queues it (FIFO). For a write, `buf` is copied
   * now either way. `a` is the operand (store, CAS desired, FAA delta),
   * `b` the CAS compare value.
   */
  private submit(op: number, offset: number, len: number, buf: Uint8Array | null, bufOff: number, a: bigint, b: bigint,
    resolve: (v: unknown) => void, reject: (e: Error) => void): void {
    const s = this.slotTable();
    if (s.free > 0 && this.queueHead === this.queue.length && this.postSlot(s, op, offset, len, buf, bufOff, a, b, resolve, reject)) return;
    const copy = op === 1 && buf !== null ? buf.slice(bufOff, bufOff + len) : buf;
    this.queue.push({ op, offset, len, buf: copy, bufOff: op === 1 && buf !== null ? 0 : bufOff, a, b, resolve, reject });
    this.schedulePump();
  }

  /**
   * Fills a free slot and posts it. @returns false when the provider said
   * FI_EAGAIN (the slot is given back; the caller queues or keeps the op).
   * A post failing otherwise breaks the transport (rejecting this op too).
   */
  private postSlot(s: Slots, op: number, offset: number, len: number, buf: Uint8Array | null, bufOff: number, a: bigint, b: bigint,
    resolve: (v: unknown) => void, reject: (e: Error) => void): boolean {
    const i = s.freeStack[--s.free];
    const base = i * SLOT_BYTES;
    const d = s.blk.data;
    const addr = this.base + offset;
    let rc: number;
    switch (op) {
      case 0:
        rc = this.fread(this.epPtr, buf === null ? s.result[i] : s.stage[i], len, null, this.peer, addr, this.key, s.ctx[i]) as number;
        break;
      case 1:
        if (buf === null) d.setBigInt64(base + OPERAND, a, true);
        else s.blk.view.set(buf.subarray(bufOff, bufOff + len), base + SLOT_STAGE);
        rc = this.fwrite(this.epPtr, buf === null ? s.operand[i] : s.stage[i], len, null, this.peer, addr, this.key, s.ctx[i]) as number;
        break;
      case 2:
        d.setBigInt64(base + OPERAND, a, true);
        d.setBigInt64(base + COMPARE, b, true);
        rc = this.fcas(this.epPtr, s.operand[i], 1, null, s.compare[i], null, s.result[i], null, this.peer, addr, this.key, FI_UINT64, FI_CSWAP, s.ctx[i]) as number;
        break;
      default:
        d.setBigInt64(base + OPERAND, a, true);
        rc = this.ffaa(this.epPtr, s.operand[i], 1, null, s.result[i], null, this.peer, addr, this.key, FI_UINT64, FI_SUM, s.ctx[i]) as number;
        break;
    }
    if (rc !== 0) {
      s.free++;
      if (rc === -FI_EAGAIN) return false;
      reject(this.breakAll(new TransportFailedError(`ofi: posting ${OP_NAMES[op]} of ${len} B at offset ${offset} failed: ${fiError(this.ep.o, -rc)}`, -rc)));
      return true;
    }
    s.op[i] = op;
    s.len[i] = len;
    s.buf[i] = op === 0 ? buf : null;
    s.bufOff[i] = bufOff;
    s.postedAt[i] = performance.now();
    s.resolve[i] = resolve;
    s.reject[i] = reject;
    this.inflightNow++;
    this.schedulePump();
    return true;
  }

  /** Posts queued operations while slots are free and the provider takes them. */
  private postQueued(): void {
    const s = this.slots;
    if (s === null) return;
    while (s.free > 0 && this.queueHead < this.queue.length && this.broken === null) {
      const q = this.queue[this.queueHead];
      if (!this.postSlot(s, q.op, q.offset, q.len, q.buf, q.bufOff, q.a, q.b, q.resolve, q.reject)) return;
      this.queueHead++;
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    }
  }

  private schedulePump(): void {
    if (this.pumpScheduled || this.broken !== null) return;
    this.pumpScheduled = true;
    setImmediate(this.pump);
  }

  /**
   * One turn of the asynchronous path on the event loop: read completions
   * (spinning a little while none arrive, which also progresses a manual-
   * progress provider), post what is queued, check the oldest operation
   * against the timeout, and come back on the next turn while anything is
   * in flight or queued.
   */
  private readonly pump = (): void => {
    this.pumpScheduled = false;
    if (this.broken !== null) return;
    try {
      // At least one read even with nothing in flight: a queued op refused with FI_EAGAIN needs the provider progressed.
      let got = this.reap();
      for (let spin = 1; spin < PUMP_SPIN && got === 0 && this.inflightNow > 0; spin++) got = this.reap();
      this.postQueued();
      if (this.inflightNow > 0 && (got === 0 || (++this.pumps & 255) === 0)) this.checkTimeouts();
      // A whole turn without a completion: give the core up once (see `post`).
      if (got === 0 && this.inflightNow > 0) this.schedYield();
    } catch {
      return; // breakAll already rejected everything
    }
    if (this.inflightNow > 0 || this.queueHead < this.queue.length) this.schedulePump();
  };

  private checkTimeouts(): void {
    const s = this.slots!;
    const now = performance.now();
    for (let i = 0; i < this.inflightLimit; i++) {
      if (s.resolve[i] !== null && now - s.postedAt[i] > this.opTimeoutMs) {
        this.fail(`${OP_NAMES[s.op[i]]} of ${s.len[i]} B (one of ${this.inflightNow} in flight) did not complete within ${this.opTimeoutMs} ms: the memory node is unreachable, stopped, or cut this client off (its key was revoked)`, 0);
      }
    }
  }

  /**
   * Reads up to REAP completions and hands each to its owner: the
   * synchronous operation (sets `syncDone`) or an asynchronous slot
   * (copies a read's bytes, frees the slot, resolves its promise).
   * @returns the number of completions read
   * @throws TransportFailedError on an error completion (the transport is broken)
   */
  private reap(): number {
    const n = this.cqRead(this.cqPtr, this.p.entry, REAP) as number;
    if (n <= 0) {
      if (n === -FI_EAGAIN || n === 0) return 0;
      this.completionError(n);
    }
    const d = this.blk.data;
    for (let k = 0; k < n; k++) {
      const ctx = d.getUint32(CQ_ENTRY + 8 * k + 4, true) * 4294967296 + d.getUint32(CQ_ENTRY + 8 * k, true);
      if (ctx === this.syncCtxNum) { this.syncDone = true; continue; }
      this.finish(this.slots === null ? -1 : (ctx - this.slots.baseNum - SLOT_CONTEXT) / SLOT_BYTES);
    }
    return n;
  }

  /** Completes asynchronous slot `i` (see reap); a context that names no busy slot is ignored. */
  private finish(i: number): void {
    const s = this.slots;
    if (s === null || (i | 0) !== i || i < 0 || i >= this.inflightLimit || s.resolve[i] === null) return;
    const resolve = s.resolve[i]!;
    const op = s.op[i];
    const base = i * SLOT_BYTES;
    let value: unknown;
    if (op === 0) {
      const dst = s.buf[i];
      if (dst === null) value = s.blk.data.getBigInt64(base + RESULT, true);
      else dst.set(s.blk.view.subarray(base + SLOT_STAGE, base + SLOT_STAGE + s.len[i]), s.bufOff[i]);
      s.buf[i] = null;
    } else if (op !== 1) {
      value = s.blk.data.getBigInt64(base + RESULT, true);
    }
    s.resolve[i] = null;
    s.reject[i] = null;
    s.freeStack[s.free++] = i;
    this.inflightNow--;
    resolve(value);
  }

  /**
   * Posts one synchronous operation (0 read, 1 write, 2 CAS, 3 FAA) and
   * waits for its completion, handing any asynchronous completions read on
   * the way to their slots. `buf` is the local buffer for read/write.
   */
  private post(op: number, offset: number, len: number, buf: bigint): void {
    const addr = this.base + offset;
    const deadline = Date.now() + this.opTimeoutMs;
    let spins = 0;
    this.syncDone = false;
    for (;;) {
      let rc: number;
      switch (op) {
        case 0: rc = this.fread(this.epPtr, buf, len, null, this.peer, addr, this.key, this.p.ctx) as number; break;
        case 1: rc = this.fwrite(this.epPtr, buf, len, null, this.peer, addr, this.key, this.p.ctx) as number; break;
        case 2: rc = this.fcas(this.epPtr, this.p.operand, 1, null, this.p.compare, null, this.p.result, null, this.peer, addr, this.key, FI_UINT64, FI_CSWAP, this.p.ctx) as number; break;
        default: rc = this.ffaa(this.epPtr, this.p.operand, 1, null, this.p.result, null, this.peer, addr, this.key, FI_UINT64, FI_SUM, this.p.ctx) as number; break;
      }
      if (rc === 0) break;
      if (rc !== -FI_EAGAIN) this.fail(`posting ${OP_NAMES[op]} of ${len} B at offset ${offset} failed: ${fiError(this.ep.o, -rc)}`, -rc);
      // The provider's queue is full or it is connecting: progress it and retry.
      this.reap();
      if ((++spins & 1023) === 0 && Date.now() > deadline) this.fail(`${OP_NAMES[op]} at offset ${offset} could not be posted within ${this.opTimeoutMs} ms`, 0);
    }
    spins = 0;
    for (;;) {
      this.reap();
      if (this.syncDone) return;
      // Spinning clients must not starve the node's progress thread (or each other) when
      // there are more runnable threads than cores: every YIELD_EVERY empty polls, give
      // the core up once (about 100 us into a wait; a round trip is about 20 us here).
      if ((++spins & (YIELD_EVERY - 1)) === 0) this.schedYield();
      if ((spins & 1023) === 0 && Date.now() > deadline) {
        this.fail(`${OP_NAMES[op]} of ${len} B at offset ${offset} did not complete within ${this.opTimeoutMs} ms: the memory node is unreachable, stopped, or cut this client off (its key was revoked)`, 0);
      }
    }
  }

  private completionError(n: number): never {
    if (n === -FI_EAVAIL) {
      const o = this.ep.o;
      this.ep.cqReadErr(this.cqPtr, this.p.err, 0n);
      const err = o.koffi.decode(this.p.err, o.koffi.offsetof(o.t.fi_cq_err_entry, 'err'), 'int') as number;
      const ctx = Number(BigInt.asUintN(64, BigInt(o.koffi.decode(this.p.err, o.koffi.offsetof(o.t.fi_cq_err_entry, 'op_context'), 'uint64_t') as bigint | number)));
      let what = 'an operation';
      if (ctx === this.syncCtxNum) what = 'the synchronous operation';
      else if (this.slots !== null) {
        const i = (ctx - this.slots.baseNum - SLOT_CONTEXT) / SLOT_BYTES;
        if (Number.isInteger(i) && i >= 0 && i < this.inflightLimit && this.slots.resolve[i] !== null) what = `${OP_NAMES[this.slots.op[i]]} of ${this.slots.len[i]} B`;
      }
      this.fail(`${what} failed at the memory node: ${fiError(o, err)} (the node may have revoked this client's key)`, err);
    }
    this.fail(`reading the completion queue failed: ${fiError(this.ep.o, -n)}`, -n);
  }

  private fail(message: string, errno: number): never {
    throw this.breakAll(new TransportFailedError(`ofi: ${message}`, errno));
  }

  /**
   * Breaks the transport for good with `err` (the first error wins) and
   * rejects every asynchronous operation in flight or queued with it; their
   * slots stay taken (see the file comment). @returns the transport's error
   */
  private breakAll(err: TransportFailedError): TransportFailedError {
    this.broken ??= err;
    const e = this.broken;
    const s = this.slots;
    if (s !== null) {
      for (let i = 0; i < this.inflightLimit; i++) {
        const reject = s.reject[i];
        s.resolve[i] = null;
        s.reject[i] = null;
        s.buf[i] = null;
        if (reject !== null) reject(e);
      }
    }
    this.inflightNow = 0;
    const queued = this.queue.splice(this.queueHead);
    this.queue.length = 0;
    this.queueHead = 0;
    for (const q of queued) q.reject(e);
    return e;
  }
}

const OP_NAMES = ['fi_read', 'fi_write', 'fi_compare_atomic', 'fi_fetch_atomic'];

/** A parsed `ofi+PROVIDER://HOST:PORT` URI. */
export interface OfiUri {
  /** URI provider name (`tcp`). */
  name: string;
  /** libfabric provider string (`tcp;ofi_rxm`). */
  prov: string;
  host: string;
  port: number;
}

/**
 * Parses `ofi+tcp://HOST:PORT`, `ofi+sockets://HOST:PORT` (IPv6 hosts in
 * brackets). The port is the memory node's bootstrap listen port.
 * @throws InvalidArgumentError naming the expected form
 */
export function parseOfiUri(uri: string): OfiUri {
  const m = /^ofi\+([a-z0-9_;]+):\/\/(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})\/?$/.exec(uri);
  if (m === null) throw new InvalidArgumentError(`"${uri}" is not an ofi URI: write ofi+tcp://HOST:PORT or ofi+sockets://HOST:PORT`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new InvalidArgumentError(`"${uri}": port must be 1..65535`);
  return { name: m[1], prov: providerString(m[1]), host: m[2].replace(/^\[|\]$/g, ''), port };
}

/** Options of `openOfiPool`: the Pool's, plus the bootstrap token. */
export interface OfiPoolOptions extends PoolOptions {
  /** The memory node's token (the contents of its --token-file). */
  token: string;
  /** Bootstrap connect and reply timeout (ms, default 5000). */
  connectTimeoutMs?: number;
  /** How long one RDMA operation may take before the transport gives up (ms, default 10000). */
  opTimeoutMs?: number;
  /** Asynchronous operations in flight at most on the transport (`OfiTransport.readAsync` ...; 1..64, default 16). */
  inflight?: number;
}

/**
 * Connects to a memory node served by `dmem server --transport ofi`,
 * authenticates, opens a libfabric endpoint to its registered pool and
 * attaches a Pool that runs the allocator here, one-sided (FineMem). The
 * bootstrap connection stays open: the server cuts this client's key when
 * it closes. `pool.close()` also closes the transport and the connection.
 * @param uri `ofi+tcp://HOST:PORT` or `ofi+sockets://HOST:PORT`
 * @throws InvalidArgumentError (bad URI), AuthFailedError (wrong token),
 *   TransportUnavailableError (connection refused, libfabric or provider
 *   missing, provider mismatch), VersionMismatchError, ClientTableFullError
 */
export async function openOfiPool(uri: string, opts: OfiPoolOptions): Promise<Pool> {
  const u = parseOfiUri(uri);
  if (typeof opts.token !== 'string' || opts.token === '') throw new InvalidArgumentError('openOfiPool needs { token } (the memory node\'s --token-file contents)');
  const { sock, info } = await bootstrap(u, opts.token, opts.connectTimeoutMs ?? 5000);
  let transport: OfiTransport | null = null;
  try {
    if (info.provider !== u.prov) {
      throw new TransportUnavailableError(`${uri}: the memory node serves provider "${info.provider}", the URI asks for "${u.prov}": use ofi+${Object.keys(PROVIDER_NAMES).find((k) => PROVIDER_NAMES[k] === info.provider) ?? info.provider}://`);
    }
    if (info.layoutVersion !== LAYOUT_VERSION) {
      throw new VersionMismatchError(`${uri}: the memory node's pool has layout version ${info.layoutVersion}, this build reads ${LAYOUT_VERSION}`);
    }
    transport = new OfiTransport({
      prov: info.provider, host: u.host, addr: Buffer.from(info.addr, 'base64'), key: BigInt(info.key), base: info.base,
      size: info.size, maxMsgSize: info.maxMsgSize,
    }, { opTimeoutMs: opts.opTimeoutMs, inflight: opts.inflight, onClose: () => sock.destroy() });
    const pool = Pool.attach(transport, { ...opts, create: false });
    sendLine(sock, { client: pool.clientId, gen: pool.clientSlot(pool.clientId).gen });
    // The pool owns the transport (closing it closes the bootstrap
    // connection too); a transport failure under the idle heartbeat stops
    // the timer only (src/lease.ts), and the next call throws it.
    return ownTransport(pool);
  } catch (e) {
    if (transport !== null) transport.close();
    sock.destroy();
    throw e;
  }
}


/** Connects, sends the token, and waits for the server's reply. */
function bootstrap(u: OfiUri, token: string, timeoutMs: number): Promise<{ sock: Socket; info: BootstrapInfo }> {
  return new Promise((resolve, reject) => {
    const where = `${u.host}:${u.port}`;
    const sock = connect({ host: u.host, port: u.port });
    let settled = false;
    const done = (err: Error | null, info?: BootstrapInfo): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err !== null) { sock.destroy(); reject(err); return; }
      sock.unref();
      resolve({ sock, info: info! });
    };
    const timer = setTimeout(() => done(new TransportUnavailableError(`ofi bootstrap with ${where} timed out after ${timeoutMs} ms: is \`dmem server --transport ofi --listen ${where}\` running?`)), timeoutMs);
    sock.once('error', (e: NodeJS.ErrnoException) => done(new TransportUnavailableError(
      e.code === 'ECONNREFUSED' ? `connection refused by ${where}: start \`dmem server --transport ofi --listen ${where}\` there, or check the port` : `ofi bootstrap with ${where} failed: ${e.message}`,
      { cause: e },
    )));
    sock.once('close', () => done(new TransportUnavailableError(`${where} closed the bootstrap connection before replying`)));
    sock.once('connect', () => sendLine(sock, { v: BOOTSTRAP_VERSION, token }));
    readLines(sock, (msg) => {
      const err = msg.error as { code?: unknown; message?: unknown } | undefined;
      if (err !== undefined) {
        const text = `${where}: ${typeof err.message === 'string' ? err.message : 'refused'}`;
        done(err.code === 'AUTH_FAILED' ? new AuthFailedError(text) : new TransportUnavailableError(text));
        return;
      }
      const ok = typeof msg.provider === 'string' && typeof msg.addr === 'string' && typeof msg.key === 'string' && /^\d{1,20}$/.test(msg.key)
        && Number.isSafeInteger(msg.base) && Number.isSafeInteger(msg.size) && Number.isSafeInteger(msg.layoutVersion) && Number.isSafeInteger(msg.maxMsgSize);
      if (!ok) { done(new TransportUnavailableError(`${where} sent a malformed bootstrap reply: is it a dmem ofi server?`)); return; }
      done(null, msg as unknown as BootstrapInfo);
    }, (why) => done(new TransportUnavailableError(`${where} sent a bad bootstrap line (${why}): is it a dmem ofi server?`)));
  });
}
