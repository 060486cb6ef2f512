/**
 * The per-operation budget of docs/performance.md (issue 10, item 2): where
 * the time of one alloc and one free goes, in one process.
 *
 *   node dist/bench/budget.js            tables (add --json for one JSON object)
 *   node --cpu-prof --cpu-prof-interval 100 --cpu-prof-dir=DIR dist/bench/budget.js --profile [class0|heap64]
 *                                        only the timed loops of one workload (default both), longer, for a profile
 *   node dist/bench/budget.js --summarize DIR/FILE.cpuprofile
 *                                        self time per function of that profile
 *
 * 1. Time ("before"): FineMem's frag pattern on class 0 (1000 blocks, 250
 *    freed then 250 allocated per epoch) and the same on heap objects of
 *    64 B, on a temporary shm pool, one client, no instrumentation. Each
 *    batch of 250 frees and of 250 allocations is timed by itself, so alloc
 *    and free get their own ns; 300 warm-up epochs, then 5 runs of 2000
 *    epochs, median.
 * 2. Count: the same loops on a second pool whose Wasm instance was built
 *    with counting wrappers (WebAssembly.Instance is swapped while that pool
 *    opens): JS->Wasm calls per export, Wasm->JS calls per import, BigInt
 *    values crossing either way, and the shared-memory operations
 *    (`Atomics.*` is swapped during the counted loop, so the JS layer's own
 *    Atomics in Pool.guard count too; bulk read/write count as one each).
 * 3. Unit costs, measured here: each a loop of 10^6 inside one call
 *    (bench/probe-module.ts for the Wasm side), median of 7 batches; the
 *    production import functions are the very ones `coreImports` builds,
 *    bound to a 2 MiB shm mapping of their own (never the pool's words).
 *
 * The budget multiplies counts by unit costs; what the measured time has
 * beyond that sum is the core's own computation plus the JS wrapper.
 */
import { performance } from 'node:perf_hooks';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { openPool, type Pool } from '../src/pool.js';
import { coreImports } from '../src/core.js';
import { openShm, removeShm } from '../plugins/cxl-shm/index.js';
import { Prng } from '../src/bench/prng.js';
import { median } from '../src/bench/percentile.js';
import { fixed, table } from '../src/cli/format.js';
import { probeInstance, type ProbeImports } from './probe-module.js';

const BLOCKS = 1000;
const CHURN = 250;
const WARM_EPOCHS = 300;
const EPOCHS = 2000;
const RUNS = 5;
const HEAP_BYTES = 64;

/** One workload: its alloc and free, on a pool. */
interface Workload {
  name: string;
  alloc(pool: Pool): number;
  free(pool: Pool, g: number): void;
}

const WORKLOADS: Workload[] = [
  { name: 'class 0 (4 KiB)', alloc: (p) => p.allocClass(0), free: (p, g) => p.free(g) },
  { name: `heap ${HEAP_BYTES} B`, alloc: (p) => p.heap.alloc(HEAP_BYTES), free: (p, g) => p.heap.free(g) },
];

type Phase = 'alloc' | 'free' | 'other';
let phase: Phase = 'other';

/**
 * The frag epochs on `w`: per epoch free CHURN distinct random held
 * objects, then allocate CHURN again; `onPhase` is told which half runs.
 * Returns the ns spent in frees and in allocations.
 */
function epochs(pool: Pool, w: Workload, held: Float64Array, perm: Int32Array, rng: Prng, count: number): { allocNs: number; freeNs: number } {
  let allocMs = 0;
  let freeMs = 0;
  const n = held.length;
  for (let e = 0; e < count; e++) {
    phase = 'free';
    const t0 = performance.now();
    for (let j = 0; j < CHURN; j++) {
      const r = j + rng.below(n - j);
      const slot = perm[r];
      perm[r] = perm[j];
      perm[j] = slot;
      w.free(pool, held[slot]);
    }
    const t1 = performance.now();
    phase = 'alloc';
    for (let j = 0; j < CHURN; j++) held[perm[j]] = w.alloc(pool);
    allocMs += performance.now() - t1;
    freeMs += t1 - t0;
  }
  phase = 'other';
  return { allocNs: allocMs * 1e6, freeNs: freeMs * 1e6 };
}

/** Holds BLOCKS objects of `w`, runs `body`, frees them all. */
function holding<T>(pool: Pool, w: Workload, body: (held: Float64Array, perm: Int32Array, rng: Prng) => T): T {
  const held = new Float64Array(BLOCKS);
  const perm = new Int32Array(BLOCKS);
  for (let i = 0; i < BLOCKS; i++) { held[i] = w.alloc(pool); perm[i] = i; }
  try {
    return body(held, perm, new Prng(1));
  } finally {
    for (const g of held) w.free(pool, g);
  }
}

