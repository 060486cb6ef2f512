/**
 * The memory an ofi memory node registers: the whole pool file mapped once,
 * MAP_SHARED, in one piece, so that one memory registration covers the
 * pool however large it is (up to the 1 TiB a gaddr can address). The
 * node's own Pool (lease monitor) maps the same file through cxl-shm; two
 * MAP_SHARED mappings of one file are the same physical pages, so the
 * monitor's CPU atomics and the provider's atomics act on the same words.
 */
import { TransportUnavailableError } from '../../src/errors.js';
import { O_CLOEXEC, O_RDWR, SyscallError, closeFile, describeFd, mapShared, openFile, unmap } from '../cxl-shm/mmap.js';
import { shmPath } from '../cxl-shm/index.js';
import type { ServedMemory } from './server.js';

/** A whole-pool mapping; `unmap()` releases it (after the server closed). */
export interface PoolMapping extends ServedMemory {
  path: string;
  unmap(): void;
}

/**
 * Maps pool `nameOrPath` (see cxl-shm's shmPath) read-write in one piece.
 * @param bytes the size to map for a device (/dev/daxX.Y), which has no length of its own; ignored for files
 * @throws TransportUnavailableError when the file cannot be opened or mapped
 */
export function mapWholePool(nameOrPath: string, layoutVersion: number, bytes?: number): PoolMapping {
  const path = shmPath(nameOrPath);
  let fd: number;
  try {
    fd = openFile(path, O_RDWR | O_CLOEXEC, 0);
  } catch (e) {
    throw new TransportUnavailableError(`cannot open pool ${path} to register it: ${(e as Error).message}`, { cause: e });
  }
  try {
    const facts = describeFd(fd);
    const size = facts.kind === 'file' ? facts.size : bytes ?? 0;
    if (size <= 0) throw new TransportUnavailableError(`pool ${path} has no length to register`);
    const ptr = mapShared(fd, size, 0);
    let mapped = true;
    return {
      path, ptr, bytes: size, layoutVersion,
      unmap: () => { if (mapped) { mapped = false; unmap(ptr, size); } },
    };
  } catch (e) {
    if (e instanceof SyscallError) throw new TransportUnavailableError(`cannot map pool ${path} for registration: ${e.message}`, { cause: e });
    throw e;
  } finally {
    closeFile(fd);
  }
}
