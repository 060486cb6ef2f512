/**
 * `dmem stat`: attaches to an existing pool and prints its census, read
 * from metadata alone (Pool.census): blocks and chunks held per size class,
 * free space, largest free run, fragmentation, section modes, live clients
 * and orphan chunks (set bits no owner-log entry covers), and every revoked
 * client or begun recovery with the fencing authority's verdict: fenced, or
 * why nothing it holds may be freed yet.
 */
import type { Command } from 'commander';
import { openPool, type PoolCensusWithCache } from '../pool.js';
import { fenceOf } from '../fencing.js';
import { shmPath } from '../../plugins/cxl-shm/index.js';
import { formatBytes } from '../units.js';
import { parsePoolName } from './options.js';
import { fixed, pairs, table } from './format.js';
import { Output } from './output.js';
import { addRemoteStatOptions, statRemote, type RemoteStatFlags } from './stat-remote.js';

interface StatFlags {
  pool: string;
  json: boolean;
}

const CLASS_LABELS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '>2MiB'];

/** Adds `stat` to `program`. */
export function addStatCommand(program: Command): void {
  addRemoteStatOptions(program
    .command('stat'))
    .description("attach to an existing pool and print its census: allocations per size class, free space, fragmentation, clients")
    .option('--pool <name>', 'pool name (file /dev/shm/dmem-NAME) or absolute path; must exist (or --url / --config)', parsePoolName)
    .option('--json', 'print the census as one JSON object on stdout', false)
    .action(async (flags: StatFlags & RemoteStatFlags, cmd: Command) => {
      if (flags.url || flags.config) return statRemote(flags);
      if (!flags.pool) cmd.error('error: give --pool NAME (or --url / --config for remote nodes)', { exitCode: 2 });
      return stat(flags);
    });
}

async function stat(flags: StatFlags): Promise<void> {
  const out = new Output(flags.json);
  const pool = await openPool(`shm:${flags.pool}`, { create: false, heartbeatMs: 0 });
  let c: PoolCensusWithCache;
  let pending: Array<{ client: number; pid: number; state: string; fenced: boolean; why: string }>;
  let heap: { slabs: number; objects: number; cached: number; requestedBytes: number };
  try {
    c = pool.census();
    const h = pool.heap.stats();
    const sum = (f: (k: (typeof h.perClass)[number]) => number): number => h.perClass.reduce((a, k) => a + f(k), 0);
    heap = { slabs: sum((k) => k.slabs), objects: sum((k) => k.objects), cached: sum((k) => k.cached), requestedBytes: h.requestedBytes };
    // Revoked clients and begun recoveries, with the fencing authority's verdict (src/fencing.ts).
    pending = pool.clientSlots().filter((s) => s.state === 'revoked' || s.state === 'recovering').map((s) => {
      const v = fenceOf(pool, s);
      return { client: s.id, pid: s.pid, state: s.state, fenced: v.fenced, why: v.fenced ? `fenced (${v.reason}): a monitor recovers it` : v.why };
    });
  } finally {
    pool.close();
  }
  const g = pool.geometry;
  const perClass = c.perClass.map((p, i) => ({ class: CLASS_LABELS[i], blockBytes: i <= 9 ? 4096 * 2 ** i : null, blocks: p.blocks, chunks: p.chunks }));
  const blocks = perClass.reduce((a, p) => a + p.blocks, 0);
  // The census counts this command's own client slot; report the others.
  const liveClients = Math.max(0, c.liveClients - 1);
  out.result(
    {
      pool: flags.pool, path: shmPath(flags.pool), poolBytes: g.poolBytes, dataBytes: g.dataBytes,
      allocated: { blocks, chunks: c.chunks.held, bytes: c.chunks.held * g.chunkBytes, perClass },
      freeBytes: c.freeBytes, freeChunks: c.chunks.free, largestFreeBytes: c.largestFreeBytes, fragmentation: c.fragmentation,
      sections: c.sections, sealedSpans: c.sealedSpans, liveClients, orphanChunks: c.chunks.orphan, cached: c.cached, heap, pending,
    },
    () => [
      ...pairs([
        ['pool', `${flags.pool} (${shmPath(flags.pool)}, ${formatBytes(g.poolBytes)}, ${formatBytes(g.dataBytes)} of data)`],
        ['allocated', `${blocks} blocks, ${c.chunks.held} chunks (${formatBytes(c.chunks.held * g.chunkBytes)})`],
      ]),
      '',
      ...table(
        [{ header: 'class', left: true }, { header: 'block' }, { header: 'blocks' }, { header: 'chunks' }],
        perClass.map((p) => [p.class, p.blockBytes === null ? '-' : formatBytes(p.blockBytes), String(p.blocks), String(p.chunks)]),
      ),
      '',
      ...pairs([
        ['free', `${formatBytes(c.freeBytes)} (${c.chunks.free} chunks)`],
        ['largest free run', formatBytes(c.largestFreeBytes)],
        ['fragmentation', `${fixed(c.fragmentation, 3)} (1 - largest free run / free)`],
        ['sections', `${c.sections.total} total: ${c.sections.free} free, ${c.sections.chunk} chunk, ${c.sections.large} large`],
        ['live clients', `${liveClients} (not counting this command)`],
        ['orphan chunks', `${c.chunks.orphan}${c.chunks.orphan > 0 ? ' (allocations in flight, or left by a dead client)' : ''}`],
        ...c.cached.byClient.map((b) => [`cached by client ${b.client}`, `${b.blocks} blocks, ${b.chunks} chunks (freed, kept for reuse)`] as [string, string]),
        ['heap objects', `${heap.objects} handed out (${formatBytes(heap.requestedBytes)} asked for), ${heap.cached} in client caches, in ${heap.slabs} slabs of 64 KiB`],
        ...pending.map((p) => [`client ${p.client}`, `${p.state} (pid ${p.pid}): ${p.why}`] as [string, string]),
      ]),
    ],
  );
}
