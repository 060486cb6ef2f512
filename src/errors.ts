/**
 * Typed errors. Every failure a caller can cause or meet is a `DmemError`
 * subclass with a stable `code` (docs/design.md, "Errors"); codes never
 * change meaning between versions, so callers may switch on them.
 */

/** Base class of every error dmem throws on purpose. */
export class DmemError extends Error {
  /** Stable, machine-readable code such as `'POOL_EXHAUSTED'`. */
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** No free memory of the requested size: nothing was allocated or leaked. */
export class PoolExhaustedError extends DmemError {
  constructor(message: string) { super('POOL_EXHAUSTED', message); }
}

/** A gaddr that is 0, out of the pool, unaligned, or inside no allocation. */
export class InvalidAddressError extends DmemError {
  constructor(message: string) { super('INVALID_ADDRESS', message); }
}

/** `free` of a gaddr whose allocation was already freed. */
export class DoubleFreeError extends DmemError {
  constructor(message: string) { super('DOUBLE_FREE', message); }
}

/** A bad argument: negative size, unknown size class, malformed size string. */
export class InvalidArgumentError extends DmemError {
  constructor(message: string) { super('INVALID_ARGUMENT', message); }
}

/** The mapped file is not a dmem pool (wrong magic); nothing was written. */
export class NotAPoolError extends DmemError {
  constructor(message: string) { super('NOT_A_POOL', message); }
}

/** The pool was written by a layout version this build cannot read. */
export class VersionMismatchError extends DmemError {
  constructor(message: string) { super('VERSION_MISMATCH', message); }
}

/** Every client slot of the pool's client table is taken. */
export class ClientTableFullError extends DmemError {
  constructor(message: string) { super('CLIENT_TABLE_FULL', message); }
}

/** A transport's library, device or peer is missing; the message says what to install or check. */
export class TransportUnavailableError extends DmemError {
  constructor(message: string, options?: { cause?: unknown }) { super('TRANSPORT_UNAVAILABLE', message, options); }
}

/** A call on a transport after its `close()` (the memory is unmapped or the connection gone). */
export class TransportClosedError extends DmemError {
  constructor(message: string) { super('TRANSPORT_CLOSED', message); }
}

/** Pool metadata breaks an invariant of docs/design.md (found by a check, never silently repaired). */
export class CorruptPoolError extends DmemError {
  constructor(message: string) { super('CORRUPT_POOL', message); }
}

/** An operation on a pool that was already closed. */
export class PoolClosedError extends DmemError {
  constructor(message: string) { super('POOL_CLOSED', message); }
}

/**
 * This client's lease expired and was revoked (it stopped renewing for longer
 * than the pool's lease, e.g. it was paused): its memory is being reclaimed
 * and it must not touch the pool again. Open a new Pool to continue.
 */
export class LeaseExpiredError extends DmemError {
  constructor(message: string) { super('LEASE_EXPIRED', message); }
}

/**
 * A client that may still be running holds the slot or the pool that a
 * command needs (`dmem recover` without --force); nothing was changed.
 */
export class ClientAliveError extends DmemError {
  constructor(message: string) { super('CLIENT_ALIVE', message); }
}

/** An exclusive command (`dmem fsck`) found other clients using the pool; nothing was changed. */
export class PoolInUseError extends DmemError {
  constructor(message: string) { super('POOL_IN_USE', message); }
}

/** A region of that name exists already in the pool; nothing was changed. */
export class RegionExistsError extends DmemError {
  constructor(message: string) { super('REGION_EXISTS', message); }
}

/** No region of that name in the pool. */
export class RegionNotFoundError extends DmemError {
  constructor(message: string) { super('REGION_NOT_FOUND', message); }
}

/**
 * A pool metadata lock (region directory, delayed-free ring) stayed held by
 * a live client past the wait limit; nothing was changed, try again.
 */
export class PoolBusyError extends DmemError {
  constructor(message: string) { super('POOL_BUSY', message); }
}

/**
 * A far-memory space (src/space.ts) met an I/O error on a miss, a flush or
 * a tier move and its cache is in doubt: every later access throws this
 * (its `cause` is the original error); close still frees its pages.
 */
export class SpaceIoError extends DmemError {
  constructor(message: string, options?: { cause?: unknown }) { super('SPACE_IO', message, options); }
}

/** Tiering: a page could not move between the near and far pools (the far pool is exhausted). */
export class SpaceTierError extends DmemError {
  constructor(message: string) { super('SPACE_TIER', message); }
}

/** The paging module (build/paging.wasm) is missing: run `npm run build`. */
export class PagingModuleMissingError extends DmemError {
  constructor(message: string, options?: { cause?: unknown }) { super('PAGING_MISSING', message, options); }
}

/** A benchmark met a state its own setup rules out (a bug of the harness, not of the system measured). */
export class BenchError extends DmemError {
  constructor(message: string) { super('BENCH', message); }
}

/** A benchmark's result differs from the same computation on local memory: the system measured computed wrong. */
export class BenchMismatchError extends DmemError {
  constructor(message: string) { super('BENCH_MISMATCH', message); }
}
