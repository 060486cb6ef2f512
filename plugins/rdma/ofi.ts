/**
 * libfabric (OFI) through koffi 3: the handful of exported entry points
 * (fi_getinfo, fi_fabric, fi_dupinfo, fi_freeinfo, fi_strerror), the struct
 * layouts of fi_info and the attributes dmem sets, and the operations that
 * libfabric's headers define as `static inline` calls through ops tables.
 *
 * Ops tables: every libfabric object starts with a `struct fid`
 *
 *   struct fid        { size_t fclass; void *context; struct fi_ops *ops; }
 *   struct fid_domain { struct fid fid; fi_ops_domain *ops; fi_ops_mr *mr; }
 *   struct fid_ep     { struct fid fid; fi_ops_ep *ops; fi_ops_cm *cm;
 *                       fi_ops_msg *msg; fi_ops_rma *rma; fi_ops_tagged *tagged;
 *                       fi_ops_atomic *atomic; ... }
 *
 * and fi_read(ep, ...) is `ep->rma->read(ep, ...)`. `method(obj, table,
 * slot, proto)` reads the table pointer out of the object and the function
 * pointer out of the table (koffi.decode, offsets from the koffi struct
 * definitions below, which test/verbs-layout.test.ts checks against the C
 * headers), and turns it into a callable koffi function once; the hot path
 * then calls that function directly (about 60 ns a call here, against about
 * 340 ns for koffi.call). Providers share one ops table between all their
 * objects of one kind, but nothing in the API promises it, so each object
 * decodes its own.
 *
 * Loading: koffi, libfabric.so.1 and libc are loaded on first use; a
 * missing piece is a TransportUnavailableError naming what to install.
 * 64-bit Linux only (size_t and pointers are 8 bytes in the layouts).
 *
 * Pointers are koffi 3 BigInts. Buffers the fabric reads or writes after a
 * call returns (operation buffers, contexts, completion entries) are malloc'd
 * here, never JS memory, which the garbage collector may move.
 */
import { createRequire } from 'node:module';
import { TransportUnavailableError } from '../../src/errors.js';

type Koffi = typeof import('koffi').default;
/** A koffi type object (koffi.struct, koffi.proto, ...). */
type KType = ReturnType<Koffi['struct']>;
/** A callable koffi function (synchronous, with `.async`). */
export type KFunc = ((...args: unknown[]) => unknown) & { async: (...args: unknown[]) => void };

/** libfabric API version requested: FI_VERSION(1, 9), the oldest with every feature used here. */
export const FI_API_VERSION = (1 << 16) | 9;

// fabric.h capability and flag bits (uint64_t; all below 2^53 except FI_SOURCE).
export const FI_RMA = 1 << 2;
export const FI_ATOMIC = 1 << 4;
export const FI_READ = 1 << 8;
export const FI_WRITE = 1 << 9;
export const FI_REMOTE_READ = 1 << 12;
export const FI_REMOTE_WRITE = 1 << 13;
export const FI_TRANSMIT = 2 ** 11;
export const FI_RECV = 2 ** 10;
export const FI_DELIVERY_COMPLETE = 2 ** 28;
export const FI_SOURCE = 2n ** 57n;
// mr_mode bits (int)
export const FI_MR_LOCAL = 1 << 2;
export const FI_MR_VIRT_ADDR = 1 << 4;
export const FI_MR_ALLOCATED = 1 << 5;
export const FI_MR_PROV_KEY = 1 << 6;
export const FI_MR_ENDPOINT = 1 << 9;
// enums
export const FI_EP_RDM = 3;
export const FI_THREAD_SAFE = 1;
export const FI_PROGRESS_AUTO = 1;
export const FI_AV_TABLE = 2;
export const FI_CQ_FORMAT_CONTEXT = 1;
export const FI_WAIT_NONE = 0;
export const FI_WAIT_UNSPEC = 1;
export const FI_ENABLE = 6;
export const FI_UINT64 = 7;
export const FI_SUM = 2;
export const FI_CSWAP = 12;
// fi_errno.h (negated by the calls)
export const FI_EAGAIN = 11;
export const FI_ENODATA = 61;
export const FI_ENOSYS = 38;
export const FI_EAVAIL = 259;
export const FI_ENOMEM = 12;

