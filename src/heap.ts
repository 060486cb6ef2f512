/**
 * The object heap of a Pool (HPE NVMM's Heap; issue 5): `pool.heap.alloc(bytes)`
 * for any size from 1 byte, `pool.heap.free(gaddr)` from any client. Objects
 * up to 3 KiB come from slabs in the pool (assembly/slab.ts) through a
 * per-client cache (assembly/heap.ts), so the common alloc makes no shared
 * CAS; larger ones are chunk blocks (FineMem's allocator).
 */
import { Geometry, HeapCensusField as H, Layout } from './abi.js';
import { show } from './args.js';
import { check } from './core.js';
import { DmemError, InvalidArgumentError } from './errors.js';
import { HeapFastPath } from './heapcache.js';
import type { PoolInternals } from './internals.js';

/** Per object class, pool-wide. */
export interface HeapClassStats {
  /** Object size of the class (bytes). */
  objectBytes: number;
  /** Objects one 64 KiB slab holds. */
  objectsPerSlab: number;
  slabs: number;
  /** Objects handed out and not yet freed. */
  objects: number;
  /** Objects claimed into some client's cache, not handed out. */
  cached: number;
  /** Sum of the sizes asked for by the handed-out objects (bytes). */
  requestedBytes: number;
}

/** `heap.stats()`: what the slabs of the whole pool hold. */
export interface HeapStats {
  perClass: HeapClassStats[];
  /** Bytes of slab memory (64 KiB per slab). */
  slabBytes: number;
  /** Bytes handed out (object sizes), against `requestedBytes` asked for. */
  reservedBytes: number;
  requestedBytes: number;
  /** 1 - requested / slab bytes: memory in slabs not holding requested bytes (0..1). */
  fragmentation: number;
  /** Objects in this client's caches. */
  cachedHere: number;
}

/** One client's view of the pool's object heap. Get it as `pool.heap`. */
export class Heap {
  private readonly p: PoolInternals;
  private readonly x: PoolInternals['x'];
  /** Object size per object class (bytes). */
  readonly classSizes: readonly number[];
  private readonly dataBytes: number;
  /** The JS fast path of the object caches (src/heapcache.ts), where the pool is mapped into this process. */
  private readonly fast: HeapFastPath | null;
  /** Largest request the fast path serves (bytes; 0 without one). */
  private readonly fastMax: number;
  /** gaddr of pool byte offset 0. */
  private readonly base: number;
  /** True when the core's direct-window path serves the common alloc and free (assembly/heap.ts, heapAllocDirect). */
  private readonly direct: boolean;

  /** @internal built by Pool */
  constructor(p: PoolInternals) {
    this.p = p;
    this.x = p.x;
    this.base = p.gaddr(0);
    const sizes: number[] = [];
    for (let k = 0; this.x.heapClassSize(k) > 0; k++) sizes.push(this.x.heapClassSize(k));
    this.classSizes = sizes;
    this.dataBytes = this.x.geometry(Geometry.sections) * Layout.sectionBytes;
    // Where the core reaches the pool directly (src/core.ts, mapDirect) its
    // own common path is one call (assembly/heap.ts, heapAllocDirect);
    // elsewhere, where the pool is mapped into this process, the JS one.
    this.direct = p.core.directBytes > 0;
    this.fast = this.direct || p.fastMapping === null || p.fastMapping.words.length === 0 ? null
      : new HeapFastPath(p.core, p.fastMapping, this.x.geometry(Geometry.ownerLogOffset), this.x.geometry(Geometry.dataOffset), this.dataBytes);
    this.fastMax = this.direct ? sizes[sizes.length - 1] : this.fast?.maxObject ?? 0;
  }

  /**
   * Objects this client's heap allocated and freed on a fast path: the
   * core's direct-window one (assembly/heap.ts, heapAllocDirect) where the
   * core reaches the pool directly, else the host's (src/heapcache.ts); the
   * general core path did the rest. `path` says which one this heap uses.
   */
  get fastPathOps(): { allocs: number; frees: number; path: 'direct' | 'host' | 'none' } {
    if (this.direct) return { allocs: this.x.heapDirectOps(0), frees: this.x.heapDirectOps(1), path: 'direct' };
    return { allocs: this.fast?.allocs ?? 0, frees: this.fast?.frees ?? 0, path: this.fast === null ? 'none' : 'host' };
  }

  /**
   * Allocates an object of at least `bytes` (1 .. pool size). Up to 3 KiB it
   * is a slab object (64-byte granularity at the small end), above that a
   * chunk block of 4 KiB * 2^c, or whole sections above 2 MiB.
   * @param bytes an integer from 1 to the pool's data bytes
   * @returns its gaddr
   * @throws InvalidArgumentError (bytes not such an integer: 0, NaN, a
   *   fraction, a BigInt, more than the pool's data area), PoolExhaustedError,
   *   LeaseExpiredError, PoolClosedError
   */
  alloc(bytes: number): number {
    this.p.guard();
    if (typeof bytes === 'number' && (bytes >>> 0) === bytes && bytes !== 0 && bytes <= this.fastMax) {
      const r = this.direct ? this.x.heapAllocDirect(bytes) : this.fast!.alloc(bytes);
      if (r >= 0) return this.base + r;
      if (this.direct) this.failed(r, bytes);
    }
    return this.allocGeneral(bytes);
  }

