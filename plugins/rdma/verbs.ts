/**
 * rdma-core through koffi: the exported entry points of libibverbs and
 * librdmacm the verbs backend calls, the two hot-path functions that
 * verbs.h defines as static inline, and the checks that turn a missing
 * piece into a VerbsUnavailableError naming what to install or check.
 *
 * Inline functions. verbs.h defines
 *
 *   ibv_post_send(qp, wr, bad) = qp->context->ops.post_send(qp, wr, bad)
 *   ibv_poll_cq(cq, n, wc)     = cq->context->ops.poll_cq(cq, n, wc)
 *
 * (struct ibv_context embeds struct ibv_context_ops; every provider fills
 * these two slots, also those built on verbs_context, whose extended ops
 * sit *before* the ibv_context and are not needed here). `contextOp` reads
 * `context` at offset 0 of the QP or CQ and the function pointer at
 * offsetof(ibv_context, ops) + offsetof(ops, slot) (verbs-layout.ts, checked
 * against the headers by test/verbs-layout.test.ts), and decodes it into a
 * callable koffi function once per QP or CQ.
 *
 * Loading: koffi, libibverbs.so.1, librdmacm.so.1 and libc are loaded on
 * first use. The library names can be changed with the environment
 * variables DMEM_LIBIBVERBS and DMEM_LIBRDMACM, or `loadVerbs({ ... })`
 * (a test points them at a name that does not exist to check the error).
 * 64-bit Linux only.
 *
 * Pointers are koffi BigInts; memory the device reads or writes after a
 * call returns (work requests, completions, staging buffers) is calloc'd
 * here, never JS memory.
 */
import { createRequire } from 'node:module';
import { isIPv4, isIPv6 } from 'node:net';
import { VerbsUnavailableError } from './verbs-errors.js';
import { CONTEXT_OPS, verbsLayouts, verbsOpOffset, type VerbsLayouts } from './verbs-layout.js';

type Koffi = typeof import('koffi').default;
type KType = ReturnType<Koffi['struct']>;
/** A callable koffi function (synchronous, with `.async`). */
export type KFunc = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };

// verbs.h enums and flags.
export const IBV_ACCESS_LOCAL_WRITE = 1;
export const IBV_ACCESS_REMOTE_WRITE = 1 << 1;
export const IBV_ACCESS_REMOTE_READ = 1 << 2;
export const IBV_ACCESS_REMOTE_ATOMIC = 1 << 3;
export const IBV_QPT_RC = 2;
export const IBV_QPS_ERR = 6;
export const IBV_QP_STATE = 1;
export const IBV_WR_RDMA_WRITE = 0;
export const IBV_WR_RDMA_READ = 4;
export const IBV_WR_ATOMIC_CMP_AND_SWP = 5;
export const IBV_WR_ATOMIC_FETCH_AND_ADD = 6;
export const IBV_SEND_SIGNALED = 1 << 1;
export const IBV_WC_SUCCESS = 0;
export const IBV_ATOMIC_NONE = 0;
export const IBV_ATOMIC_HCA = 1;
// rdma_cma.h
export const RDMA_PS_TCP = 0x0106;
export const RDMA_CM_EVENT = {
  ADDR_RESOLVED: 0, ADDR_ERROR: 1, ROUTE_RESOLVED: 2, ROUTE_ERROR: 3, CONNECT_REQUEST: 4, CONNECT_RESPONSE: 5,
  CONNECT_ERROR: 6, UNREACHABLE: 7, REJECTED: 8, ESTABLISHED: 9, DISCONNECTED: 10, DEVICE_REMOVAL: 11,
  MULTICAST_JOIN: 12, MULTICAST_ERROR: 13, ADDR_CHANGE: 14, TIMEWAIT_EXIT: 15,
} as const;
// libc
const AF_INET = 2;
const AF_INET6 = 10;
export const POLLIN = 1;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

/** What to install, for messages. */
export const RDMA_CORE = 'rdma-core (Debian/Ubuntu: apt-get install libibverbs1 librdmacm1 ibverbs-providers; Fedora/RHEL: dnf install rdma-core libibverbs librdmacm)';
/** What to check when no device is found, for messages. */
export const DEVICE_HINT = 'check `ibv_devices` (ibverbs-utils) and `rdma link show` (iproute2); the kernel needs your NIC\'s RDMA driver (mlx5_ib, irdma, bnxt_re, efa ...) and ib_uverbs and rdma_ucm loaded; without an RDMA NIC, Soft-RoCE works on any Ethernet interface: `modprobe rdma_rxe && rdma link add rxe0 type rxe netdev eth0`';

