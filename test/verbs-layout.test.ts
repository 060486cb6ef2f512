/**
 * The koffi struct layouts of plugins/rdma (libfabric in ofi.ts, rdma-core
 * verbs in verbs-layout.ts) against the C compiler: a generated program
 * includes the installed headers and prints sizeof and offsetof of every
 * struct and field bound; each must equal koffi.sizeof / the koffi offset.
 * Skips with a printed reason without gcc or the headers (libfabric-dev,
 * libibverbs-dev, librdmacm-dev). The verbs transport's own tests (device
 * and missing-piece errors) are in test/verbs.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { layoutProgram, offsetOfPath, ofiChecks, rdmacmChecks, verbsChecks, verbsLayouts, verbsOpOffset, type LayoutCheck } from '../plugins/rdma/verbs-layout.js';

type Koffi = typeof import('koffi').default;

/** Compiles and runs the layout program; returns its lines, or a reason to skip. */
function cLayouts(checks: LayoutCheck[], header: string, pkg: string): Map<string, number> | string {
  if (spawnSync('gcc', ['--version']).status !== 0) return 'gcc not found (apt-get install gcc)';
  if (!existsSync(join('/usr/include', header))) return `/usr/include/${header} not found (apt-get install ${pkg})`;
  const dir = mkdtempSync(join(tmpdir(), 'dmem-layout-'));
  try {
    writeFileSync(join(dir, 'layout.c'), layoutProgram(checks));
    execFileSync('gcc', ['-std=gnu11', '-o', join(dir, 'layout'), join(dir, 'layout.c')], { stdio: 'pipe' });
    const out = execFileSync(join(dir, 'layout'), { encoding: 'utf8' });
    const m = new Map<string, number>();
    for (const line of out.trim().split('\n')) {
      const parts = line.split(' ');
      const value = Number(parts.pop());
      m.set(parts.join(' '), value);
    }
    return m;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function compare(checks: LayoutCheck[], c: Map<string, number>, k: Koffi): number {
  let compared = 0;
  for (const chk of checks) {
    const key = `S ${chk.c}`;
    assert.ok(c.has(key), `${chk.c} printed`);
    assert.is(k.sizeof(chk.type), c.get(key), `sizeof(${chk.c})`);
    compared++;
    for (const [path, designator] of chk.fields) {
      const fkey = `F ${chk.c} ${designator}`;
      assert.ok(c.has(fkey), `${chk.c}.${designator} printed`);
      assert.is(offsetOfPath(k, chk.type, path), c.get(fkey), `offsetof(${chk.c}, ${designator}) vs koffi ${path}`);
      compared++;
    }
  }
  return compared;
}

test('verbs: koffi layouts equal the C layouts of infiniband/verbs.h', () => {
  const checks = verbsChecks();
  const c = cLayouts(checks, 'infiniband/verbs.h', 'libibverbs-dev');
  if (typeof c === 'string') { console.log(`skip: verbs layout check: ${c}`); return; }
  const n = compare(checks, c, verbsLayouts().koffi);
  assert.ok(n > 150, `${n} sizes and offsets compared`);
  assert.is(verbsOpOffset('post_send'), c.get('F struct ibv_context ops.post_send'));
  assert.is(verbsOpOffset('poll_cq'), c.get('F struct ibv_context ops.poll_cq'));
});

test('rdma_cm: koffi layouts equal the C layouts of rdma/rdma_cma.h and netinet/in.h', () => {
  const checks = rdmacmChecks();
  const c = cLayouts(checks, 'rdma/rdma_cma.h', 'librdmacm-dev');
  if (typeof c === 'string') { console.log(`skip: rdma_cm layout check: ${c}`); return; }
  const n = compare(checks, c, verbsLayouts().koffi);
  assert.ok(n > 60, `${n} sizes and offsets compared`);
});

test('libfabric: koffi layouts of ofi.ts equal the C layouts of rdma/fabric.h', () => {
  let checks: LayoutCheck[];
  try {
    checks = ofiChecks();
  } catch (e) {
    console.log(`skip: libfabric layout check: ${(e as Error).message}`);
    return;
  }
  const c = cLayouts(checks, 'rdma/fabric.h', 'libfabric-dev');
  if (typeof c === 'string') { console.log(`skip: libfabric layout check: ${c}`); return; }
  const n = compare(checks, c, verbsLayouts().koffi);
  assert.ok(n > 150, `${n} sizes and offsets compared`);
});

test.run();
