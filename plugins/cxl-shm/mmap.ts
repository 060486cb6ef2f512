/**
 * The few libc calls cxl-shm needs (open, close, ftruncate, mmap, munmap,
 * unlink, strerror, getpagesize), bound with koffi 3, plus the file facts
 * Node already reports (fstat, statfs) so that no `struct stat` layout is
 * written by hand.
 *
 * Loading: koffi and libc are loaded on the first call, not at import, so a
 * program that never uses cxl-shm runs where koffi or its native package is
 * missing. A failed load throws TransportUnavailableError naming what to
 * install; only 64-bit Linux is supported (the flag values below are the
 * generic Linux ones, and `off_t` is bound as int64_t).
 *
 * Errors: every wrapper checks the C return value and reads `koffi.errno()`
 * immediately after the failing call, before any other foreign call can
 * overwrite it, and throws `SyscallError` (syscall, errno, its name, the
 * strerror text). SyscallError is internal to the plugin: index.ts turns it
 * into a DmemError that names the path and what to do.
 *
 * Pointers: koffi 3 returns a `void *` as a BigInt (no longer an opaque
 * external). mmap's failure value MAP_FAILED is `(void *)-1`, which koffi
 * hands back as 2^64 - 1 (not null, not -1), so `mapShared` compares the
 * BigInt with that constant; a null result (address 0) is also refused.
 *
 * Lifetime: `viewOf` wraps mapped memory in an ArrayBuffer without copying.
 * Such an ArrayBuffer cannot be detached (structuredClone with `transfer`
 * leaves it intact), so after `unmap` any access through it is a SIGSEGV,
 * not an exception: callers drop every view before unmapping.
 */
import { createRequire } from 'node:module';
import { fstatSync, lstatSync, statfsSync } from 'node:fs';
import { TransportUnavailableError } from 'dmem/transport';

type Koffi = typeof import('koffi').default;

/** open(2) flags and mmap(2) arguments, generic Linux values (x86-64, arm64, riscv64). */
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_CLOEXEC = 0o2000000;
const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x1;
const MAP_PRIVATE = 0x2;
const MAP_FIXED = 0x10;
const MAP_ANONYMOUS = 0x20;
/** `(void *)-1` as koffi 3 returns it on a 64-bit target. */
const MAP_FAILED = (1n << 64n) - 1n;
/** statfs f_type of hugetlbfs (linux/magic.h). */
const HUGETLBFS_MAGIC = 0x958458f6;

/** A failed system call: which one, its errno and the C library's text for it. */
export class SyscallError extends Error {
  /** Name of the libc function that failed, such as `'mmap'`. */
  readonly syscall: string;
  /** errno value after the call. */
  readonly errno: number;
  /** Symbolic errno name such as `'ENOENT'`, or `'E<number>'` when unknown. */
  readonly errname: string;
  /** strerror(errno). */
  readonly reason: string;

  constructor(syscall: string, errno: number, errname: string, reason: string) {
    super(`${syscall}: ${reason} (${errname})`);
    this.name = 'SyscallError';
    this.syscall = syscall;
    this.errno = errno;
    this.errname = errname;
    this.reason = reason;
  }
}

interface Libc {
  koffi: Koffi;
  open: (path: string, flags: number, mode: number) => number;
  close: (fd: number) => number;
  ftruncate: (fd: number, length: number) => number;
  mmap: (addr: null, length: number, prot: number, flags: number, fd: number, offset: number) => bigint | null;
  /** mmap with a fixed address (MAP_FIXED), bound with the address as an integer. */
  mmapAt: (addr: bigint, length: number, prot: number, flags: number, fd: number, offset: number) => bigint | null;
  munmap: (addr: bigint, length: number) => number;
  unlink: (path: string) => number;
  strerror: (errnum: number) => string;
  getpagesize: () => number;
  errnames: Map<number, string>;
}

let loaded: Libc | null = null;