/** The loaded libraries. */
export interface Verbs {
  koffi: Koffi;
  t: VerbsLayouts;
  /** The library names loaded (for messages). */
  names: { ibverbs: string; rdmacm: string };
  getDeviceList: (num: [number]) => bigint | null;
  freeDeviceList: (list: bigint) => void;
  getDeviceName: (dev: bigint) => string | null;
  queryDevice: (ctx: bigint, attr: bigint) => number;
  allocPd: (ctx: bigint) => bigint | null;
  deallocPd: (pd: bigint) => number;
  regMr: (pd: bigint, addr: bigint, length: number, access: number) => bigint | null;
  deregMr: (mr: bigint) => number;
  modifyQp: (qp: bigint, attr: bigint, mask: number) => number;
  wcStatusStr: (status: number) => string;
  createEventChannel: () => bigint | null;
  destroyEventChannel: (ch: bigint) => void;
  createId: (ch: bigint | null, out: [bigint | null], context: null, ps: number) => number;
  destroyId: (id: bigint) => number;
  bindAddr: (id: bigint, addr: bigint) => number;
  listen: (id: bigint, backlog: number) => number;
  resolveAddr: (id: bigint, src: null, dst: bigint, timeoutMs: number) => number;
  resolveRoute: (id: bigint, timeoutMs: number) => number;
  connect: (id: bigint, param: bigint) => number;
  accept: (id: bigint, param: bigint) => number;
  reject: (id: bigint, data: null, len: number) => number;
  disconnect: (id: bigint) => number;
  getCmEvent: (ch: bigint, out: [bigint | null]) => number;
  ackCmEvent: (ev: bigint) => number;
  createQp: (id: bigint, pd: bigint, attr: bigint) => number;
  destroyQp: (id: bigint) => void;
  eventStr: (e: number) => string;
  getSrcPort: (id: bigint) => number;
  calloc: (n: number, bytes: number) => bigint | null;
  free: (p: bigint) => void;
  /** poll(2), to be called with `.async` on an event channel's fd. */
  poll: KFunc;
  fcntl: KFunc;
  strerror: (errnum: number) => string;
  /** Prototypes of post_send and poll_cq. */
  proto: { post_send: KType; poll_cq: KType };
}

/** Library names: environment or defaults. */
export interface VerbsLibNames {
  ibverbs?: string;
  rdmacm?: string;
}

const loaded = new Map<string, Verbs>();

/**
 * Loads koffi, libibverbs, librdmacm and libc (once per pair of names).
 * @throws VerbsUnavailableError (`missing` 'koffi' or 'library') naming what to install
 */
