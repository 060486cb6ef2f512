/**
 * A client process of the chaos run (src/bench/chaos.ts): churns blocks of
 * random size classes and heap objects, stamps every chunk (every object)
 * it holds with (client id, serial, index), and checks the stamps before
 * each free and, in `survive` mode, of everything it holds on every pass.
 * The driver pauses it (SIGSTOP, often past the lease) and kills it; a
 * worker that finds itself fenced on resuming reports it and exits, as a
 * real client would before opening the pool again.
 *
 * argv: pool name, mode (churn | survive), seed.
 * Messages: {type: 'ready', clientId, pid}; {type: 'mismatch', detail} for
 * every stamp found overwritten (a double hold); {type: 'fenced'} then exit
 * 3; {type: 'exhausted'} for an allocation the pool had no room for
 * (skipped); {type: 'done', allocs, frees, checks, mismatches} on 'stop';
 * {type: 'error', code, message} then exit 1.
 */
import { Geometry } from '../abi.js';
import { LeaseExpiredError, PoolExhaustedError, openPool } from '../index.js';

const [name, mode, seedArg] = process.argv.slice(2);
const CHUNK = 4096;
const MAGIC = 0x43484153;
const pool = await openPool(`shm:${name}`, { create: false, seed: Number(seedArg) });
const id = pool.clientId;
let x = (Number(seedArg) >>> 0) || 1;
const next = (): number => {
  x ^= x << 13; x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5; x >>>= 0;
  return x;
};

/** A held block or heap object: its gaddr, how many 4 KiB stamps (0: one object stamp), its serial. */
interface Held { g: number; chunks: number; serial: number; heap: boolean }
const held: Held[] = [];
const stamp = new Uint8Array(16);
const sv = new DataView(stamp.buffer);
const got = new Uint8Array(16);
const gv = new DataView(got.buffer);
let serial = 0;
let allocs = 0;
let frees = 0;
let checks = 0;
let mismatches = 0;
let stopping = false;

function stampAt(g: number, b: Held, k: number): void {
  sv.setUint32(0, MAGIC, true);
  sv.setUint32(4, id, true);
  sv.setUint32(8, b.serial, true);
  sv.setUint32(12, k, true);
  pool.write(g, stamp);
}

function take(): Held {
  const r = next();
  const pick = r % 100;
  let b: Held;
  let what: string;
  if (pick < 25) {
    const bytes = 64 + ((r >>> 8) % 1000);
    b = { g: pool.heap.alloc(bytes), chunks: 1, serial: ++serial, heap: true };
    what = `heap object of ${bytes} B`;
  } else {
    const cls = pick < 90 ? pick % 5 : pick < 99 ? 5 + (pick % 3) : 9;
    b = { g: pool.allocClass(cls), chunks: 2 ** cls, serial: ++serial, heap: false };
    what = `class-${cls} block`;
  }
  allocs++;
  for (let k = 0; k < b.chunks; k++) {
    try {
      stampAt(b.g + k * CHUNK, b, k);
    } catch (e) {
      // Say what was just allocated, for the report (a refused stamp of a
      // block or object handed out a moment ago is an allocator bug).
      if (e instanceof Error && !(e instanceof LeaseExpiredError)) e.message += ` (stamp ${k} of a ${what} at ${b.g}, just allocated; ${describe(b.g + k * CHUNK)})`;
      throw e;
    }
  }
  return b;
}

/**
 * What the pool's metadata says of byte `g` now, for the report of a
 * refused stamp: the bounds check again (now and after 20 ms), this
 * client's slot, the span header word and the owner-log entries of the
 * chunk and of every aligned head below it (classes 1..4), hex.
 */
