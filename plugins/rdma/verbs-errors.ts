/**
 * Errors of the verbs backend (verbs.ts, verbs-transport.ts,
 * verbs-server.ts). Both keep the stable codes of the classes they extend,
 * so code that handles the ofi transport's errors handles these too:
 *   TRANSPORT_UNAVAILABLE  VerbsUnavailableError: a missing piece (library,
 *                          kernel support, device, address, atomics), with
 *                          `missing` saying which, and the message what to
 *                          install or check
 *   TRANSPORT_FAILED       VerbsOpError: a posted work request completed
 *                          with an error or not at all (the QP is dead)
 */
import { TransportUnavailableError } from '../../src/errors.js';
import { TransportFailedError } from './errors.js';

/** Which piece a verbs endpoint lacks. */
export type VerbsMissing =
  | 'koffi' // the koffi npm package or its native part
  | 'library' // libibverbs.so.1 or librdmacm.so.1
  | 'device' // ibv_get_device_list found no RDMA device
  | 'kernel' // /dev/infiniband/rdma_cm (rdma_ucm) or the uverbs device cannot be opened
  | 'address' // no RDMA device owns the address to listen on or to reach
  | 'atomics' // the device does not do 64-bit RDMA atomics
  | 'peer'; // the memory node refused or dropped the rdma_cm connection

/** A piece the verbs backend needs is absent; the message names what to install or check. */
export class VerbsUnavailableError extends TransportUnavailableError {
  readonly missing: VerbsMissing;

  constructor(missing: VerbsMissing, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.missing = missing;
  }
}

/**
 * A work request (RDMA READ, WRITE or atomic) completed with an error status,
 * or did not complete within the operation timeout. The QP is in the error
 * state afterwards: the transport is broken for good. A client whose QP and
 * memory registration the memory node cut (fencing, docs/rdma.md) sees this.
 */
export class VerbsOpError extends TransportFailedError {
  /** The ibv_wc_status of the completion (IBV_WC_REM_ACCESS_ERR = 10, ...); -1 for a timeout or a failed post. */
  readonly wcStatus: number;

  constructor(message: string, wcStatus: number) {
    super(message, 0);
    this.wcStatus = wcStatus;
  }
}