/** Struct layouts (x86-64/arm64 LP64), field for field as in rdma/fabric.h and friends. */
export interface Layouts {
  fid: KType; fi_info: KType; fi_tx_attr: KType; fi_rx_attr: KType; fi_ep_attr: KType; fi_domain_attr: KType;
  fi_fabric_attr: KType; fid_fabric: KType; fid_domain: KType; fid_ep: KType; fid_cq: KType; fid_av: KType; fid_mr: KType;
  fi_ops: KType; fi_ops_fabric: KType; fi_ops_domain: KType; fi_ops_mr: KType; fi_ops_cm: KType; fi_ops_rma: KType;
  fi_ops_atomic: KType; fi_ops_cq: KType; fi_ops_av: KType; fi_cq_attr: KType; fi_av_attr: KType; fi_cq_err_entry: KType;
}

/** The loaded libraries. */
export interface Ofi {
  koffi: Koffi;
  t: Layouts;
  getinfo: (version: number, node: string | null, service: string | null, flags: bigint, hints: bigint, out: [bigint | null]) => number;
  freeinfo: (info: bigint) => void;
  dupinfo: (info: bigint | null) => bigint | null;
  fabric: (attr: bigint, out: [bigint | null], context: null) => number;
  strerror: (errnum: number) => string;
  malloc: (bytes: number) => bigint | null;
  calloc: (n: number, bytes: number) => bigint | null;
  free: (ptr: bigint) => void;
  strdup: (s: string) => bigint | null;
  /** sched_yield(2): lets another runnable thread (the node's progress thread, another client) have this core. */
  schedYield: () => number;
  /** Prototypes of the ops-table functions, by C name (`fi_read`, ...). */
  proto: Record<string, KType>;
}

let loaded: Ofi | null = null;

const INSTALL = 'install libfabric1 (Debian/Ubuntu: apt-get install libfabric1; Fedora/RHEL: dnf install libfabric; or build https://github.com/ofiwg/libfabric)';

