/**
 * cxl-shm transport: a pool that lives in a shared file mapping, reached by
 * every process on the host (or, on a CXL 3 shared-memory device exposed as
 * /dev/daxX.Y, every host on the fabric) with plain loads, stores and atomic
 * instructions. This is the "CXL tier" of Rcmp and the one-sided medium of
 * FineMem (docs/design.md, "Layers").
 *
 * Media:
 *   /dev/shm/dmem-NAME     tmpfs file, sparse: pages are allocated on first touch
 *   /dev/hugepages/FILE    hugetlbfs file: lengths and offsets in huge pages
 *   /dev/daxX.Y            devdax character device: no length of its own, the
 *                          size comes from sysfs unless given; mappings are
 *                          2 MiB aligned; a fresh (all-zero) device is claimed
 *                          for formatting (devdax.ts)
 *
 * Layout of the mapping (one window per mmap, one koffi.view per window):
 *
 *   file offset 0        W           2W                      size
 *               +--------+-----------+-----  ...  -----+------+
 *               | win 0  |  win 1    |                 | last |   last <= W
 *               +--------+-----------+-----  ...  -----+------+
 *
 * W = windowBytes, a power of two (1 GiB by default) and a multiple of the
 * mapping alignment, so that an 8-aligned word never straddles two windows and
 * every window starts at a legal mmap offset. One window is one V8
 * ArrayBuffer; windows need not be adjacent in the address space.
 *
 * Concurrency argument: every process maps the same file MAP_SHARED, so a
 * pool word is one physical memory location, whatever virtual address (or
 * window, or second mapping in the same process) it is reached through. The
 * transport's cas64/faa64 are Atomics.compareExchange/Atomics.add on a
 * BigInt64Array over the mapping, which V8 compiles to the CPU's atomic
 * read-modify-write (lock cmpxchg / lock xadd on x86-64, LSE or LL/SC on
 * arm64); these are atomic and sequentially consistent across cores because
 * cache coherence works on physical addresses, so two processes incrementing
 * one word never lose an update (test/cxl-shm.test.ts checks 2 x 100k). Bulk
 * read/write are plain byte copies with no ordering: the core publishes data
 * with a CAS or store64 after writing it. Across hosts the same holds only
 * where the CXL device is hardware-coherent; that is the device's promise,
 * not ours.
 *
 * Creation race: with `create`, the file is opened O_CREAT|O_EXCL so exactly
 * one process reports `created` and sets the length. Another process that
 * opens it in between sees length 0 and gets TransportUnavailableError (retry
 * later); it never maps a pool of the wrong size. An existing pool is never
 * resized: its length is the pool size.
 *
 * Hazards the caller must know: after `close()` the views point at unmapped
 * memory and any access is a SIGSEGV (views of external memory cannot be
 * detached), so the pool layer must stop using a transport before closing
 * it. Touching a page of a sparse tmpfs pool when /dev/shm is full, or after
 * another process truncated the file, raises SIGBUS.
 */
import { InvalidArgumentError, TransportUnavailableError, WindowedTransport } from 'dmem/transport';
import type { DirectWindow } from 'dmem/transport';
import { claimIfFresh, daxSizeFromSysfs } from './devdax.js';
import {
  O_CLOEXEC, O_CREAT, O_EXCL, O_RDWR, SyscallError,
  addressOf, closeFile, describeFd, describeFilesystem, describePath, ensureLibc, mapAnonymousAt, mapShared, mapSharedAt, openFile, pageSize, truncateFile, unlinkFile, unmap, viewOf,
} from './mmap.js';

/** Directory and file name prefix of pools given by bare name. */
export const SHM_PREFIX = '/dev/shm/dmem-';
/** Default window length in bytes (1 GiB). */
export const DEFAULT_WINDOW_BYTES = 2 ** 30;
/** Alignment of devdax mappings in bytes (2 MiB, the default devdax `align`). */
export const DAX_ALIGN_BYTES = 2 * 2 ** 20;
/** Largest window in bytes: one V8 ArrayBuffer (4 GiB). */
export const MAX_WINDOW_BYTES = 2 ** 32;
/** Largest pool in bytes: the 40-bit byte offset of a gaddr (1 TiB). */
export const MAX_POOL_BYTES = 2 ** 40;
/** Permission bits of a created pool file (before umask): its creator's user only. */
const CREATE_MODE = 0o600;