export function loadVerbs(names: VerbsLibNames = {}): Verbs {
  const ibverbs = names.ibverbs ?? process.env.DMEM_LIBIBVERBS ?? 'libibverbs.so.1';
  const rdmacm = names.rdmacm ?? process.env.DMEM_LIBRDMACM ?? 'librdmacm.so.1';
  const key = `${ibverbs}\0${rdmacm}`;
  const hit = loaded.get(key);
  if (hit !== undefined) return hit;
  if (process.platform !== 'linux') throw new VerbsUnavailableError('library', `the verbs transport is bound for 64-bit Linux; this is ${process.platform}: use the tcp transport`);
  let koffi: Koffi;
  let t: VerbsLayouts;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
    t = verbsLayouts().t;
  } catch (err) {
    throw new VerbsUnavailableError('koffi', 'the verbs transport needs the koffi FFI package and its native part: run `npm install koffi`', { cause: err });
  }
  const open = (name: string, what: string): ReturnType<Koffi['load']> => {
    try {
      return koffi.load(name);
    } catch (err) {
      throw new VerbsUnavailableError('library', `${name} (${what}) could not be loaded: install ${RDMA_CORE}`, { cause: err });
    }
  };
  const v = open(ibverbs, 'libibverbs, rdma-core');
  const cm = open(rdmacm, 'librdmacm, rdma-core');
  const c = open('libc.so.6', 'the C library');
  try {
    const verbs: Verbs = {
      koffi, t, names: { ibverbs, rdmacm },
      getDeviceList: v.func('void *ibv_get_device_list(_Out_ int *num)'),
      freeDeviceList: v.func('void ibv_free_device_list(void *list)'),
      getDeviceName: v.func('const char *ibv_get_device_name(void *dev)'),
      queryDevice: v.func('int ibv_query_device(void *ctx, void *attr)'),
      allocPd: v.func('void *ibv_alloc_pd(void *ctx)'),
      deallocPd: v.func('int ibv_dealloc_pd(void *pd)'),
      regMr: v.func('void *ibv_reg_mr(void *pd, void *addr, size_t length, int access)'),
      deregMr: v.func('int ibv_dereg_mr(void *mr)'),
      modifyQp: v.func('int ibv_modify_qp(void *qp, void *attr, int mask)'),
      wcStatusStr: v.func('const char *ibv_wc_status_str(int status)'),
      createEventChannel: cm.func('void *rdma_create_event_channel(void)'),
      destroyEventChannel: cm.func('void rdma_destroy_event_channel(void *ch)'),
      createId: cm.func('int rdma_create_id(void *ch, _Out_ void **id, void *context, int ps)'),
      destroyId: cm.func('int rdma_destroy_id(void *id)'),
      bindAddr: cm.func('int rdma_bind_addr(void *id, void *addr)'),
      listen: cm.func('int rdma_listen(void *id, int backlog)'),
      resolveAddr: cm.func('int rdma_resolve_addr(void *id, void *src, void *dst, int timeout_ms)'),
      resolveRoute: cm.func('int rdma_resolve_route(void *id, int timeout_ms)'),
      connect: cm.func('int rdma_connect(void *id, void *param)'),
      accept: cm.func('int rdma_accept(void *id, void *param)'),
      reject: cm.func('int rdma_reject(void *id, void *data, uint8_t len)'),
      disconnect: cm.func('int rdma_disconnect(void *id)'),
      getCmEvent: cm.func('int rdma_get_cm_event(void *ch, _Out_ void **event)'),
      ackCmEvent: cm.func('int rdma_ack_cm_event(void *event)'),
      createQp: cm.func('int rdma_create_qp(void *id, void *pd, void *attr)'),
      destroyQp: cm.func('void rdma_destroy_qp(void *id)'),
      eventStr: cm.func('const char *rdma_event_str(int event)'),
      getSrcPort: cm.func('uint16_t rdma_get_src_port(void *id)'),
      calloc: c.func('void *calloc(size_t n, size_t size)'),
      free: c.func('void free(void *p)'),
      poll: c.func('int poll(void *fds, uint64_t nfds, int timeout)') as KFunc,
      fcntl: c.func('int fcntl(int fd, int cmd, ...)') as KFunc,
      strerror: c.func('const char *strerror(int errnum)'),
      proto: {
        post_send: koffi.proto('int dmem_ibv_post_send(void *qp, void *wr, void *bad_wr)'),
        poll_cq: koffi.proto('int dmem_ibv_poll_cq(void *cq, int num_entries, void *wc)'),
      },
    } as unknown as Verbs;
    loaded.set(key, verbs);
    return verbs;
  } catch (err) {
    throw new VerbsUnavailableError('library', `${ibverbs} or ${rdmacm} lacks an entry point the verbs transport needs (rdma-core older than v28?): install a current ${RDMA_CORE}`, { cause: err });
  }
}

/** errno of the last native call, as "ENODEV (No such device)". */
export function errnoText(v: Verbs, err = v.koffi.errno()): string {
  const name = Object.entries(v.koffi.os.errno).find(([, n]) => n === err)?.[0];
  let text: string;
  try { text = v.strerror(err); } catch { text = `errno ${err}`; }
  return name === undefined ? text : `${name} (${text})`;
}

/**
 * The RDMA devices ibv_get_device_list finds, by name.
 * @throws VerbsUnavailableError (`missing` 'device') when there is none, naming what to check
 */
export function rdmaDevices(v: Verbs): string[] {
  const num: [number] = [0];
  const list = v.getDeviceList(num);
  const err = v.koffi.errno();
  const names: string[] = [];
  if (list !== null && list !== 0n) {
    try {
      for (let i = 0; i < num[0]; i++) {
        const dev = v.koffi.decode(list, i * 8, 'void *') as bigint | null;
        if (dev !== null) names.push(v.getDeviceName(dev) ?? `device ${i}`);
      }
    } finally {
      v.freeDeviceList(list);
    }
  }
  if (names.length === 0) {
    const why = list === null ? `ibv_get_device_list failed: ${errnoText(v, err)}` : 'ibv_get_device_list returned no device';
    throw new VerbsUnavailableError('device', `no RDMA device found (${why}): ${DEVICE_HINT}`);
  }
  return names;
}