async function withPool<T>(tag: string, body: (pool: Pool) => T): Promise<T> {
  const name = `dmem-budget-${tag}-${process.pid}`;
  removeShm(name);
  const pool = await openPool(`shm:${name}`, { size: 256 * 2 ** 20, seed: 1 });
  try {
    return body(pool);
  } finally {
    pool.close();
    removeShm(name);
  }
}

/** ns per alloc and per free of each workload (median of RUNS). */
export interface Timing {
  workload: string;
  allocNs: number;
  freeNs: number;
  pairNs: number;
}

function timeWorkloads(pool: Pool, runs = RUNS, count = EPOCHS, which = WORKLOADS): Timing[] {
  return which.map((w) => holding(pool, w, (held, perm, rng) => {
    epochs(pool, w, held, perm, rng, WARM_EPOCHS);
    const a: number[] = [];
    const f: number[] = [];
    for (let r = 0; r < runs; r++) {
      const t = epochs(pool, w, held, perm, rng, count);
      a.push(t.allocNs / (count * CHURN));
      f.push(t.freeNs / (count * CHURN));
    }
    return { workload: w.name, allocNs: median(a), freeNs: median(f), pairNs: median(a) + median(f) };
  }));
}

// ---- counting ----

type Counter = Map<string, number>;
const counters: Record<Phase, Counter> = { alloc: new Map(), free: new Map(), other: new Map() };
function bump(key: string, by = 1): void {
  const c = counters[phase];
  c.set(key, (c.get(key) ?? 0) + by);
}
function bigints(values: readonly unknown[]): number {
  let n = 0;
  for (const v of values) if (typeof v === 'bigint') n++;
  return n;
}

type Fn = (...args: unknown[]) => unknown;

function countingFn(kind: 'export' | 'import', name: string, fn: Fn): Fn {
  return (...args: unknown[]): unknown => {
    bump(`${kind}:${name}`);
    const r = fn(...args);
    if (kind === 'import' && (name === 'read' || name === 'write')) bump(`bytes:${name}`, args[2] as number);
    const b = bigints(args) + (typeof r === 'bigint' ? 1 : 0);
    if (b > 0) bump(`bigint:${kind}`, b);
    return r;
  };
}

/** Opens a pool whose core instance counts every crossing. */
async function withCountingPool<T>(body: (pool: Pool) => T): Promise<T> {
  const Original = WebAssembly.Instance;
  function Counting(this: unknown, mod: WebAssembly.Module, imports: WebAssembly.Imports): { exports: WebAssembly.Exports } {
    const wrapped: WebAssembly.Imports = {};
    for (const [ns, fns] of Object.entries(imports)) {
      wrapped[ns] = {};
      for (const [k, v] of Object.entries(fns)) wrapped[ns][k] = typeof v === 'function' ? countingFn('import', k, v as Fn) : v;
    }
    const inst = new Original(mod, wrapped);
    const exports: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(inst.exports)) exports[k] = typeof v === 'function' ? countingFn('export', k, v as Fn) : v;
    return { exports: exports as WebAssembly.Exports };
  }
  (WebAssembly as unknown as { Instance: unknown }).Instance = Counting;
  try {
    return await withPool('count', body);
  } finally {
    (WebAssembly as unknown as { Instance: unknown }).Instance = Original;
  }
}

const ATOMICS = ['load', 'store', 'compareExchange', 'add'] as const;

/** Runs `body` with Atomics.load/store/compareExchange/add counted. */
function countingAtomics<T>(body: () => T): T {
  const a = Atomics as unknown as Record<string, Fn>;
  const saved = ATOMICS.map((k) => a[k]);
  ATOMICS.forEach((k, i) => {
    const orig = saved[i];
    a[k] = (...args: unknown[]) => { bump(`atomics:${k}:${(args[0] as { constructor: { name: string } }).constructor.name}`); return orig.apply(Atomics, args); };
  });
  try {
    return body();
  } finally {
    ATOMICS.forEach((k, i) => { a[k] = saved[i]; });
  }
}

/** Per alloc and per free counts of one workload. */
export interface Counts {
  workload: string;
  perAlloc: Record<string, number>;
  perFree: Record<string, number>;
}

