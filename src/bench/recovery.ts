/**
 * Recovery benchmarks for issue 4's closing note:
 *
 *  scan    throughput of a recovery over a whole pool: a victim client fills
 *          `fill` of the pool with 4 KiB blocks, stops renewing, is revoked
 *          and recovered by the measuring client; reported as owner-log
 *          entries scanned per second (FineMem reports about 1M/s) and
 *          blocks freed per second. In one process, on a real shm pool.
 *  death   time from a client's death to its memory being free again: a
 *          child process allocates, is killed with SIGKILL, and a
 *          LeaseMonitor (lease L, sweep every L/4) recovers it; reported as
 *          ms and as a multiple of the lease.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { LeaseMonitor } from '../monitor.js';
import { openPool, type Pool } from '../pool.js';
import { removeShm } from '../../plugins/cxl-shm/index.js';

/** One recovery-scan measurement. */
export interface ScanResult {
  poolBytes: number;
  blocks: number;
  entriesScanned: number;
  ms: number;
  entriesPerSec: number;
  blocksPerSec: number;
}

/** One death-to-free measurement. */
export interface DeathResult {
  leaseMs: number;
  blocks: number;
  /** From SIGKILL to the end of the recovery (ms). */
  ms: number;
  /** ms / leaseMs. */
  leases: number;
}

const HOLDER = fileURLToPath(new URL('./holder.js', import.meta.url));

/**
 * Recovery scan throughput on a `poolBytes` shm pool whose fraction `fill`
 * (0..1) is held in 4 KiB blocks by the client being recovered.
 */
export async function benchRecoveryScan(poolBytes: number, fill: number): Promise<ScanResult> {
  const name = `dmem-bench-recovery-${process.pid}`;
  const admin = await openPool(`shm:${name}`, { size: poolBytes });
  let victim: Pool | undefined;
  try {
    victim = await openPool(`shm:${name}`, { create: false, heartbeatMs: 0 });
    const blocks = Math.floor(admin.geometry.sections * 512 * fill);
    for (let i = 0; i < blocks; i++) victim.allocClass(0);
    const slot = admin.clientSlot(victim.clientId);
    if (!admin.revokeClient(slot.id, slot.gen)) throw new Error('could not revoke the victim');
    const t0 = performance.now();
    const report = admin.recoverClient(slot.id);
    const ms = performance.now() - t0;
    if (report === null || report.blocks !== blocks) throw new Error(`recovery freed ${report?.blocks} of ${blocks} blocks`);
    return {
      poolBytes, blocks, entriesScanned: report.entriesScanned, ms,
      entriesPerSec: report.entriesScanned / (ms / 1000), blocksPerSec: blocks / (ms / 1000),
    };
  } finally {
    admin.close();
    removeShm(name);
  }
}

/**
 * Death-to-free time: a child holding `blocks` blocks is SIGKILLed while a
 * LeaseMonitor with lease `leaseMs` watches the pool.
 */
export async function benchDeathToFree(leaseMs: number, blocks: number): Promise<DeathResult> {
  const name = `dmem-bench-death-${process.pid}`;
  const admin = await openPool(`shm:${name}`, { size: '256MiB' });
  admin.setLeaseMs(leaseMs);
  let killedAt = 0;
  const recovered = new Promise<number>((resolve) => {
    const monitor = new LeaseMonitor(admin, {
      onRecovery: () => { monitor.stop(); resolve(performance.now()); },
    }).start();
  });
  const child = fork(HOLDER, [name, String(blocks)], { stdio: 'inherit' });
  try {
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`holder exited early (${code})`)));
    });
    child.kill('SIGKILL');
    killedAt = performance.now();
    // The monitor's timer does not hold the event loop open; this one does.
    const keepAlive = setInterval(() => {}, 1000);
    const doneAt = await recovered.finally(() => clearInterval(keepAlive));
    if (admin.census().chunks.held !== 0) throw new Error('memory of the dead client is still held');
    const ms = doneAt - killedAt;
    return { leaseMs, blocks, ms, leases: ms / leaseMs };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    admin.close();
    removeShm(name);
  }
}