/** Options of `openShm`. */
export interface ShmOptions {
  /** Pool size in bytes: required to create a file; for a devdax device, default its size in sysfs; ignored for an existing file. */
  size?: number;
  /** Create the file when it does not exist (O_CREAT | O_EXCL; `created` reports who did). */
  create?: boolean;
  /** Bytes per mmap window: a power of two, >= the page size, a multiple of the medium's alignment (default 1 GiB). */
  windowBytes?: number;
  /** Where sysfs is mounted, to read a devdax device's size (default '/sys'; tests only). */
  sysfsRoot?: string;
}

/** An open cxl-shm pool mapping. */
export interface ShmMapping {
  /** The transport over the mapping; `transport.close()` unmaps and closes the file (idempotent). */
  transport: WindowedTransport;
  /** The file or device mapped. */
  path: string;
  /** True when this call created the file, or claimed a fresh device (`claimed`): the caller formats it. */
  created: boolean;
  /** True when the medium is a devdax device that was all zero and this call claimed it (FORMAT_CLAIM in word 0). */
  claimed: boolean;
}

/**
 * The path of a pool: a bare name maps to `/dev/shm/dmem-NAME`; an absolute
 * path (a /dev/shm file, a hugetlbfs file, /dev/daxX.Y) is kept as given.
 * @param nameOrPath pool name (no '/', not '..') or absolute path
 * @throws InvalidArgumentError for an empty name, a relative path, a name containing '..' or a NUL byte
 */
export function shmPath(nameOrPath: string): string {
  if (nameOrPath.includes('\0')) throw new InvalidArgumentError(`pool name ${JSON.stringify(nameOrPath)} contains a NUL byte`);
  if (nameOrPath.startsWith('/')) return nameOrPath;
  if (nameOrPath === '' || nameOrPath.includes('/') || nameOrPath.includes('..')) {
    throw new InvalidArgumentError(
      `invalid pool name ${JSON.stringify(nameOrPath)}: use a bare name without '/' or '..' (it becomes ${SHM_PREFIX}NAME) or an absolute path`,
    );
  }
  return SHM_PREFIX + nameOrPath;
}

/**
 * Opens (and with `create`, creates) a pool file or device and maps all of
 * it MAP_SHARED read-write, as windows of `windowBytes` (the last may be
 * shorter). A created regular file gets length `size` (sparse); an existing
 * one keeps its length, which is the pool size even if `size` differs. A
 * devdax device is never resized and needs `size`.
 * @param nameOrPath see `shmPath`
 * @returns the transport (kind 'cxl-shm', size in bytes), the path, and whether this call created the file
 * @throws InvalidArgumentError for a bad name, size (not a positive multiple of 8 up to 1 TiB, or misaligned for the medium), windowBytes, a missing size where one is needed, or a path that is not a regular file or character device
 * @throws TransportUnavailableError when koffi or libc is missing, the pool does not exist (without `create`), is empty, permission is denied, or the OS refuses the mapping (memory, huge pages, descriptors)
 */
export function openShm(nameOrPath: string, opts: ShmOptions = {}): ShmMapping {
  const path = shmPath(nameOrPath);
  if (opts.size !== undefined) checkSize(opts.size, path);
  const windowBytes = opts.windowBytes ?? DEFAULT_WINDOW_BYTES;
  checkWindow(windowBytes);
  ensureLibc();

  const { fd, created } = openPool(path, nameOrPath, opts);
  const mapped: Array<{ ptr: bigint; bytes: number }> = [];
  try {
    const { size, device, align } = poolSize(fd, path, nameOrPath, created, opts, windowBytes);
    const buffers: ArrayBuffer[] = [];
    for (let offset = 0; offset < size; offset += windowBytes) {
      const bytes = Math.min(windowBytes, size - offset);
      const ptr = syscall(() => mapShared(fd, bytes, offset), path, nameOrPath);
      mapped.push({ ptr, bytes });
      buffers.push(viewOf(ptr, bytes));
    }
    const transport = new WindowedTransport('cxl-shm', buffers, windowBytes, () => release(fd, mapped, path),
      (memory, bytes) => mapIntoMemory(memory, fd, bytes, align));
    const claimed = device && opts.create === true && claimIfFresh(transport);
    return { transport, path, created: created || claimed, claimed };
  } catch (err) {
    try {
      release(fd, mapped, path);
    } catch {
      // The error that stopped the open is the one worth reporting.
    }
    if (created) removeQuietly(path);
    throw err;
  }
}