function countWorkloads(pool: Pool): Counts[] {
  return WORKLOADS.map((w) => holding(pool, w, (held, perm, rng) => {
    epochs(pool, w, held, perm, rng, WARM_EPOCHS);
    for (const c of Object.values(counters)) c.clear();
    const count = 200;
    countingAtomics(() => epochs(pool, w, held, perm, rng, count));
    const ops = count * CHURN;
    const per = (c: Counter): Record<string, number> => Object.fromEntries([...c.entries()].sort().map(([k, v]) => [k, v / ops]));
    return { workload: w.name, perAlloc: per(counters.alloc), perFree: per(counters.free) };
  }));
}

// ---- unit costs ----

/** The core's bulk-copy imports (pool offset, core pointer, bytes). */
interface BulkImports {
  read(offset: number, ptr: number, len: number): void;
  write(offset: number, ptr: number, len: number): void;
}

/** Bytes of the bulk-copy probes: the heap's tag writes are 4 B, its reads a few words. */
const BULK_BYTES = 8;

/** ns per iteration of `run(n)` for n = 10^6, median of 7 batches (after one warm-up batch). */
function nsPer(run: (n: number) => void, before?: () => void): number {
  const n = 1_000_000;
  const xs: number[] = [];
  for (let b = 0; b < 8; b++) {
    before?.();
    const t = process.hrtime.bigint();
    run(n);
    const ns = Number(process.hrtime.bigint() - t) / n;
    if (b > 0) xs.push(ns);
  }
  return median(xs);
}

/** A unit cost: what was measured and its ns. */
export interface UnitCost {
  key: string;
  what: string;
  ns: number;
}

function unitCosts(): UnitCost[] {
  const name = `dmem-budget-probe-${process.pid}`;
  removeShm(name);
  const { transport } = openShm(name, { size: 2 * 2 ** 20, create: true });
  try {
    const words = transport.singleWindow()!;
    const i32 = new Int32Array(words.buffer, words.byteOffset, 2);
    const coreMemory = new WebAssembly.Memory({ initial: 1 });
    const prod = coreImports(transport, () => coreMemory).dmem as unknown as ProbeImports & BulkImports;
    const real = probeInstance({ nop: () => {}, load64: prod.load64, store64: prod.store64, cas64: prod.cas64, faa64: prod.faa64 }).exports;
    const ZERO = 0n;
    const empty = probeInstance({ nop: () => {}, load64: () => ZERO, store64: () => {}, cas64: (_o, e) => e, faa64: () => ZERO });
    const resetWord = (): void => { Atomics.store(words, 0, 0n); };
    const ONE = 1n;
    let sink = 0;
    const costs: UnitCost[] = [
      { key: 'jsCas', what: 'Atomics.compareExchange on the mapping from JS (BigInt64Array, successful)', ns: nsPer((n) => { for (let i = 0; i < n; i++) Atomics.compareExchange(words, 0, (i & 1) === 0 ? ZERO : ONE, (i & 1) === 0 ? ONE : ZERO); }, resetWord) },
      { key: 'jsLoad64', what: 'Atomics.load on the mapping from JS (BigInt64Array)', ns: nsPer((n) => { for (let i = 0; i < n; i++) if (Atomics.load(words, 0) === ONE) sink++; }) },
      { key: 'jsLoad32', what: 'Atomics.load on the mapping from JS (Int32Array: the lease check every 64th call)', ns: nsPer((n) => { for (let i = 0; i < n; i++) sink += Atomics.load(i32, 0); }) },
      { key: 'jsRead32', what: 'plain read of the mapping from JS (Int32Array: the lease check, ready())', ns: nsPer((n) => { for (let i = 0; i < n; i++) sink += i32[i & 1]; }) },
      { key: 'jsCas32', what: 'Atomics.compareExchange on the mapping from JS (Int32Array, successful: the fast paths)', ns: nsPer((n) => { for (let i = 0; i < n; i++) Atomics.compareExchange(i32, 0, i & 1, (i + 1) & 1); }, () => { i32[0] = 0; }) },
      { key: 'jsToWasm', what: 'JS->Wasm call of an empty export (i32) -> i32', ns: nsPer((n) => { for (let i = 0; i < n; i++) sink += real.id(i); }) },
      { key: 'importNop', what: 'Wasm->JS import call, (f64) -> (), empty body', ns: nsPer((n) => real.loopNop(n)) },
      { key: 'importLoad64Empty', what: 'Wasm->JS import (f64) -> i64 returning a constant BigInt', ns: nsPer((n) => empty.exports.loopLoad(n)) },
      { key: 'importCas64Empty', what: 'Wasm->JS import (f64, i64, i64) -> i64 returning its argument (3 BigInt crossings)', ns: nsPer((n) => empty.exports.loopCas(n)) },
      { key: 'importLoad64', what: 'core import load64 on the mapping (coreImports binding)', ns: nsPer((n) => real.loopLoad(n)) },
      { key: 'importStore64', what: 'core import store64 on the mapping', ns: nsPer((n) => real.loopStore(n)) },
      { key: 'importCas64', what: 'core import cas64 on the mapping (successful)', ns: nsPer((n) => real.loopCas(n), resetWord) },
      { key: 'importFaa64', what: 'core import faa64 on the mapping', ns: nsPer((n) => real.loopFaa(n)) },
      { key: 'wasmCas', what: 'i64.atomic.rmw.cmpxchg inside Wasm on shared Wasm memory (no crossing)', ns: nsPer((n) => empty.exports.loopWasmCas(n), () => { new BigInt64Array(empty.memory.buffer)[0] = 0n; }) },
      { key: 'wasmLoad', what: 'i64.atomic.load inside Wasm on shared Wasm memory', ns: nsPer((n) => empty.exports.loopWasmLoad(n)) },
      { key: 'bulkWrite', what: `core import write of ${BULK_BYTES} B, called from JS (add importNop for the crossing)`, ns: nsPer((n) => { for (let i = 0; i < n; i++) prod.write(64, 0, BULK_BYTES); }) },
      { key: 'bulkRead', what: `core import read of ${BULK_BYTES} B, called from JS (add importNop for the crossing)`, ns: nsPer((n) => { for (let i = 0; i < n; i++) prod.read(64, 0, BULK_BYTES); }) },
      { key: 'dateNow', what: 'Date.now() (Pool.guard every 64 calls, core import now)', ns: nsPer((n) => { for (let i = 0; i < n; i++) sink += Date.now() & 1; }) },
    ];
    if (sink === -1) process.stdout.write('');
    return costs;
  } finally {
    transport.close();
    removeShm(name);
  }
}

