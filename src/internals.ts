/**
 * What the parts of the client API built on a Pool (heap, regions, epochs)
 * see of it. Not exported from the package: a Pool hands it to its own
 * helpers only.
 *
 * Keep it plain data (no getters): V8 keeps an object literal with an
 * accessor in dictionary mode, and then every `p.guard()` on the hot path is
 * a generic property lookup (a LoadIC call, about 3 ns) instead of a field
 * load.
 */
import type { Core, CoreExports } from './core.js';
import type { Transport } from './transport.js';

export interface PoolInternals {
  readonly core: Core;
  /** The core's exports (src/core.ts, CoreExports). */
  readonly x: CoreExports;
  readonly transport: Transport;
  /** Memory-node id in gaddrs. */
  readonly node: number;
  /** Every call's entry check: throws PoolClosedError or LeaseExpiredError. */
  guard(): void;
  /** The pool byte offset of `gaddr`. @throws InvalidAddressError when it is not a gaddr of this pool */
  offset(gaddr: number): number;
  /** The gaddr of pool byte offset `offset`. */
  gaddr(offset: number): number;
  /** The pool mapping's windows when host fast paths may use them (little-endian, no crash point armed), else null. */
  readonly fastMapping: { words: BigInt64Array[]; windowBytes: number } | null;
}