/**
 * Removes a pool file (unlink). Mappings that are open stay valid until
 * closed; the memory is freed when the last one goes.
 * @param nameOrPath see `shmPath`
 * @returns true when the file existed and was removed, false when it did not exist
 * @throws InvalidArgumentError for a bad name, or a path that is a device (a devdax device is never unlinked)
 * @throws TransportUnavailableError when koffi or libc is missing or the OS refuses (permission, read-only filesystem)
 */
export function removeShm(nameOrPath: string): boolean {
  const path = shmPath(nameOrPath);
  ensureLibc();
  const kind = describePath(path);
  if (kind === null) return false;
  if (kind === 'char' || kind === 'other') {
    throw new InvalidArgumentError(`${path} is not a pool file (it is a device or special file): refusing to remove it`);
  }
  try {
    unlinkFile(path);
    return true;
  } catch (err) {
    if (err instanceof SyscallError && err.errname === 'ENOENT') return false;
    throw translate(err, path, nameOrPath);
  }
}

/** @throws InvalidArgumentError unless size is a positive multiple of 8 up to MAX_POOL_BYTES */
function checkSize(size: number, path: string): void {
  if (!Number.isSafeInteger(size) || size <= 0 || size % 8 !== 0 || size > MAX_POOL_BYTES) {
    throw new InvalidArgumentError(`pool size for ${path} must be a positive multiple of 8 bytes up to ${MAX_POOL_BYTES} (1 TiB), got ${size}`);
  }
}

/** @throws InvalidArgumentError unless windowBytes is a power of two in [4096, MAX_WINDOW_BYTES] */
function checkWindow(windowBytes: number): void {
  const pow2 = Number.isSafeInteger(windowBytes) && windowBytes > 0 && 2 ** Math.round(Math.log2(windowBytes)) === windowBytes;
  if (!pow2 || windowBytes < 4096 || windowBytes > MAX_WINDOW_BYTES) {
    throw new InvalidArgumentError(
      `windowBytes must be a power of two from 4096 to ${MAX_WINDOW_BYTES} bytes (default ${DEFAULT_WINDOW_BYTES}; below 2 MiB only for tests on /dev/shm), got ${windowBytes}`,
    );
  }
}

/**
 * Opens the pool read-write. With `create` and a size, tries O_CREAT|O_EXCL
 * first and falls back to opening the existing file, so exactly one racing
 * creator sees `created`.
 */
function openPool(path: string, name: string, opts: ShmOptions): { fd: number; created: boolean } {
  if (opts.create && opts.size !== undefined && !path.startsWith('/dev/dax')) {
    try {
      return { fd: openFile(path, O_RDWR | O_CLOEXEC | O_CREAT | O_EXCL, CREATE_MODE), created: true };
    } catch (err) {
      if (!(err instanceof SyscallError) || err.errname !== 'EEXIST') throw translate(err, path, name);
    }
  }
  try {
    return { fd: openFile(path, O_RDWR | O_CLOEXEC, 0), created: false };
  } catch (err) {
    if (opts.create && err instanceof SyscallError && err.errname === 'ENOENT') {
      throw new InvalidArgumentError(`cannot create pool ${path} without a size: pass size (bytes)`);
    }
    throw translate(err, path, name);
  }
}

/** Bytes of one Wasm memory page. */
const WASM_PAGE_BYTES = 65536;