// ---- the budget ----

/** One line of a budget: count per operation, unit ns, and their product. */
export interface BudgetLine {
  step: string;
  count: number;
  unitNs: number;
  ns: number;
}

const IMPORT_COST: Record<string, string> = { load64: 'importLoad64', store64: 'importStore64', cas64: 'importCas64', faa64: 'importFaa64', now: 'dateNow' };

function budget(counts: Record<string, number>, cost: Map<string, number>, measuredNs: number): { lines: BudgetLine[]; accounted: number; rest: number } {
  const lines: BudgetLine[] = [];
  const add = (step: string, count: number, unit: number): void => { if (count > 0) lines.push({ step, count, unitNs: unit, ns: count * unit }); };
  let exports = 0;
  for (const [k, v] of Object.entries(counts)) if (k.startsWith('export:')) exports += v;
  add(`JS->Wasm calls (${Object.keys(counts).filter((k) => k.startsWith('export:')).map((k) => k.slice(7)).join(', ')})`, exports, cost.get('jsToWasm')!);
  for (const [k, v] of Object.entries(counts)) {
    if (!k.startsWith('import:')) continue;
    const name = k.slice(7);
    if (name === 'read' || name === 'write') {
      const unit = cost.get('importNop')! + cost.get(name === 'read' ? 'bulkRead' : 'bulkWrite')!;
      add(`Wasm->JS ${name} (crossing + subarray + copy, ${fixed((counts[`bytes:${name}`] ?? 0) / v, 0)} B each)`, v, unit);
    } else {
      add(`Wasm->JS ${name} (crossing + BigInt + Atomics)`, v, cost.get(IMPORT_COST[name] ?? 'importNop')!);
    }
  }
  add('fast paths Atomics.compareExchange (Int32)', counts['atomics:compareExchange:Int32Array'] ?? 0, cost.get('jsCas32')!);
  add('Pool.guard plain read of the slot word (Int32)', 1, cost.get('jsRead32')!);
  add('Pool.guard Atomics.load (Int32, every 64th call)', counts['atomics:load:Int32Array'] ?? 0, cost.get('jsLoad32')!);
  add('Pool.guard Date.now() every 64 calls', 1 / 64, cost.get('dateNow')!);
  const accounted = lines.reduce((a, l) => a + l.ns, 0);
  return { lines, accounted, rest: measuredNs - accounted };
}

// ---- profile summary ----

interface ProfileNode { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; hitCount?: number }

/**
 * Names of the release core's functions by index (imports first), from
 * build/dmem.wat, which asc writes next to build/dmem.wasm; the release
 * binary has no name section, so a profile shows wasm-function[N].
 */