/** Loads koffi, libfabric and libc on first use. @throws TransportUnavailableError naming what to install */
export function ofi(): Ofi {
  if (loaded !== null) return loaded;
  if (process.platform !== 'linux') throw new TransportUnavailableError(`the ofi transport is bound for 64-bit Linux; this is ${process.platform}: use the tcp transport`);
  let koffi: Koffi;
  try {
    koffi = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (err) {
    throw new TransportUnavailableError('the ofi transport needs the koffi FFI package and its native part (@koromix/koffi-linux-*): run `npm install koffi`', { cause: err });
  }
  if (koffi.sizeof('void *') !== 8) throw new TransportUnavailableError('the ofi transport needs a 64-bit Node.js');
  let fab: ReturnType<Koffi['load']> | null = null;
  let lastErr: unknown = null;
  for (const name of ['libfabric.so.1', 'libfabric.so']) {
    try { fab = koffi.load(name); break; } catch (err) { lastErr = err; }
  }
  if (fab === null) throw new TransportUnavailableError(`libfabric.so.1 not found: ${INSTALL}`, { cause: lastErr });
  let libc: ReturnType<Koffi['load']>;
  try {
    libc = koffi.load('libc.so.6');
  } catch (err) {
    throw new TransportUnavailableError('the ofi transport could not load the C library (libc.so.6)', { cause: err });
  }
  try {
    const t = layouts(koffi);
    loaded = {
      koffi, t,
      getinfo: fab.func('int fi_getinfo(uint32_t version, const char *node, const char *service, uint64_t flags, void *hints, _Out_ void **info)'),
      freeinfo: fab.func('void fi_freeinfo(void *info)'),
      dupinfo: fab.func('void *fi_dupinfo(void *info)'),
      fabric: fab.func('int fi_fabric(void *attr, _Out_ void **fabric, void *context)'),
      strerror: fab.func('const char *fi_strerror(int errnum)'),
      malloc: libc.func('void *malloc(size_t size)'),
      calloc: libc.func('void *calloc(size_t n, size_t size)'),
      free: libc.func('void free(void *ptr)'),
      strdup: libc.func('void *strdup(const char *s)'),
      schedYield: libc.func('int sched_yield(void)'),
      proto: protos(koffi),
    } as unknown as Ofi;
  } catch (err) {
    throw new TransportUnavailableError(`libfabric was found but fi_getinfo/fi_fabric could not be bound (a libfabric older than 1.9?): ${INSTALL}`, { cause: err });
  }
  return loaded;
}

/** The koffi struct definitions, built once per koffi instance. */
function layouts(k: Koffi): Layouts {
  const P = 'void *';
  const fid = k.struct('dmem_fid', { fclass: 'size_t', context: P, ops: P });
  return {
    fid,
    fi_info: k.struct('dmem_fi_info', {
      next: P, caps: 'uint64_t', mode: 'uint64_t', addr_format: 'uint32_t', src_addrlen: 'size_t', dest_addrlen: 'size_t',
      src_addr: P, dest_addr: P, handle: P, tx_attr: P, rx_attr: P, ep_attr: P, domain_attr: P, fabric_attr: P, nic: P,
    }),
    fi_tx_attr: k.struct('dmem_fi_tx_attr', {
      caps: 'uint64_t', mode: 'uint64_t', op_flags: 'uint64_t', msg_order: 'uint64_t', comp_order: 'uint64_t',
      inject_size: 'size_t', size: 'size_t', iov_limit: 'size_t', rma_iov_limit: 'size_t', tclass: 'uint32_t',
    }),
    fi_rx_attr: k.struct('dmem_fi_rx_attr', {
      caps: 'uint64_t', mode: 'uint64_t', op_flags: 'uint64_t', msg_order: 'uint64_t', comp_order: 'uint64_t',
      total_buffered_recv: 'size_t', size: 'size_t', iov_limit: 'size_t',
    }),
    fi_ep_attr: k.struct('dmem_fi_ep_attr', {
      type: 'int', protocol: 'uint32_t', protocol_version: 'uint32_t', max_msg_size: 'size_t', msg_prefix_size: 'size_t',
      max_order_raw_size: 'size_t', max_order_war_size: 'size_t', max_order_waw_size: 'size_t', mem_tag_format: 'uint64_t',
      tx_ctx_cnt: 'size_t', rx_ctx_cnt: 'size_t', auth_key_size: 'size_t', auth_key: P,
    }),
    fi_domain_attr: k.struct('dmem_fi_domain_attr', {
      domain: P, name: P, threading: 'int', control_progress: 'int', data_progress: 'int', resource_mgmt: 'int', av_type: 'int',
      mr_mode: 'int', mr_key_size: 'size_t', cq_data_size: 'size_t', cq_cnt: 'size_t', ep_cnt: 'size_t', tx_ctx_cnt: 'size_t',
      rx_ctx_cnt: 'size_t', max_ep_tx_ctx: 'size_t', max_ep_rx_ctx: 'size_t', max_ep_stx_ctx: 'size_t', max_ep_srx_ctx: 'size_t',
      cntr_cnt: 'size_t', mr_iov_limit: 'size_t', caps: 'uint64_t', mode: 'uint64_t', auth_key: P, auth_key_size: 'size_t',
      max_err_data: 'size_t', mr_cnt: 'size_t', tclass: 'uint32_t',
    }),
    fi_fabric_attr: k.struct('dmem_fi_fabric_attr', { fabric: P, name: P, prov_name: P, prov_version: 'uint32_t', api_version: 'uint32_t' }),
    fid_fabric: k.struct('dmem_fid_fabric', { fid, ops: P, api_version: 'uint32_t' }),
    fid_domain: k.struct('dmem_fid_domain', { fid, ops: P, mr: P }),
    fid_ep: k.struct('dmem_fid_ep', { fid, ops: P, cm: P, msg: P, rma: P, tagged: P, atomic: P, collective: P }),
    fid_cq: k.struct('dmem_fid_cq', { fid, ops: P }),
    fid_av: k.struct('dmem_fid_av', { fid, ops: P }),
    fid_mr: k.struct('dmem_fid_mr', { fid, mem_desc: P, key: 'uint64_t' }),
    fi_ops: k.struct('dmem_fi_ops', { size: 'size_t', close: P, bind: P, control: P, ops_open: P, tostr: P, ops_set: P }),
    fi_ops_fabric: k.struct('dmem_fi_ops_fabric', { size: 'size_t', domain: P, passive_ep: P, eq_open: P, wait_open: P, trywait: P, domain2: P }),
    fi_ops_domain: k.struct('dmem_fi_ops_domain', {
      size: 'size_t', av_open: P, cq_open: P, endpoint: P, scalable_ep: P, cntr_open: P, poll_open: P, stx_ctx: P, srx_ctx: P,
      query_atomic: P, query_collective: P, endpoint2: P,
    }),
    fi_ops_mr: k.struct('dmem_fi_ops_mr', { size: 'size_t', reg: P, regv: P, regattr: P }),
    fi_ops_cm: k.struct('dmem_fi_ops_cm', {
      size: 'size_t', setname: P, getname: P, getpeer: P, connect: P, listen: P, accept: P, reject: P, shutdown: P, join: P,
    }),
    fi_ops_rma: k.struct('dmem_fi_ops_rma', {
      size: 'size_t', read: P, readv: P, readmsg: P, write: P, writev: P, writemsg: P, inject: P, writedata: P, injectdata: P,
    }),
    fi_ops_atomic: k.struct('dmem_fi_ops_atomic', {
      size: 'size_t', write: P, writev: P, writemsg: P, inject: P, readwrite: P, readwritev: P, readwritemsg: P,
      compwrite: P, compwritev: P, compwritemsg: P, writevalid: P, readwritevalid: P, compwritevalid: P,
    }),
    fi_ops_cq: k.struct('dmem_fi_ops_cq', { size: 'size_t', read: P, readfrom: P, readerr: P, sread: P, sreadfrom: P, signal: P, strerror: P }),
    fi_ops_av: k.struct('dmem_fi_ops_av', { size: 'size_t', insert: P, insertsvc: P, insertsym: P, remove: P, lookup: P, straddr: P, av_set: P }),
    fi_cq_attr: k.struct('dmem_fi_cq_attr', {
      size: 'size_t', flags: 'uint64_t', format: 'int', wait_obj: 'int', signaling_vector: 'int', wait_cond: 'int', wait_set: P,
    }),
    fi_av_attr: k.struct('dmem_fi_av_attr', {
      type: 'int', rx_ctx_bits: 'int', count: 'size_t', ep_per_node: 'size_t', name: P, map_addr: P, flags: 'uint64_t',
    }),
    fi_cq_err_entry: k.struct('dmem_fi_cq_err_entry', {
      op_context: P, flags: 'uint64_t', len: 'size_t', buf: P, data: 'uint64_t', tag: 'uint64_t', olen: 'size_t',
      err: 'int', prov_errno: 'int', err_data: P, err_data_size: 'size_t',
    }),
  };
}

/** Prototypes of the ops-table entries dmem calls (pointers as `void *`). */
function protos(k: Koffi): Record<string, KType> {
  const p = (s: string): KType => k.proto(s);
  return {
    close: p('int dmem_fi_close(void *fid)'),
    bind: p('int dmem_fi_bind(void *fid, void *bfid, uint64_t flags)'),
    control: p('int dmem_fi_control(void *fid, int command, void *arg)'),
    domain: p('int dmem_fi_domain(void *fabric, void *info, _Out_ void **dom, void *context)'),
    av_open: p('int dmem_fi_av_open(void *domain, void *attr, _Out_ void **av, void *context)'),
    cq_open: p('int dmem_fi_cq_open(void *domain, void *attr, _Out_ void **cq, void *context)'),
    endpoint: p('int dmem_fi_endpoint(void *domain, void *info, _Out_ void **ep, void *context)'),
    mr_reg: p('int dmem_fi_mr_reg(void *fid, void *buf, size_t len, uint64_t access, uint64_t offset, uint64_t requested_key, uint64_t flags, _Out_ void **mr, void *context)'),
    getname: p('int dmem_fi_getname(void *fid, void *addr, _Inout_ size_t *addrlen)'),
    av_insert: p('int dmem_fi_av_insert(void *av, void *addr, size_t count, void *fi_addr, uint64_t flags, void *context)'),
    read: p('intptr_t dmem_fi_read(void *ep, void *buf, size_t len, void *desc, uint64_t src_addr, uint64_t addr, uint64_t key, void *context)'),
    write: p('intptr_t dmem_fi_write(void *ep, void *buf, size_t len, void *desc, uint64_t dest_addr, uint64_t addr, uint64_t key, void *context)'),
    fetch_atomic: p('intptr_t dmem_fi_fetch_atomic(void *ep, void *buf, size_t count, void *desc, void *result, void *result_desc, uint64_t dest_addr, uint64_t addr, uint64_t key, int datatype, int op, void *context)'),
    compare_atomic: p('intptr_t dmem_fi_compare_atomic(void *ep, void *buf, size_t count, void *desc, void *compare, void *compare_desc, void *result, void *result_desc, uint64_t dest_addr, uint64_t addr, uint64_t key, int datatype, int op, void *context)'),
    atomicvalid: p('int dmem_fi_atomicvalid(void *ep, int datatype, int op, _Out_ size_t *count)'),
    cq_read: p('intptr_t dmem_fi_cq_read(void *cq, void *buf, size_t count)'),
    cq_readerr: p('intptr_t dmem_fi_cq_readerr(void *cq, void *buf, uint64_t flags)'),
    cq_sread: p('intptr_t dmem_fi_cq_sread(void *cq, void *buf, size_t count, void *cond, int timeout)'),
    cq_strerror: p('const char *dmem_fi_cq_strerror(void *cq, int prov_errno, void *err_data, void *buf, size_t len)'),
  };
}

/** Reads field `field` of struct `type` at `ptr`. */
export function field(o: Ofi, ptr: bigint, type: KType, name: string, as: string): unknown {
  return o.koffi.decode(ptr, o.koffi.offsetof(type, name), as);
}

/** Writes field `field` of struct `type` at `ptr`. */
export function setField(o: Ofi, ptr: bigint, type: KType, name: string, as: string, value: unknown): void {
  o.koffi.encode(ptr, o.koffi.offsetof(type, name), as, value);
}

/** Reads a pointer field (0n for NULL). */
export function ptrField(o: Ofi, ptr: bigint, type: KType, name: string): bigint {
  const v = field(o, ptr, type, name, 'void *') as bigint | null;
  return v ?? 0n;
}

/**
 * The function in slot `slot` of the ops table that object `obj` points to
 * through its field `table` (of struct `objType`), callable with prototype
 * `protoName`. `table` may be `fid.ops` for the generic fi_ops.
 * @throws TransportUnavailableError when the provider left that slot empty (it does not implement the call)
 */
export function method(o: Ofi, obj: bigint, objType: KType, table: string, tableType: KType, slot: string, protoName: string): KFunc {
  const tablePtr = table === 'fid.ops'
    ? ptrField(o, obj, o.t.fid, 'ops')
    : ptrField(o, obj, objType, table);
  if (tablePtr === 0n) throw new TransportUnavailableError(`the libfabric provider has no ${table} operations (needed for ${protoName.replace('dmem_', '')})`);
  const size = Number(field(o, tablePtr, tableType, 'size', 'size_t'));
  const off = o.koffi.offsetof(tableType, slot);
  if (size <= off) throw new TransportUnavailableError(`the libfabric provider's ${table} table has no ${slot} entry`);
  const fn = o.koffi.decode(tablePtr, off, 'void *') as bigint | null;
  if (fn === null || fn === 0n) throw new TransportUnavailableError(`the libfabric provider does not implement ${slot}`);
  return o.koffi.decode(fn, o.proto[protoName]) as KFunc;
}

/** fi_strerror of a positive libfabric error number. */
export function fiError(o: Ofi, errnum: number): string {
  try { return o.strerror(errnum); } catch { return `error ${errnum}`; }
}

/** fi_close(fid): `fid->ops->close(fid)`. Returns the (negated) libfabric status. */
export function closeFid(o: Ofi, fid: bigint): number {
  const close = method(o, fid, o.t.fid, 'fid.ops', o.t.fi_ops, 'close', 'close');
  return close(fid) as number;
}

/** malloc'd memory that the fabric may touch after a call returns; `view` is a JS window on it. */
export interface NativeBuffer {
  ptr: bigint;
  bytes: number;
  view: Uint8Array;
  data: DataView;
}

/** calloc(1, bytes). @throws TransportUnavailableError when out of memory */
export function nativeBuffer(o: Ofi, bytes: number): NativeBuffer {
  const ptr = o.calloc(1, bytes);
  if (ptr === null || ptr === 0n) throw new TransportUnavailableError(`out of memory allocating ${bytes} B for fabric buffers`);
  const ab = o.koffi.view(ptr, bytes);
  return { ptr, bytes, view: new Uint8Array(ab), data: new DataView(ab) };
}

/** One libfabric provider, as the URI names it, and what to install for it. */
export interface ProviderSpec {
  /** The libfabric provider string for hints->fabric_attr->prov_name. */
  prov: string;
  /** URI scheme suffix (`ofi+tcp`). */
  scheme: string;
}

/** URI provider names and the libfabric provider strings they stand for. */
export const PROVIDERS: Record<string, string> = {
  tcp: 'tcp;ofi_rxm',
  sockets: 'sockets',
  verbs: 'verbs;ofi_rxm',
  efa: 'efa',
  psm3: 'psm3',
  cxi: 'cxi',
  shm: 'shm',
};

/** The libfabric provider string for a URI name (`tcp`) or a raw one (`tcp;ofi_rxm`). */
export function providerString(name: string): string {
  return PROVIDERS[name] ?? name;
}

/** mr_mode bits this plugin handles (no FI_MR_LOCAL: local buffers are not registered). */
export const MR_MODES_SUPPORTED = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;

/** What fi_getinfo chose. */
export interface InfoFacts {
  provName: string;
  mrMode: number;
  mrKeySize: number;
  maxMsgSize: number;
  addrFormat: number;
  /** domain_attr->data_progress: FI_PROGRESS_AUTO (1) or FI_PROGRESS_MANUAL (2). */
  dataProgress: number;
  /** Writes complete only once their data is in the target's memory (tx op_flags FI_DELIVERY_COMPLETE). */
  deliveryComplete: boolean;
}

/**
 * fi_getinfo for an RDM endpoint with RMA and atomics on provider `prov`.
 * @param node host to bind to (server, with FI_SOURCE) or to reach (client)
 * @param source true on the server (node is the local address)
 * @param threadSafe request FI_THREAD_SAFE (the server progresses from another thread)
 * @returns the fi_info list head (the caller fi_freeinfo's it) and its facts
 * @throws TransportUnavailableError naming the provider and what to check
 */
export function getInfo(o: Ofi, prov: string, node: string | null, source: boolean, threadSafe: boolean, deliveryComplete = false): { info: bigint; facts: InfoFacts } {
  const { t } = o;
  const hints = o.dupinfo(null);
  if (hints === null || hints === 0n) throw new TransportUnavailableError('fi_allocinfo failed (out of memory)');
  try {
    setField(o, hints, t.fi_info, 'caps', 'uint64_t', BigInt(FI_RMA | FI_ATOMIC | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE));
    setField(o, ptrField(o, hints, t.fi_info, 'ep_attr'), t.fi_ep_attr, 'type', 'int', FI_EP_RDM);
    const dom = ptrField(o, hints, t.fi_info, 'domain_attr');
    setField(o, dom, t.fi_domain_attr, 'mr_mode', 'int', MR_MODES_SUPPORTED);
    if (threadSafe) setField(o, dom, t.fi_domain_attr, 'threading', 'int', FI_THREAD_SAFE);
    if (deliveryComplete) setField(o, ptrField(o, hints, t.fi_info, 'tx_attr'), t.fi_tx_attr, 'op_flags', 'uint64_t', BigInt(FI_DELIVERY_COMPLETE));
    const name = o.strdup(prov);
    if (name === null) throw new TransportUnavailableError('strdup failed (out of memory)');
    setField(o, ptrField(o, hints, t.fi_info, 'fabric_attr'), t.fi_fabric_attr, 'prov_name', 'void *', name);
    const out: [bigint | null] = [null];
    const rc = o.getinfo(FI_API_VERSION, node, null, source ? FI_SOURCE : 0n, hints, out);
    if (rc !== 0 || out[0] === null) {
      throw new TransportUnavailableError(
        `libfabric has no provider "${prov}" with RDM endpoints, RMA and 64-bit atomics${node ? ` for ${node}` : ''} (fi_getinfo: ${fiError(o, -rc)}): `
        + `check \`fi_info -p '${prov}'\`; the software providers tcp;ofi_rxm and sockets come with ${INSTALL.replace(/^install /, '')}`,
      );
    }
    const info = out[0];
    const d = ptrField(o, info, t.fi_info, 'domain_attr');
    const facts: InfoFacts = {
      provName: o.koffi.decode(ptrField(o, ptrField(o, info, t.fi_info, 'fabric_attr'), t.fi_fabric_attr, 'prov_name'), 'char', -1) as string,
      mrMode: field(o, d, t.fi_domain_attr, 'mr_mode', 'int') as number,
      mrKeySize: Number(field(o, d, t.fi_domain_attr, 'mr_key_size', 'size_t')),
      maxMsgSize: Math.min(Number(field(o, ptrField(o, info, t.fi_info, 'ep_attr'), t.fi_ep_attr, 'max_msg_size', 'size_t')), 2 ** 30),
      addrFormat: field(o, info, t.fi_info, 'addr_format', 'uint32_t') as number,
      dataProgress: field(o, d, t.fi_domain_attr, 'data_progress', 'int') as number,
      deliveryComplete: (Number(field(o, ptrField(o, info, t.fi_info, 'tx_attr'), t.fi_tx_attr, 'op_flags', 'uint64_t')) & FI_DELIVERY_COMPLETE) !== 0,
    };
    if ((facts.mrMode & ~MR_MODES_SUPPORTED & ~3) !== 0) {
      o.freeinfo(info);
      throw new TransportUnavailableError(`provider ${facts.provName} needs memory-registration modes 0x${facts.mrMode.toString(16)} (FI_MR_LOCAL/ENDPOINT...), which the ofi transport does not support: use tcp or sockets`);
    }
    return { info, facts };
  } finally {
    o.freeinfo(hints);
  }
}
