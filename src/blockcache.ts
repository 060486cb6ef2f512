/**
 * The host's fast path of the per-client block cache (assembly/cache.ts):
 * where the pool's owner log is mapped into this process in one window (the
 * mapping's first: every pool of one window, and larger ones while the log
 * fits in the first; src/pool.ts), a block of
 * class 0..4 is taken out of the cache, or put into it, by JS itself with
 * one `Atomics.compareExchange` on the block's owner-log word, with no call
 * into the core and no import back (those crossings, and the BigInts they
 * box, were most of a cached operation's time: docs/performance.md).
 *
 * The cache itself stays where the core keeps it, in core memory: the
 * stacks of chunk indexes, their depths and the per-chunk class guesses
 * are read and written here through views of the core's memory at the
 * addresses the core reports (`blockCacheLayout`). A free finds the
 * block's class in its guess or, the guess evicted, in the block's own
 * owner-log word (as the core's free does). Everything else (a full class
 * to spill, an empty one to refill from the pool, a CAS that fails, a
 * block that is not this client's HELD block of a cached class, a fenced
 * client: `dropCache` zeroes the depths) goes to the core's own path,
 * which does the same and more.
 *
 * The protocol is the core's, word for word: the same two CASes
 * (assembly/cache.ts, "Concurrency"), from the exact words the core builds
 * for this client (`blockCacheWord`, read once at attach):
 *   pop   CACHED(me, gen, cls) -> HELD(me, gen, cls)
 *   push  HELD(me, gen, cls)   -> CACHED(me, gen, cls)
 * each as a 32-bit CAS of the word's lower half, which acts exactly as the
 * 64-bit CAS of the whole word (assembly/cache.ts says why) and costs no
 * BigInt; so every argument there (no stale pop, no two holders, recovery
 * and close free cached blocks, bounds and frees refuse them) holds here
 * unchanged.
 * Only the bookkeeping moves: a pop or push decided here updates the
 * core's stack and depth exactly as the core would, after its CAS won.
 * How a free finds the class (guess or owner-log word) is a hint only: the
 * push CASes from this client's HELD word of that class, so a wrong or
 * stale hint loses the CAS and changes nothing.
 *
 * Little-endian hosts only (the lower half is the word's first 4 bytes).
 * Not used while a crash point is armed (tests freeze or kill the client at
 * the core's `cache.pop`; the core path is then the one under test).
 */
import type { Core } from './core.js';

/** Size classes with a cache (assembly/cache.ts, CACHE_CLASSES). */
const CLASSES = 5;

export class BlockCacheFastPath {
  /** Allocations and frees this path completed, per class 0..4 (the core counts the rest). */
  readonly allocs = new Float64Array(CLASSES);
  readonly frees = new Float64Array(CLASSES);

  private readonly x: Core['exports'];
  /** The pool mapping as 32-bit halves: the lower half of word w is index 2w. */
  private readonly halves: Int32Array;
  private readonly logWord0: number;
  private readonly dataOffset: number;
  private readonly chunks: number;
  private readonly limit: number;
  /** Lower halves of this client's HELD and CACHED words, per class (their upper halves are 0). */
  private readonly held = new Int32Array(CLASSES);
  private readonly cached = new Int32Array(CLASSES);
  private readonly stackAt: number;
  private readonly depthAt: number;
  private readonly guessAt: number;
  private readonly guessMask: number;
  private readonly perClass: number;
  private stack!: Uint32Array;
  private depth!: Uint32Array;
  private guess!: Uint8Array;

  /**
   * @param words the mapping's first window (MappedMemory.windowArrays), holding the whole owner log
   * @param ownerLogOffset byte offset of the owner log; @param dataOffset of chunk 0
   * @param chunks chunks in the data area; @param limit blocks per class the cache holds
   */
  constructor(core: Core, words: BigInt64Array, ownerLogOffset: number, dataOffset: number, chunks: number, limit: number) {
    this.x = core.exports;
    this.halves = new Int32Array(words.buffer, words.byteOffset, words.length * 2);
    this.logWord0 = ownerLogOffset / 8;
    this.dataOffset = dataOffset;
    this.chunks = chunks;
    this.limit = limit;
    for (let c = 0; c < CLASSES; c++) {
      this.held[c] = Number(BigInt.asIntN(32, this.x.blockCacheWord(c, 0)));
      this.cached[c] = Number(BigInt.asIntN(32, this.x.blockCacheWord(c, 1)));
    }
    this.stackAt = this.x.blockCacheLayout(0);
    this.depthAt = this.x.blockCacheLayout(1);
    this.guessAt = this.x.blockCacheLayout(2);
    this.guessMask = this.x.blockCacheLayout(3) - 1;
    this.perClass = this.x.blockCacheLayout(4);
    this.remap();
  }

