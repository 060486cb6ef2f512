/**
 * Shared helpers for the test files: unique pool names that are always
 * removed, and the project root.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { removeShm } from '../plugins/cxl-shm/index.js';
import type { Pool } from '../src/index.js';

/** The repository root (tests run from dist/test/). */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** ../shared/traces next to the repository, or null when absent. */
export function tracesDir(): string | null {
  const dir = fileURLToPath(new URL('../../../shared/traces/', import.meta.url));
  return existsSync(dir) ? dir : null;
}

/** A pool name unique to this process and call. */
export function uniqueName(tag: string): string {
  return `test-${tag}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Runs `fn` with a fresh pool name and removes the pool file afterwards. */
export async function withPoolName<T>(tag: string, fn: (name: string) => Promise<T> | T): Promise<T> {
  const name = uniqueName(tag);
  try {
    return await fn(name);
  } finally {
    removeShm(name);
  }
}

/** Predicate for uvu's assert.throws: the error is an instance of `cls`. */
export function is(cls: abstract new (...args: never[]) => Error): (e: unknown) => boolean {
  return (e: unknown) => e instanceof cls;
}

/** Asserts that `p` rejects with an error that `ok` accepts. */
export async function rejects(p: Promise<unknown>, ok: (e: unknown) => boolean): Promise<void> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  if (caught === undefined) throw new Error('expected the promise to reject');
  if (!ok(caught)) throw new Error(`rejected with an unexpected error: ${String(caught)}`);
}

/** The built `dmem` command. */
export const CLI = join(ROOT, 'dist', 'src', 'cli', 'main.js');

/** What one `dmem` run printed and how it ended. */
export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `dmem ...args` to its end (at most 60 s). */
export function dmem(...args: string[]): CliRun {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The JSON objects of a --json run's stdout, one per line (other lines skipped). */
export function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout.split('\n').filter((l) => l.trim().startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Held chunks, slab objects and cached objects of the whole pool. */
export function usage(p: Pool): { chunks: number; objects: number; cached: number; slabs: number } {
  const h = p.heap.stats();
  return {
    chunks: p.census().chunks.held,
    objects: h.perClass.reduce((a, c) => a + c.objects, 0),
    cached: h.perClass.reduce((a, c) => a + c.cached, 0),
    slabs: h.perClass.reduce((a, c) => a + c.slabs, 0),
  };
}