/**
 * `MappedMemory.mapInto` of this medium (docs/abi.md, "Direct window"):
 * grows `memory` by enough pages to hold the file's first `bytes` at an
 * address aligned for the medium, and maps them there a second time with
 * mmap MAP_SHARED | MAP_FIXED over the pages just grown, which nothing in
 * the instance uses yet. A Wasm memory on a 64-bit host is one reservation
 * that grows in place and is never moved, so the mapping stays where it was
 * put until `release` (or until the memory itself is freed, which unmaps the
 * whole reservation). The file descriptor may be closed meanwhile: a
 * mapping keeps its file.
 * @returns the window, or null when the memory cannot grow that far (Wasm
 *   memories stop at 4 GiB) or mmap refuses; the grown pages then stay the
 *   memory's own, unused
 */
function mapIntoMemory(memory: WebAssembly.Memory, fd: number, bytes: number, align: number): DirectWindow | null {
  const step = Math.max(align, WASM_PAGE_BYTES);
  const length = Math.ceil(bytes / align) * align;
  const pages = Math.ceil((length + step) / WASM_PAGE_BYTES);
  let before: number;
  try {
    before = memory.grow(pages) * WASM_PAGE_BYTES;
  } catch {
    return null;
  }
  const start = addressOf(memory.buffer);
  const misalign = Number((start + BigInt(before)) % BigInt(step));
  const base = before + (misalign === 0 ? 0 : step - misalign);
  const addr = start + BigInt(base);
  try {
    mapSharedAt(addr, fd, length, 0);
  } catch {
    return null;
  }
  let released = false;
  return {
    base, bytes,
    release(): void {
      if (released) return;
      released = true;
      mapAnonymousAt(addr, length);
    },
  };
}

/**
 * The pool size in bytes for the open file (a devdax device's from sysfs
 * unless given), after checking the size and windowBytes against the
 * medium's mapping alignment; sets the length of a file this call created.
 * `align` is that alignment (bytes): pages, huge pages, or devdax's 2 MiB.
 */
function poolSize(fd: number, path: string, name: string, created: boolean, opts: ShmOptions, windowBytes: number): { size: number; device: boolean; align: number } {
  const facts = describeFd(fd);
  const wanted = opts.size;
  if (facts.kind === 'char') {
    const size = wanted ?? daxSizeFromSysfs(path, facts.rdev, opts.sysfsRoot);
    checkSize(size, path);
    requireMultiple(path, 'pool size', size, DAX_ALIGN_BYTES, 'devdax');
    requireMultiple(path, 'windowBytes', windowBytes, DAX_ALIGN_BYTES, 'devdax');
    return { size, device: true, align: DAX_ALIGN_BYTES };
  }
  if (facts.kind !== 'file') {
    throw new InvalidArgumentError(`${path} is neither a regular file (/dev/shm, hugetlbfs) nor a devdax character device`);
  }
  const fs = describeFilesystem(path);
  const medium = fs.hugetlbfs ? 'hugetlbfs' : 'pages on this system';
  const align = fs.hugetlbfs ? fs.blockBytes : pageSize();
  requireMultiple(path, 'windowBytes', windowBytes, align, medium);
  if (!created) {
    if (facts.size === 0) {
      throw new TransportUnavailableError(`pool ${path} is empty (0 bytes): another process may be creating it; retry, or remove it and create it with \`dmem server --pool ${name} --size BYTES\``);
    }
    if (facts.size > MAX_POOL_BYTES) {
      throw new InvalidArgumentError(`pool ${path} is ${facts.size} bytes, more than a memory node can address (${MAX_POOL_BYTES} bytes, 1 TiB)`);
    }
    return { size: facts.size, device: false, align };
  }
  if (wanted === undefined) throw new InvalidArgumentError(`cannot create pool ${path} without a size: pass size (bytes)`);
  if (fs.hugetlbfs) requireMultiple(path, 'pool size', wanted, align, medium);
  if (fs.totalBytes > 0 && wanted > fs.totalBytes) {
    throw new InvalidArgumentError(`pool of ${wanted} bytes does not fit in the filesystem of ${path} (${fs.totalBytes} bytes): choose a smaller size or enlarge the filesystem (\`mount -o remount,size=...\`)`);
  }
  syscall(() => truncateFile(fd, wanted), path, name);
  return { size: wanted, device: false, align };
}

