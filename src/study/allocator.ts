/**
 * The allocators of the allocator study (issue 14) behind one interface, so
 * one worker loop measures all of them the same way:
 *
 *   dmem            ours: FineMem's one-sided allocator in the Wasm core (src/pool.ts)
 *   onesided-array  one 8 B header per chunk, CAS per chunk (src/baselines/onesided.ts)
 *   server          the memory server allocates on request (src/baselines/server.ts)
 *
 * Every strategy counts its transport operations (loads, stores, CAS, bulk
 * reads on pool memory) spent in allocations and frees, and its CAS retries.
 */
import { openPool, type Pool } from '../pool.js';
import { InvalidArgumentError } from '../errors.js';

/** The allocators the study compares. */
export const ALLOCATORS = ['dmem', 'onesided-array', 'server'] as const;
export type AllocatorName = (typeof ALLOCATORS)[number];

/** Counters of one client since it attached (all counts, not rates). */
export interface AllocatorStats {
  allocs: number;
  frees: number;
  /** Transport operations issued inside allocations / frees. */
  allocOps: number;
  freeOps: number;
  /** CAS that lost and were retried (allocations); the most of one allocation. */
  casRetries: number;
  casRetriesMax: number;
}

/** What the study needs of an allocator client. gaddrs are numbers (below 2^53). */
export interface StudyAllocator {
  readonly name: AllocatorName;
  /** Allocates at least `bytes`; returns the block's gaddr. */
  alloc(bytes: number): number;
  /** Allocates one block of size class `cls` (4 KiB * 2^cls). */
  allocClass(cls: number): number;
  free(gaddr: number): void;
  read(gaddr: number, length: number): Uint8Array;
  write(gaddr: number, bytes: Uint8Array): void;
  stats(): AllocatorStats;
  close(): void;
}

/** Parses an --allocator value: one name or a comma-separated list (`all` = every one). */
export function parseAllocators(text: string): AllocatorName[] {
  if (text === 'all') return [...ALLOCATORS];
  const names = text.split(',').map((s) => s.trim());
  for (const n of names) {
    if (!(ALLOCATORS as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown allocator "${n}": expected ${ALLOCATORS.join(', ')} or all (comma-separated)`);
  }
  return [...new Set(names)] as AllocatorName[];
}

/** dmem's Pool as a study allocator (the counters come from the core's stats()). */
export class DmemAllocator implements StudyAllocator {
  readonly name = 'dmem' as const;
  constructor(readonly pool: Pool) {}

  /** Attaches a client to the dmem pool at `uri` (it must exist). */
  static async open(uri: string, seed?: number): Promise<DmemAllocator> {
    return new DmemAllocator(await openPool(uri, { create: false, ...(seed === undefined ? {} : { seed }) }));
  }

  alloc(bytes: number): number { return this.pool.alloc(bytes); }
  allocClass(cls: number): number { return this.pool.allocClass(cls); }
  free(gaddr: number): void { this.pool.free(gaddr); }
  read(gaddr: number, length: number): Uint8Array { return this.pool.read(gaddr, length); }
  write(gaddr: number, bytes: Uint8Array): void { this.pool.write(gaddr, bytes); }

  stats(): AllocatorStats {
    const s = this.pool.stats();
    return {
      allocs: s.allocs, frees: s.frees,
      allocOps: Math.round(s.transportOps.perAlloc * s.allocs), freeOps: Math.round(s.transportOps.perFree * s.frees),
      casRetries: s.cas.retries, casRetriesMax: s.cas.maxRetries,
    };
  }

  close(): void { this.pool.close(); }
}