/** Binds libc on first use; later calls return the same bindings. */
function libc(): Libc {
  if (loaded !== null) return loaded;
  if (process.platform !== 'linux') {
    throw new TransportUnavailableError(`cxl-shm needs Linux (mmap of /dev/shm, hugetlbfs or /dev/daxX.Y); this is ${process.platform}: use the tcp transport instead`);
  }
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (err) {
    throw new TransportUnavailableError(
      'cxl-shm needs the koffi FFI package and its native part for this platform (@koromix/koffi-linux-*): run `npm install koffi`',
      { cause: err },
    );
  }
  if (koffi.sizeof('void *') !== 8) {
    throw new TransportUnavailableError('cxl-shm needs a 64-bit Node.js (64-bit off_t and pointers)');
  }
  let lib: ReturnType<Koffi['load']> | null = null;
  let lastErr: unknown = null;
  for (const name of ['libc.so.6', null]) {
    try {
      lib = koffi.load(name);
      break;
    } catch (err) {
      lastErr = err;
    }
  }
  if (lib === null) {
    throw new TransportUnavailableError('cxl-shm could not load the C library (libc.so.6): install glibc or run Node.js linked against musl', { cause: lastErr });
  }
  try {
    loaded = {
      koffi,
      open: lib.func('int open(const char *path, int flags, uint32_t mode)'),
      close: lib.func('int close(int fd)'),
      ftruncate: lib.func('int ftruncate(int fd, int64_t length)'),
      mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
      mmapAt: lib.func('void *mmap(uintptr_t addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
      munmap: lib.func('int munmap(void *addr, size_t length)'),
      unlink: lib.func('int unlink(const char *path)'),
      strerror: lib.func('const char *strerror(int errnum)'),
      getpagesize: lib.func('int getpagesize(void)'),
      errnames: new Map(Object.entries(koffi.os.errno).map(([k, v]) => [v, k])),
    };
  } catch (err) {
    throw new TransportUnavailableError('cxl-shm could not bind open/mmap/munmap in the C library: check that libc is glibc or musl', { cause: err });
  }
  return loaded;
}

/** Builds the SyscallError for the errno left by the call that just failed. */
function failure(c: Libc, syscall: string): SyscallError {
  const errno = c.koffi.errno();
  return new SyscallError(syscall, errno, c.errnames.get(errno) ?? `E${errno}`, c.strerror(errno));
}

/** Runs a Node fs call, turning its system error into a SyscallError. */
function node<T>(syscall: string, call: () => T): T {
  try {
    return call();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (typeof e.code !== 'string' || typeof e.errno !== 'number') throw err;
    throw new SyscallError(syscall, Math.abs(e.errno), e.code, e.message);
  }
}

/**
 * Loads koffi and libc now (they are otherwise loaded on first use).
 * @throws TransportUnavailableError when koffi, its native package or libc is missing, or the platform is not 64-bit Linux
 */
export function ensureLibc(): void {
  libc();
}

/**
 * open(2) of `path` read-write.
 * @param flags O_* bits (O_RDWR is always wanted)
 * @param mode permission bits for a created file (before umask)
 * @returns the file descriptor
 * @throws SyscallError on failure; TransportUnavailableError when libc cannot be loaded
 */
export function openFile(path: string, flags: number, mode: number): number {
  const c = libc();
  const fd = c.open(path, flags, mode);
  if (fd < 0) throw failure(c, 'open');
  return fd;
}

/**
 * close(2). Not retried on EINTR (on Linux the descriptor is released anyway).
 * @throws SyscallError on failure
 */
export function closeFile(fd: number): void {
  const c = libc();
  if (c.close(fd) !== 0) throw failure(c, 'close');
}

/**
 * ftruncate(2): sets the file length to `bytes` (sparse on tmpfs).
 * @throws SyscallError on failure (EINVAL on hugetlbfs when not a multiple of the huge page size)
 */
export function truncateFile(fd: number, bytes: number): void {
  const c = libc();
  if (c.ftruncate(fd, bytes) !== 0) throw failure(c, 'ftruncate');
}

/**
 * mmap(2) of `bytes` bytes of `fd` at file offset `offset` (bytes, a multiple
 * of the page or device alignment), MAP_SHARED, PROT_READ | PROT_WRITE.
 * @returns the address, as koffi 3 represents pointers (BigInt)
 * @throws SyscallError when mmap returns MAP_FAILED
 */
export function mapShared(fd: number, bytes: number, offset: number): bigint {
  const c = libc();
  const ptr = c.mmap(null, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (ptr === null || ptr === 0n || ptr === MAP_FAILED) throw failure(c, 'mmap');
  return ptr;
}

/**
 * mmap(2) MAP_SHARED | MAP_FIXED of `bytes` bytes of `fd` from file offset
 * `offset` at exactly `addr`, replacing whatever was mapped there (the
 * caller owns that range: pages of a Wasm memory, docs/abi.md "Direct
 * window"). All three must be multiples of the medium's alignment.
 * @throws SyscallError when mmap fails or places it elsewhere
 */
export function mapSharedAt(addr: bigint, fd: number, bytes: number, offset: number): void {
  const c = libc();
  const ptr = c.mmapAt(addr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, offset);
  if (ptr === null || ptr === MAP_FAILED) throw failure(c, 'mmap');
  if (ptr !== addr) throw new SyscallError('mmap', 0, 'EFAULT', `MAP_FIXED placed the mapping at ${ptr.toString(16)}, not ${addr.toString(16)}`);
}

/**
 * Puts private zero pages back over `bytes` bytes at `addr` (mmap MAP_FIXED |
 * MAP_PRIVATE | MAP_ANONYMOUS), undoing `mapSharedAt`: the range is plain
 * memory again, as the Wasm memory it belongs to had it.
 * @throws SyscallError when mmap fails
 */
export function mapAnonymousAt(addr: bigint, bytes: number): void {
  const c = libc();
  const ptr = c.mmapAt(addr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0);
  if (ptr === null || ptr === MAP_FAILED || ptr !== addr) throw failure(c, 'mmap');
}

/**
 * The address of the first byte of `buffer`'s memory (koffi.address: the
 * backing store itself, no copy).
 */
export function addressOf(buffer: ArrayBuffer): bigint {
  return libc().koffi.address(buffer) as bigint;
}

/**
 * munmap(2) of a mapping made by `mapShared` (same address and length).
 * @throws SyscallError on failure
 */
export function unmap(ptr: bigint, bytes: number): void {
  const c = libc();
  if (c.munmap(ptr, bytes) !== 0) throw failure(c, 'munmap');
}

/**
 * unlink(2) of `path`.
 * @throws SyscallError on failure (ENOENT when it does not exist)
 */
export function unlinkFile(path: string): void {
  const c = libc();
  if (c.unlink(path) !== 0) throw failure(c, 'unlink');
}

/**
 * An ArrayBuffer over `bytes` bytes of mapped memory at `ptr`, without copy
 * (`koffi.view`). It must not be touched after the memory is unmapped.
 */
export function viewOf(ptr: bigint, bytes: number): ArrayBuffer {
  return libc().koffi.view(ptr, bytes);
}

/** The system page size in bytes (getpagesize(2)): the smallest mmap offset alignment. */
export function pageSize(): number {
  return libc().getpagesize();
}

/** What an open descriptor refers to, from fstat(2). */
export interface FileFacts {
  /** `'file'` (regular file), `'char'` (character device such as /dev/dax0.0) or `'other'`. */
  kind: 'file' | 'char' | 'other';
  /** st_size in bytes (0 for devices). */
  size: number;
  /** st_rdev: the device number of a character device (0 otherwise). */
  rdev: number;
}

/**
 * fstat(2) of `fd` (through Node, which knows the platform's struct stat).
 * @throws SyscallError when fd is not open
 */
export function describeFd(fd: number): FileFacts {
  const st = node('fstat', () => fstatSync(fd));
  const kind = st.isFile() ? 'file' : st.isCharacterDevice() ? 'char' : 'other';
  return { kind, size: st.size, rdev: st.rdev };
}

/**
 * lstat(2) of `path` (through Node, not following a final symlink).
 * @returns `'file'`, `'link'` (a symlink), `'char'` (character device), `'other'`, or null when it does not exist
 * @throws SyscallError for failures other than ENOENT (EACCES on a parent directory, for example)
 */
export function describePath(path: string): FileFacts['kind'] | 'link' | null {
  const st = node('lstat', () => lstatSync(path, { throwIfNoEntry: false }));
  if (st === undefined) return null;
  if (st.isSymbolicLink()) return 'link';
  return st.isFile() ? 'file' : st.isCharacterDevice() ? 'char' : 'other';
}

/** Facts about the filesystem holding a path, from statfs(2). */
export interface FilesystemFacts {
  /** True for hugetlbfs (every mapping and length is a multiple of `blockBytes`). */
  hugetlbfs: boolean;
  /** f_bsize in bytes: the huge page size on hugetlbfs. */
  blockBytes: number;
  /** f_blocks * f_bsize in bytes; 0 when the filesystem reports no limit. */
  totalBytes: number;
}

/**
 * statfs(2) of `path` (through Node).
 * @throws SyscallError when the path cannot be reached
 */
export function describeFilesystem(path: string): FilesystemFacts {
  const fs = node('statfs', () => statfsSync(path));
  return {
    hugetlbfs: fs.type === HUGETLBFS_MAGIC,
    blockBytes: fs.bsize,
    totalBytes: fs.blocks * fs.bsize,
  };
}
