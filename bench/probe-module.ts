/**
 * A tiny hand-assembled Wasm module for bench/budget.ts's micro-measurements:
 * loops that run inside Wasm and call one import per iteration (so the
 * Wasm->JS crossing is measured without a JS->Wasm call around each one),
 * loops of native i64 atomics on a shared Wasm memory (the floor with no
 * crossing at all), and an empty export (the JS->Wasm crossing).
 *
 * The imports have the signatures of the core's own (assembly/imports.ts):
 *   m.nop     (f64) -> ()                 a crossing with no i64
 *   m.load64  (f64) -> i64
 *   m.store64 (f64, i64) -> ()
 *   m.cas64   (f64, i64, i64) -> i64
 *   m.faa64   (f64, i64) -> i64
 *   m.mem     shared memory, 1 page
 * Exports: id(i32) -> i32; loopNop, loopLoad, loopStore, loopCas, loopFaa,
 * loopWasmCas, loopWasmLoad: (n: i32) -> (), n iterations each. loopCas
 * passes (offset 0, expected i, desired i + 1), so a word that starts at 0
 * sees n successful CAS; the others pass offset 0 and i.
 */

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const str = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'latin1')];

const I32 = 0x7f;
const I64 = 0x7e;
const F64 = 0x7c;
const functype = (params: number[], results: number[]): number[] => [0x60, ...uleb(params.length), ...params, ...uleb(results.length), ...results];

// Opcodes used below.
const LOCAL_GET = 0x20;
const I32_CONST = 0x41;
const F64_CONST_0 = [0x44, 0, 0, 0, 0, 0, 0, 0, 0];
const I32_ADD = 0x6a;
const I64_EXTEND_I32_U = 0xad;
const CALL = 0x10;
const DROP = 0x1a;

/** A counted loop (local 1 = i from 0 to local 0 = n) around `body`. */
function loop(body: number[]): number[] {
  const code = [
    0x02, 0x40, // block
    0x03, 0x40, //   loop
    LOCAL_GET, 1, LOCAL_GET, 0, 0x4f, // i >= n (u32)
    0x0d, 1, //     br_if 1 (out of the block)
    ...body,
    LOCAL_GET, 1, I32_CONST, 1, I32_ADD, 0x21, 1, // i = i + 1
    0x0c, 0, //     br 0 (loop)
    0x0b, 0x0b, // end loop, end block
    0x0b, // end function
  ];
  const locals = [1, 1, I32]; // one entry: 1 x i32 (i)
  return [...uleb(locals.length + code.length), ...locals, ...code];
}

const iAsI64 = [LOCAL_GET, 1, I64_EXTEND_I32_U];
const iPlus1AsI64 = [LOCAL_GET, 1, I32_CONST, 1, I32_ADD, I64_EXTEND_I32_U];

/** The module's bytes (see the file comment). */
export function probeModuleBytes(): Uint8Array<ArrayBuffer> {
  const types = [
    functype([I32], [I32]), // 0 id
    functype([F64], []), // 1 nop
    functype([F64], [I64]), // 2 load64
    functype([F64, I64], []), // 3 store64
    functype([F64, I64, I64], [I64]), // 4 cas64
    functype([F64, I64], [I64]), // 5 faa64
    functype([I32], []), // 6 loops
  ];
  const imports = [
    [...str('m'), ...str('nop'), 0x00, 1],
    [...str('m'), ...str('load64'), 0x00, 2],
    [...str('m'), ...str('store64'), 0x00, 3],
    [...str('m'), ...str('cas64'), 0x00, 4],
    [...str('m'), ...str('faa64'), 0x00, 5],
    [...str('m'), ...str('mem'), 0x02, 0x03, 1, 1], // shared memory, min 1 max 1 page
  ];
  // Function indices: imports 0..4, then ours from 5.
  const bodies: Array<{ name: string; type: number; code: number[] }> = [
    { name: 'id', type: 0, code: [...uleb(4), 0, LOCAL_GET, 0, 0x0b] },
    { name: 'loopNop', type: 6, code: loop([...F64_CONST_0, CALL, 0]) },
    { name: 'loopLoad', type: 6, code: loop([...F64_CONST_0, CALL, 1, DROP]) },
    { name: 'loopStore', type: 6, code: loop([...F64_CONST_0, ...iAsI64, CALL, 2]) },
    { name: 'loopCas', type: 6, code: loop([...F64_CONST_0, ...iAsI64, ...iPlus1AsI64, CALL, 3, DROP]) },
    { name: 'loopFaa', type: 6, code: loop([...F64_CONST_0, ...iAsI64, CALL, 4, DROP]) },
    // i64.atomic.rmw.cmpxchg (0xfe 0x49), align 2^3, offset 0, at address 0
    { name: 'loopWasmCas', type: 6, code: loop([I32_CONST, 0, ...iAsI64, ...iPlus1AsI64, 0xfe, 0x49, 3, 0, DROP]) },
    // i64.atomic.load (0xfe 0x11)
    { name: 'loopWasmLoad', type: 6, code: loop([I32_CONST, 0, 0xfe, 0x11, 3, 0, DROP]) },
  ];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(bodies.map((b) => uleb(b.type)))),
    ...section(7, vec(bodies.map((b, i) => [...str(b.name), 0x00, ...uleb(5 + i)]))),
    ...section(10, vec(bodies.map((b) => b.code))),
  ];
  return new Uint8Array(bytes) as Uint8Array<ArrayBuffer>;
}

/** The probe module's exports. */
export interface ProbeExports {
  id(x: number): number;
  loopNop(n: number): void;
  loopLoad(n: number): void;
  loopStore(n: number): void;
  loopCas(n: number): void;
  loopFaa(n: number): void;
  loopWasmCas(n: number): void;
  loopWasmLoad(n: number): void;
}

/** Import functions of one probe instance (the `m` module's functions). */
export interface ProbeImports {
  nop(offset: number): void;
  load64(offset: number): bigint;
  store64(offset: number, value: bigint): void;
  cas64(offset: number, expected: bigint, desired: bigint): bigint;
  faa64(offset: number, delta: bigint): bigint;
}

let compiled: WebAssembly.Module | undefined;

/** Instantiates the probe module with these import functions and a fresh shared memory. */
export function probeInstance(fns: ProbeImports): { exports: ProbeExports; memory: WebAssembly.Memory } {
  compiled ??= new WebAssembly.Module(probeModuleBytes());
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  const instance = new WebAssembly.Instance(compiled, { m: { ...fns, mem: memory } });
  return { exports: instance.exports as unknown as ProbeExports, memory };
}