  /**
   * Views of the core's stacks, depths and guesses; again after the core's
   * memory grew: its old buffer is detached,
   * and views of a detached buffer have length 0, which is what the hot
   * path checks (reading `memory.buffer` is a call into the VM each time).
   */
  private remap(): void {
    const buffer = this.x.memory.buffer;
    this.stack = new Uint32Array(buffer, this.stackAt, CLASSES * this.perClass);
    this.depth = new Uint32Array(buffer, this.depthAt, CLASSES);
    this.guess = new Uint8Array(buffer, this.guessAt, this.guessMask + 1);
  }

  /**
   * Takes a cached block of class `cls` (0..4). Returns its byte offset, or
   * -1 when the core must allocate (nothing cached, or the CAS lost).
   */
  alloc(cls: number): number {
    if (this.depth.length === 0) this.remap();
    const n = this.depth[cls];
    if (n === 0) return -1;
    const chunk = this.stack[cls * this.perClass + n - 1];
    const want = this.cached[cls];
    if (Atomics.compareExchange(this.halves, 2 * (this.logWord0 + chunk), want, this.held[cls]) !== want) return -1;
    this.depth[cls] = n - 1;
    this.guess[chunk & this.guessMask] = cls + 1;
    this.allocs[cls]++;
    return this.dataOffset + chunk * 4096;
  }

  /**
   * Caches the block at byte offset `off` if it is this client's block of a
   * class it guessed (or, its guess evicted, finds in the block's owner-log
   * word: `heldClass`), and that class has room. Returns false when the
   * core must free it (nothing was changed then).
   */
  free(off: number): boolean {
    // The division by a power of two is exact, so chunk is an integer
    // exactly when off is chunk-aligned: the same test as `rel % 4096 === 0`
    // without a float modulo (chunks < 2^31, so `| 0` keeps every valid one).
    const chunk = (off - this.dataOffset) / 4096;
    if (!(chunk >= 0 && chunk < this.chunks) || (chunk | 0) !== chunk) return false;
    if (this.depth.length === 0) this.remap();
    const g = this.guess[chunk & this.guessMask];
    const cls = g !== 0 ? g - 1 : this.heldClass(chunk);
    if (cls < 0 || (chunk & ((1 << cls) - 1)) !== 0) return false;
    const n = this.depth[cls];
    if (n >= this.limit) return false;
    const want = this.held[cls];
    if (Atomics.compareExchange(this.halves, 2 * (this.logWord0 + chunk), want, this.cached[cls]) !== want) return false;
    this.stack[cls * this.perClass + n] = chunk;
    this.depth[cls] = n + 1;
    this.guess[chunk & this.guessMask] = 0;
    this.frees[cls]++;
    return true;
  }

  /**
   * The class of the block at `chunk` when its owner-log word (lower half,
   * one Atomics.load) is this client's HELD word of a cached class, else
   * -1: for a block whose guess was evicted from the direct-mapped guess
   * table by another chunk with the same low bits (a pool of more chunks
   * than the table has entries), as the core's free does in that case
   * (assembly/alloc.ts freeChunk, "without a guess"). Only a hint, as the
   * guess is: the push's CAS is still from this client's exact HELD word of
   * that class, so a word that changed since this load (freed by another
   * client, recovered) fails the CAS and nothing changes.
   */
  private heldClass(chunk: number): number {
    const lo = Atomics.load(this.halves, 2 * (this.logWord0 + chunk));
    for (let c = 0; c < CLASSES; c++) if (this.held[c] === lo) return c;
    return -1;
  }
}