function describe(g: number): string {
  // The core's exports, for this report only (Pool keeps them private).
  const x = (pool as unknown as { x: { check(o: number, l: number): number; geometry(f: number): number } }).x;
  const t = pool.transport;
  const o = g % 2 ** 40;
  const chunk = Math.floor((o - x.geometry(Geometry.dataOffset)) / CHUNK);
  const span = chunk >> 5;
  const hex = (v: bigint): string => BigInt.asUintN(64, v).toString(16);
  const parts = [`check now ${x.check(o, 16)}`];
  const until = Date.now() + 20;
  while (Date.now() < until) { /* let a racing writer finish */ }
  parts.push(`after 20 ms ${x.check(o, 16)}`);
  try {
    const slot = pool.clientSlot(id);
    parts.push(`slot ${slot.state} gen ${slot.gen}`);
  } catch (e) {
    parts.push(`slot: ${String(e)}`);
  }
  parts.push(`chunk ${chunk} (pos ${chunk & 31}) span ${span} header ${hex(t.load64(x.geometry(Geometry.spanHeaderOffset) + span * 8))}`);
  for (const cls of [0, 1, 2, 3, 4]) {
    const head = chunk & ~((1 << cls) - 1);
    parts.push(`log[${head}] ${hex(t.load64(x.geometry(Geometry.ownerLogOffset) + head * 8))}`);
  }
  const slabBase = x.geometry(Geometry.dataOffset) + (chunk & ~15) * CHUNK;
  parts.push(`slab words ${[0, 1, 2, 3].map((i) => hex(t.load64(slabBase + 8 * i))).join(' ')}`);
  return parts.join(', ');
}

function check(b: Held): void {
  for (let k = 0; k < b.chunks; k++) {
    pool.readInto(b.g + k * CHUNK, got);
    checks++;
    if (gv.getUint32(0, true) !== MAGIC || gv.getUint32(4, true) !== id || gv.getUint32(8, true) !== b.serial || gv.getUint32(12, true) !== k) {
      mismatches++;
      process.send!({ type: 'mismatch', detail: `client ${id} (pid ${process.pid}): ${b.heap ? 'object' : 'block'} ${b.g} chunk ${k} holds client ${gv.getUint32(4, true)} serial ${gv.getUint32(8, true)}` });
    }
  }
}

function release(i: number): void {
  const b = held[i];
  check(b);
  if (b.heap) pool.heap.free(b.g); else pool.free(b.g);
  frees++;
  held[i] = held[held.length - 1];
  held.pop();
}

function exitWith(type: string, code: number, extra: object = {}): void {
  process.send!({ type, ...extra }, () => process.exit(code));
}

function onError(e: unknown): void {
  if (e instanceof LeaseExpiredError) { exitWith('fenced', 3); return; }
  const err = e as { code?: string; message?: string };
  exitWith('error', 1, { code: err.code ?? 'ERROR', message: `client ${id} (pid ${process.pid}): ${err.message ?? String(e)}` });
}

process.on('message', (m) => { if (m === 'stop') stopping = true; });

function finish(): void {
  try {
    while (held.length > 0) release(held.length - 1);
    pool.close();
  } catch (e) {
    onError(e);
    return;
  }
  exitWith('done', 0, { allocs, frees, checks, mismatches });
}

const MAX_LIVE = mode === 'survive' ? 12 : 24;
function pass(): void {
  if (stopping) { finish(); return; }
  try {
    if (mode === 'survive') for (const b of held) check(b);
    for (let op = 0; op < 8; op++) {
      const r = next();
      if (held.length >= MAX_LIVE || (held.length > 0 && (r & 1) === 0)) release((r >>> 1) % held.length);
      else {
        // A small pool (--size) runs out now and then: that allocation is
        // skipped (the allocator flushed and stole every block cache first).
        try {
          held.push(take());
        } catch (e) {
          if (!(e instanceof PoolExhaustedError)) throw e;
          process.send!({ type: 'exhausted' });
        }
      }
    }
  } catch (e) {
    onError(e);
    return;
  }
  setTimeout(pass, mode === 'survive' ? 2 : 0);
}

process.send!({ type: 'ready', clientId: id, pid: process.pid });
pass();
