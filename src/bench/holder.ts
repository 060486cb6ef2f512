/**
 * Child process of the death-to-free benchmark (src/bench/recovery.ts):
 * attaches to the pool named in argv[2], allocates argv[3] blocks of mixed
 * classes 0..4, tells the parent, then idles (renewing its lease) until it
 * is killed.
 */
import { openPool } from '../pool.js';

const [name, count] = process.argv.slice(2);
const pool = await openPool(`shm:${name}`, { create: false });
for (let i = 0; i < Number(count); i++) pool.allocClass(i % 5);
process.send!({ ready: true });
setInterval(() => {}, 1000);
