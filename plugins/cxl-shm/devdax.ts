/**
 * What a devdax character device (/dev/daxX.Y) does not say through its file
 * descriptor: its size, and whether it already holds a pool.
 *
 * Size: a devdax device has st_size 0; the kernel reports its capacity in
 * sysfs, as /sys/dev/char/MAJ:MIN/size (the device number from fstat) and as
 * /sys/bus/dax/devices/daxX.Y/size, in bytes.
 *
 * Fresh device: a device is never created, so O_EXCL cannot elect the
 * process that formats it. An opener that finds the first 4 KiB (the
 * superblock) all zero claims the device with one cas64 of word 0 from 0 to
 * FORMAT_CLAIM (dmem/transport): exactly one racing opener wins and formats;
 * the others read FORMAT_CLAIM, then the magic, and attach (Pool.attach waits
 * while it sees 0 or the claim). A device whose first 4 KiB are not all zero
 * is never claimed, so a device holding anything else is never formatted.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { FORMAT_CLAIM, InvalidArgumentError, type Transport } from 'dmem/transport';

/** Bytes checked for zero before a device is claimed (the superblock). */
const SUPERBLOCK_BYTES = 4096;

/** Linux major and minor numbers of a st_rdev (glibc's gnu_dev_major/minor). */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const r = BigInt(rdev);
  const major = Number(((r >> 8n) & 0xFFFn) | ((r >> 32n) & ~0xFFFn));
  const minor = Number((r & 0xFFn) | ((r >> 12n) & ~0xFFn));
  return { major, minor };
}

/**
 * The capacity of devdax device `path` from sysfs, in bytes.
 * @param rdev the device's st_rdev
 * @param sysRoot where sysfs is mounted ('/sys'; tests pass a directory of their own)
 * @throws InvalidArgumentError when neither sysfs file exists or holds a positive byte count
 */
export function daxSizeFromSysfs(path: string, rdev: number, sysRoot = '/sys'): number {
  const { major, minor } = deviceNumbers(rdev);
  const candidates = [`${sysRoot}/dev/char/${major}:${minor}/size`, `${sysRoot}/bus/dax/devices/${basename(path)}/size`];
  for (const file of candidates) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    const bytes = /^\d+$/.test(text) ? Number(text) : NaN;
    if (Number.isSafeInteger(bytes) && bytes > 0) return bytes;
  }
  throw new InvalidArgumentError(`${path} is a character device whose size sysfs does not report (${candidates.join(', ')}): pass size (bytes, a multiple of 2 MiB)`);
}

/**
 * Claims a fresh device for formatting: true when its first 4 KiB were all
 * zero and this call won the CAS of word 0 to FORMAT_CLAIM.
 */
export function claimIfFresh(t: Transport): boolean {
  const head = new Uint8Array(Math.min(SUPERBLOCK_BYTES, t.size));
  t.read(0, head);
  if (head.length < 8 || head.some((b) => b !== 0)) return false;
  return t.cas64(0, 0n, FORMAT_CLAIM) === 0n;
}
