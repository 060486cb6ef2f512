/**
 * Loads the paging module (build/paging.wasm, built from assembly/paging/
 * by assembly/paging/asconfig.json): the page table, the eviction policies,
 * heat and tier placement of one space per instance (docs/paging.md).
 *
 * Why a module of its own and not the allocator core (which exports the
 * same functions, from the same sources): the core's memory is capped at
 * 16 Wasm pages (1 MiB, asconfig.json), which bounded a cache to about
 * 30,000 pages (120 MiB). This module's memory may grow to 16,384 Wasm
 * pages (1 GiB), enough for the 2^24 slots pgInit accepts (29..37 B each
 * plus the page table), so the cache is bounded by host memory and by the
 * one ArrayBuffer that holds the page bytes (src/paging/cache.ts). It also
 * needs no transport, so a space over a pool with no transport in this
 * process (tcp) can have one. It imports nothing but `env.abort` (asserts
 * of the debug build).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CoreAbortError } from '../core.js';
import { PagingModuleMissingError } from '../errors.js';

/** The paging module's exports (assembly/paging/index.ts). */
export interface PagingExports {
  memory: WebAssembly.Memory;
  pgInit(slots: number, policy: number, halfLife: number, nearPages: number, hot: number, cold: number): number;
  pgAccess(page: number, write: number): number;
  pgInstall(page: number, mode: number): number;
  pgEvictedPage(): number;
  pgEvictedDirty(): number;
  pgEvictedAction(): number;
  pgDisplacedPage(): number;
  pgSlotPage(s: number): number;
  pgSlotDirty(s: number): number;
  pgClean(s: number): void;
  pgSlotHeat(s: number): number;
  pgTick(): number;
  pgIsNear(page: number): number;
  pgNearCount(): number;
  pgTierForget(page: number): void;
  pgResident(page: number): number;
  pgTierSweep(max: number): number;
  pgSweptPage(i: number): number;
}

/** Compiled once per process: [release, debug]. */
const compiled: Array<WebAssembly.Module | undefined> = [undefined, undefined];

function compiledPaging(debug: boolean): WebAssembly.Module {
  const i = debug ? 1 : 0;
  const have = compiled[i];
  if (have !== undefined) return have;
  const path = fileURLToPath(new URL(`../../../build/paging${debug ? '.debug' : ''}.wasm`, import.meta.url));
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new PagingModuleMissingError(`the paging module ${path} is missing: run \`npm run build\``, { cause });
  }
  return (compiled[i] = new WebAssembly.Module(new Uint8Array(bytes)));
}

/** An AssemblyScript string (UTF-16, its byte length in the 4 bytes before it) from `memory`. */
function asString(memory: WebAssembly.Memory, ptr: number): string {
  if (ptr < 4) return '?';
  const len = new Uint32Array(memory.buffer, ptr - 4, 1)[0];
  return Buffer.from(memory.buffer, ptr, len).toString('utf16le');
}

/**
 * A fresh instance of the paging module (one per space: its state is the
 * instance's globals and memory).
 * @param debug the build with the paging asserts on
 * @throws PagingModuleMissingError when the build is absent
 */
export function pagingInstance(debug: boolean): PagingExports {
  let x: PagingExports | undefined;
  const abort = (msg: number, file: number, line: number, column: number): never => {
    throw new CoreAbortError(`paging assert failed: ${asString(x!.memory, msg)} at ${asString(x!.memory, file)}:${line}:${column}`);
  };
  x = new WebAssembly.Instance(compiledPaging(debug), { env: { abort } }).exports as unknown as PagingExports;
  return x;
}