/** @throws InvalidArgumentError unless `value` (bytes) is a multiple of `align` (bytes) */
function requireMultiple(path: string, what: string, value: number, align: number, medium: string): void {
  if (value % align !== 0) {
    throw new InvalidArgumentError(`${what} ${value} bytes for ${path} is not a multiple of ${align} bytes, the mapping alignment of ${medium}`);
  }
}

/** Runs one wrapped system call, translating its failure. */
function syscall<T>(call: () => T, path: string, name: string): T {
  try {
    return call();
  } catch (err) {
    throw translate(err, path, name);
  }
}

/** Unmaps every window and closes the descriptor; tries all, then throws the first failure. */
function release(fd: number, mapped: Array<{ ptr: bigint; bytes: number }>, path: string): void {
  let first: unknown = null;
  for (const m of mapped.splice(0)) {
    try {
      unmap(m.ptr, m.bytes);
    } catch (err) {
      first ??= err;
    }
  }
  try {
    closeFile(fd);
  } catch (err) {
    first ??= err;
  }
  if (first !== null) throw translate(first, path, path);
}

/** unlink that ignores failure: used only to undo a creation that failed half-way. */
function removeQuietly(path: string): void {
  try {
    unlinkFile(path);
  } catch {
    return;
  }
}

/**
 * A DmemError for a failed system call on `path`, with the OS's text and
 * what to do. Errors that are not SyscallError pass through unchanged.
 */
function translate(err: unknown, path: string, name: string): unknown {
  if (!(err instanceof SyscallError)) return err;
  const what = `${err.syscall} ${path}: ${err.reason} (${err.errname})`;
  const dax = path.startsWith('/dev/dax');
  const huge = path.startsWith('/dev/hugepages');
  switch (err.errname) {
    case 'ENOENT':
      if (dax) return new TransportUnavailableError(`${what}: no such DAX device; create one with \`ndctl create-namespace --mode=devdax\` and list them with \`daxctl list\``);
      if (huge) return new TransportUnavailableError(`${what}: mount hugetlbfs (\`mount -t hugetlbfs none /dev/hugepages\`) and create the pool with \`dmem server --pool ${name} --size BYTES\``);
      return new TransportUnavailableError(`${what}: the pool does not exist; create it with \`dmem server --pool ${name} --size BYTES\``);
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new TransportUnavailableError(`${what}: permission denied; run as the pool's owner or change its mode (pools are created 0600)`);
    case 'ENOMEM':
      if (huge) return new TransportUnavailableError(`${what}: not enough free huge pages; reserve more (\`echo N > /proc/sys/vm/nr_hugepages\`)`);
      return new TransportUnavailableError(`${what}: not enough memory or address space for the mapping; check \`ulimit -v\` and vm.max_map_count, or use larger windows`);
    case 'EMFILE':
    case 'ENFILE':
      return new TransportUnavailableError(`${what}: too many open files; raise \`ulimit -n\` or close other pools`);
    case 'ENODEV':
      return new TransportUnavailableError(`${what}: this file or device cannot be memory-mapped; use a /dev/shm file, a hugetlbfs file or a devdax device`);
    case 'EINVAL':
      return new InvalidArgumentError(`${what}: the size or window is not aligned for this medium (hugetlbfs: huge pages; devdax: 2 MiB) or the size is out of range`);
    case 'ENOSPC':
    case 'EFBIG':
      return new InvalidArgumentError(`${what}: the pool does not fit; choose a smaller size or free space in the filesystem`);
    case 'EISDIR':
    case 'ENOTDIR':
    case 'ENAMETOOLONG':
    case 'ELOOP':
      return new InvalidArgumentError(`${what}: not a usable pool path`);
    default:
      return new TransportUnavailableError(`${what}`, { cause: err });
  }
}
