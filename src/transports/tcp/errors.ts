/**
 * Re-creating typed errors on the client from the code a server sent
 * (src/errors.ts classes; the code is the stable part, the message is the
 * server's).
 */
import {
  ClientAliveError, ClientTableFullError, CorruptPoolError, DmemError, DoubleFreeError, InvalidAddressError,
  InvalidArgumentError, LeaseExpiredError, NotAPoolError, PoolBusyError, PoolClosedError, PoolExhaustedError,
  PoolInUseError, RegionExistsError, RegionNotFoundError, TransportUnavailableError, VersionMismatchError,
} from '../../errors.js';
import { AuthFailedError, ProtocolError } from './protocol.js';

type ErrorClass = new (message: string) => DmemError;

const byCode: Record<string, ErrorClass> = {
  POOL_EXHAUSTED: PoolExhaustedError,
  INVALID_ADDRESS: InvalidAddressError,
  DOUBLE_FREE: DoubleFreeError,
  INVALID_ARGUMENT: InvalidArgumentError,
  NOT_A_POOL: NotAPoolError,
  VERSION_MISMATCH: VersionMismatchError,
  CLIENT_TABLE_FULL: ClientTableFullError,
  TRANSPORT_UNAVAILABLE: TransportUnavailableError,
  CORRUPT_POOL: CorruptPoolError,
  POOL_CLOSED: PoolClosedError,
  LEASE_EXPIRED: LeaseExpiredError,
  CLIENT_ALIVE: ClientAliveError,
  POOL_IN_USE: PoolInUseError,
  REGION_EXISTS: RegionExistsError,
  REGION_NOT_FOUND: RegionNotFoundError,
  POOL_BUSY: PoolBusyError,
  AUTH_FAILED: AuthFailedError,
  PROTOCOL: ProtocolError,
};

/** The DmemError subclass for `code` (a plain DmemError for codes this build does not know). */
export function remoteError(code: string, message: string): DmemError {
  const cls = byCode[code];
  return cls ? new cls(message) : new DmemError(code, message);
}
