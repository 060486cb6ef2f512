/**
 * Shared helpers for the test files: unique pool names that are always
 * removed, and the project root.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { removeShm } from '../plugins/cxl-shm/index.js';

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