  /** heap.alloc past its common path: checks `bytes`, then the core allocates. */
  private allocGeneral(bytes: number): number {
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 1 || bytes > this.dataBytes) {
      throw new InvalidArgumentError(`heap.alloc: bytes must be an integer from 1 to the pool's ${this.dataBytes} data bytes, got ${show(bytes)}`);
    }
    const r = this.x.heapAlloc(bytes);
    if (r < 0) this.failed(r, bytes);
    return this.base + r;
  }

  /** Throws the error of core status `r` (negative) of heap.alloc(bytes). */
  private failed(r: number, bytes: number): never {
    check(r, `heap.alloc(${bytes})`);
    throw new DmemError('CORE_STATUS', `heap.alloc(${bytes}): core status ${r}`);
  }

  /**
   * Frees an object (or a heap block above 3 KiB) by gaddr, whichever client
   * allocated it.
   * @throws InvalidArgumentError (gaddr not a number), InvalidAddressError (not the start of a heap object or block),
   *   DoubleFreeError, LeaseExpiredError, PoolClosedError
   */
  free(gaddr: number): void {
    this.p.guard();
    if (this.direct && typeof gaddr === 'number') {
      // The core takes gaddr - base unchecked (assembly/heap.ts,
      // heapFreeDirect): anything that is no object of this pool, another
      // node's gaddr included, lands outside it and is refused with nothing
      // changed. Only then are the checks made, for the error that fits.
      const r = this.x.heapFreeDirect(gaddr - this.base);
      if (r < 0) this.refused(r, gaddr);
      return;
    }
    const off = this.p.offset(gaddr);
    if (this.fast !== null && this.fast.free(off)) return;
    const r = this.x.heapFree(off);
    if (r < 0) this.refused(r, gaddr);
  }

  /** Throws the error of core status `r` (negative) of heap.free(gaddr), or offset()'s when gaddr is no gaddr of this pool. */
  private refused(r: number, gaddr: number): never {
    this.p.offset(gaddr);
    check(r, `heap.free(${gaddr})`);
    throw new DmemError('CORE_STATUS', `heap.free(${gaddr}): core status ${r}`);
  }

  /**
   * Queues an object (or heap block) to be freed once every operation that
   * is in progress now, in any client (`pool.epoch`), has ended; the server's
   * lease monitor or `pool.reclaim()` frees it then. Call it after unlinking
   * the object from whatever shared structure readers find it through.
   * @throws InvalidAddressError (not a live heap object or block), PoolExhaustedError
   *   (the queue is full: operations stay in progress too long), PoolBusyError,
   *   LeaseExpiredError, PoolClosedError
   */
  freeDelayed(gaddr: number): void {
    this.p.guard();
    const off = this.p.offset(gaddr);
    check(this.x.heapFreeDelayed(off), `heap.freeDelayed(${gaddr})`);
  }

  /**
   * Gives this client's cached objects back to their slabs and releases the
   * slabs it allocates from (empty ones go back to the chunk allocator).
   * `close()` does this too. @returns how many cached objects were returned
   */
  flush(): number {
    this.p.guard();
    return this.x.heapRelease();
  }

  /**
   * Frees every slab of the pool that is empty and owned by no client (left
   * so by frees after its owner released it). The lease monitor does it on
   * every orphan sweep. @returns how many slabs were freed
   */
  trim(): number {
    this.p.guard();
    return this.x.heapTrimSlabs();
  }

  /** Pool-wide heap census, from slab metadata (reads every slab's bitmap and tags). */
  stats(): HeapStats {
    this.p.guard();
    const f = this.p.core.floats(this.x.heapCensus(), H.fields * this.classSizes.length);
    const perClass: HeapClassStats[] = this.classSizes.map((size, k) => {
      const at = H.fields * k;
      return {
        objectBytes: size, objectsPerSlab: this.x.heapClassObjects(k),
        slabs: f[at + H.slabs], objects: f[at + H.objects], cached: f[at + H.cached], requestedBytes: f[at + H.requestedBytes],
      };
    });
    const slabBytes = perClass.reduce((a, c) => a + c.slabs, 0) * Layout.slabBytes;
    const reservedBytes = perClass.reduce((a, c) => a + c.objects * c.objectBytes, 0);
    const requestedBytes = perClass.reduce((a, c) => a + c.requestedBytes, 0);
    return {
      perClass, slabBytes, reservedBytes, requestedBytes,
      fragmentation: slabBytes === 0 ? 0 : 1 - requestedBytes / slabBytes,
      cachedHere: this.x.heapCachedObjects(),
    };
  }
}
