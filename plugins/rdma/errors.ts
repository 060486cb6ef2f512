/**
 * Errors of the rdma plugin, beyond src/errors.ts. Stable codes:
 *   TRANSPORT_FAILED  a posted fabric operation failed or never completed
 *                     (the peer went away, the key was revoked, a timeout)
 *   AUTH_FAILED       the memory node refused the bootstrap token
 */
import { DmemError } from '../../src/errors.js';

/**
 * A one-sided operation (read, write, atomic) failed at the fabric: its
 * completion carried an error, or none came within the operation timeout.
 * A client whose memory-registration key was cut by the server (fencing,
 * docs/rdma.md) sees this on its next operation; nothing it posted after
 * the cut reached the pool.
 */
export class TransportFailedError extends DmemError {
  /** libfabric error number (positive, FI_E* / errno), 0 for a timeout. */
  readonly fiErrno: number;

  constructor(message: string, fiErrno: number) {
    super('TRANSPORT_FAILED', message);
    this.fiErrno = fiErrno;
  }
}

/** The memory node refused the bootstrap token; nothing about the pool was revealed. */
export class AuthFailedError extends DmemError {
  constructor(message: string) { super('AUTH_FAILED', message); }
}