/**
 * The function in ibv_context_ops slot `slot` of the context that `obj`
 * (an ibv_qp or ibv_cq, whose first field is `context`) belongs to.
 * @throws VerbsUnavailableError when the provider left the slot empty
 */
export function contextOp(v: Verbs, obj: bigint, slot: 'post_send' | 'poll_cq'): KFunc {
  const ctx = v.koffi.decode(obj, 0, 'void *') as bigint | null;
  if (ctx === null || ctx === 0n) throw new VerbsUnavailableError('device', `the verbs object at 0x${obj.toString(16)} has no context`);
  const fn = v.koffi.decode(ctx, verbsOpOffset(slot), 'void *') as bigint | null;
  if (fn === null || fn === 0n) throw new VerbsUnavailableError('device', `the RDMA device's provider does not implement ${slot} (ibv_context.ops slot ${CONTEXT_OPS.indexOf(slot)})`);
  return v.koffi.decode(fn, v.proto[slot]) as KFunc;
}

/** calloc'd memory with a JS window on it. */
export interface NativeBlock {
  ptr: bigint;
  /** ptr as a number (below 2^53 on every 64-bit Linux: user addresses have at most 57 bits, in practice 47). */
  addr: number;
  bytes: number;
  view: Uint8Array;
  data: DataView;
}

/** calloc(1, bytes). @throws VerbsUnavailableError when out of memory */
export function nativeBlock(v: Verbs, bytes: number): NativeBlock {
  const ptr = v.calloc(1, bytes);
  if (ptr === null || ptr === 0n) throw new VerbsUnavailableError('device', `out of memory allocating ${bytes} B for verbs buffers`);
  const ab = v.koffi.view(ptr, bytes);
  return { ptr, addr: Number(ptr), bytes, view: new Uint8Array(ab), data: new DataView(ab) };
}

/** Writes a sockaddr_in or sockaddr_in6 for `ip` (a literal address) and `port` at `at`; returns its length. @throws VerbsUnavailableError for a non-literal */
export function writeSockaddr(b: NativeBlock, at: number, ip: string, port: number): number {
  b.view.fill(0, at, at + 128);
  if (isIPv4(ip)) {
    b.data.setUint16(at, AF_INET, true);
    b.data.setUint16(at + 2, port, false);
    ip.split('.').forEach((x, i) => { b.view[at + 4 + i] = Number(x); });
    return 16;
  }
  if (isIPv6(ip)) {
    b.data.setUint16(at, AF_INET6, true);
    b.data.setUint16(at + 2, port, false);
    const bytes = ipv6Bytes(ip);
    b.view.set(bytes, at + 8);
    return 28;
  }
  throw new VerbsUnavailableError('address', `"${ip}" is not an IP address (rdma_cm needs one)`);
}

/** The 16 bytes of an IPv6 literal (with ::, and a trailing dotted IPv4). */
function ipv6Bytes(ip: string): Uint8Array {
  let s = ip.replace(/%.*$/, '');
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4 !== null) {
    const p = v4[1].split('.').map(Number);
    s = `${s.slice(0, -v4[1].length)}${((p[0] << 8) | p[1]).toString(16)}:${((p[2] << 8) | p[3]).toString(16)}`;
  }
  const [head, tail] = s.includes('::') ? s.split('::') : [s, null];
  const h = head === '' ? [] : head.split(':');
  const t = tail === null || tail === '' ? [] : tail.split(':');
  const groups = tail === null ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => { const n = parseInt(g, 16); out[2 * i] = n >> 8; out[2 * i + 1] = n & 0xff; });
  return out;
}

/** Makes file descriptor `fd` non-blocking. @returns 0 or -1 */
export function setNonBlocking(v: Verbs, fd: number): number {
  const flags = v.fcntl(fd, F_GETFL) as number;
  if (flags < 0) return -1;
  return v.fcntl(fd, F_SETFL, 'int', flags | O_NONBLOCK) as number;
}
