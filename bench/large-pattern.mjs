// LARGE allocations (whole 2 MiB sections, above class 9) for bench/ab.sh:
// hold 16 blocks of 4 MiB on a temporary shm pool of one build, then free a
// random one and allocate one again, 100000 times; prints ns per pair (the
// block contents are never touched). argv: the build's root folder.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = process.argv[2];
const { openPool } = await import(pathToFileURL(join(root, 'dist/src/index.js')).href);
const { Prng } = await import(pathToFileURL(join(root, 'dist/src/bench/prng.js')).href);
const name = `ab-large-${process.pid}`;
const pool = await openPool(`shm:${name}`, { create: true, size: '256MiB' });
try {
  const rng = new Prng(1);
  const held = Array.from({ length: 16 }, () => pool.alloc(4 * 2 ** 20));
  const N = 100000;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < N; k++) {
    const i = rng.below(held.length);
    pool.free(held[i]);
    held[i] = pool.alloc(4 * 2 ** 20);
  }
  console.log(Number(process.hrtime.bigint() - t0) / N);
  for (const g of held) pool.free(g);
} finally {
  pool.close();
  (await import('node:fs')).rmSync(`/dev/shm/dmem-${name}`, { force: true });
}