function coreFunctionNames(): string[] {
  const wat = fileURLToPath(new URL('../../build/dmem.wat', import.meta.url));
  if (!existsSync(wat)) return [];
  const names: string[] = [];
  for (const m of readFileSync(wat, 'utf8').matchAll(/^ \((?:import "[^"]*" "[^"]*" \()?func \$(\S+)/gm)) names.push(m[1]);
  return names;
}

/** Self time per function of a .cpuprofile, largest first, as lines. */
function summarize(path: string, top = 30): string[] {
  const names = coreFunctionNames();
  const prof = JSON.parse(readFileSync(path, 'utf8')) as { nodes: ProfileNode[]; samples: number[] };
  const hits = new Map<string, number>();
  let total = 0;
  for (const n of prof.nodes) {
    const h = n.hitCount ?? 0;
    total += h;
    const url = n.callFrame.url.replace(/^.*\/(dist|node_modules)\//, '$1/');
    const kind = url.startsWith('wasm://') ? 'wasm' : url === '' ? 'vm' : 'js';
    let fn = n.callFrame.functionName || '(anonymous)';
    const index = /^wasm-function\[(\d+)\]$/.exec(fn);
    if (index && names[Number(index[1])]) fn = names[Number(index[1])];
    const key = `${kind}  ${fn}  ${kind === 'js' ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`;
    hits.set(key, (hits.get(key) ?? 0) + h);
  }
  const byKind = new Map<string, number>();
  for (const [k, v] of hits) byKind.set(k.split('  ')[0], (byKind.get(k.split('  ')[0]) ?? 0) + v);
  const rows = [...hits.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `${total} samples; by kind: ${[...byKind.entries()].map(([k, v]) => `${k} ${fixed((100 * v) / total, 1)}%`).join(', ')}`,
    ...table([{ header: 'self %' }, { header: 'kind', left: true }, { header: 'function', left: true }, { header: 'where', left: true }],
      rows.map(([k, v]) => { const [kind, fn, where] = k.split('  '); return [fixed((100 * v) / total, 1), kind, fn, where]; })),
  ];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--summarize') {
    for (const l of summarize(args[1])) process.stdout.write(`${l}\n`);
    return;
  }
  if (args[0] === '--profile') {
    // --profile [class0|heap64]: one workload (default both), 3 x 6000 epochs.
    const only = args[1] === 'class0' ? [WORKLOADS[0]] : args[1] === 'heap64' ? [WORKLOADS[1]] : WORKLOADS;
    await withPool('profile', (pool) => timeWorkloads(pool, 3, 6000, only));
    return;
  }
  const json = args.includes('--json');
  const timing = await withPool('time', (pool) => timeWorkloads(pool));
  const counts = await withCountingPool((pool) => countWorkloads(pool));
  const units = unitCosts();
  const cost = new Map(units.map((u) => [u.key, u.ns]));
  const budgets = timing.map((t, i) => ({
    workload: t.workload,
    alloc: { measuredNs: t.allocNs, ...budget(counts[i].perAlloc, cost, t.allocNs) },
    free: { measuredNs: t.freeNs, ...budget(counts[i].perFree, cost, t.freeNs) },
  }));
  if (json) {
    process.stdout.write(`${JSON.stringify({ node: process.version, timing, counts, units, budgets })}\n`);
    return;
  }
  const out: string[] = [];
  out.push(`unit costs (ns, median of 7 batches of 10^6, node ${process.version})`);
  out.push(...table([{ header: 'step', left: true }, { header: 'ns' }], units.map((u) => [u.what, fixed(u.ns, 1)])));
  for (const b of budgets) {
    for (const op of ['alloc', 'free'] as const) {
      const x = b[op];
      const c = counts.find((k) => k.workload === b.workload)![op === 'alloc' ? 'perAlloc' : 'perFree'];
      out.push('', `${b.workload} ${op}: measured ${fixed(x.measuredNs, 1)} ns (median of ${RUNS} runs of ${EPOCHS} epochs)`);
      out.push(`  counts per ${op}: ${Object.entries(c).map(([k, v]) => `${k} ${fixed(v, 2)}`).join(', ')}`);
      out.push(...table([{ header: 'step', left: true }, { header: 'count' }, { header: 'unit ns' }, { header: 'ns' }],
        [...x.lines.map((l) => [l.step, fixed(l.count, 2), fixed(l.unitNs, 1), fixed(l.ns, 1)]),
          ['accounted', '', '', fixed(x.accounted, 1)], ['rest (core computation + JS wrapper)', '', '', fixed(x.rest, 1)]]).map((l) => `  ${l}`));
    }
  }
  for (const l of out) process.stdout.write(`${l}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`budget failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});
