/**
 * koffi definitions of the rdma-core (libibverbs) structs a verbs backend
 * binds, and the layout table that test/verbs-layout.test.ts compares,
 * field by field, with what a C compiler says against the installed
 * headers (infiniband/verbs.h), together with the libfabric layouts of
 * ofi.ts (rdma/fabric.h ...).
 *
 * ibv_post_send and ibv_poll_cq are static inline in verbs.h:
 *   ibv_post_send(qp, wr, bad) = qp->context->ops.post_send(qp, wr, bad)
 *   ibv_poll_cq(cq, n, wc)     = cq->context->ops.poll_cq(cq, n, wc)
 * so a binding reads `context` at offset 0 of ibv_qp / ibv_cq and the
 * function pointer at offsetof(ibv_context, ops) + offsetof(ops, slot):
 * `verbsOpOffset('post_send')`.
 *
 * Anonymous unions of C are named fields here (`imm_data` covers
 * imm_data/invalidate_rkey, `ext` covers bind_mw/tso); the table maps each
 * koffi field to the C member that designates the same bytes.
 *
 * The verbs transport (verbs.ts, verbs-transport.ts, verbs-server.ts)
 * reads and writes exactly these layouts, plus the librdmacm ones
 * (rdma/rdma_cma.h: rdma_cm_id, rdma_cm_event, rdma_conn_param) and the
 * socket addresses rdma_cm takes (`rdmacmChecks`).
 */
import { createRequire } from 'node:module';
import { TransportUnavailableError } from '../../src/errors.js';
import { ofi } from './ofi.js';

type Koffi = typeof import('koffi').default;
type KType = ReturnType<Koffi['struct']>;

/** One struct to check: its C spelling, header, koffi type and the fields (koffi name -> C member designator). */
export interface LayoutCheck {
  /** C type, e.g. `struct ibv_send_wr`. */
  c: string;
  /** Header that declares it. */
  header: string;
  type: KType;
  /** [koffi field path ('wr.atomic.rkey'), C member designator ('wr.atomic.rkey')]. */
  fields: Array<[string, string]>;
}

/** The verbs and rdma_cm structs (see the file comment). */
export interface VerbsLayouts {
  ibv_sge: KType; ibv_send_wr: KType; ibv_wc: KType; ibv_qp_cap: KType; ibv_qp_init_attr: KType;
  ibv_device_attr: KType; ibv_context_ops: KType; ibv_context: KType; ibv_qp: KType; ibv_cq: KType;
  ibv_global_route: KType; ibv_ah_attr: KType; ibv_qp_attr: KType; ibv_mr: KType; ibv_pd: KType;
  sockaddr_in: KType; sockaddr_in6: KType; rdma_event_channel: KType; rdma_ib_addr: KType; rdma_addr: KType;
  rdma_route: KType; rdma_cm_id: KType; rdma_conn_param: KType; rdma_ud_param: KType; rdma_cm_event: KType;
}

let cached: { koffi: Koffi; t: VerbsLayouts } | null = null;

/** Names of the ibv_context_ops slots, in order (verbs.h, rdma-core >= 28). */
export const CONTEXT_OPS = [
  '_compat_query_device', '_compat_query_port', '_compat_alloc_pd', '_compat_dealloc_pd', '_compat_reg_mr', '_compat_rereg_mr',
  '_compat_dereg_mr', 'alloc_mw', 'bind_mw', 'dealloc_mw', '_compat_create_cq', 'poll_cq', 'req_notify_cq', '_compat_cq_event',
  '_compat_resize_cq', '_compat_destroy_cq', '_compat_create_srq', '_compat_modify_srq', '_compat_query_srq', '_compat_destroy_srq',
  'post_srq_recv', '_compat_create_qp', '_compat_query_qp', '_compat_modify_qp', '_compat_destroy_qp', 'post_send', 'post_recv',
  '_compat_create_ah', '_compat_destroy_ah', '_compat_attach_mcast', '_compat_detach_mcast', '_compat_async_event',
] as const;

/** The koffi verbs layouts (koffi only: libibverbs itself is not loaded). @throws TransportUnavailableError without koffi */
export function verbsLayouts(): { koffi: Koffi; t: VerbsLayouts } {
  if (cached !== null) return cached;
  let k: Koffi;
  try {
    k = createRequire(import.meta.url)('koffi') as Koffi;
  } catch (err) {
    throw new TransportUnavailableError('the verbs layouts need the koffi package: run `npm install koffi`', { cause: err });
  }
  const P = 'void *';
  // pthread_mutex_t is 40 bytes, pthread_cond_t 48, both 8-aligned, on glibc LP64 (the C check confirms).
  const mutex = k.array('int64_t', 5);
  const cond = k.array('int64_t', 6);
  const ibv_sge = k.struct('dmem_ibv_sge', { addr: 'uint64_t', length: 'uint32_t', lkey: 'uint32_t' });
  const rdma = k.struct('dmem_ibv_wr_rdma', { remote_addr: 'uint64_t', rkey: 'uint32_t' });
  const atomic = k.struct('dmem_ibv_wr_atomic', { remote_addr: 'uint64_t', compare_add: 'uint64_t', swap: 'uint64_t', rkey: 'uint32_t' });
  const ud = k.struct('dmem_ibv_wr_ud', { ah: P, remote_qpn: 'uint32_t', remote_qkey: 'uint32_t' });
  const bindInfo = k.struct('dmem_ibv_mw_bind_info', { mr: P, addr: 'uint64_t', length: 'uint64_t', mw_access_flags: 'uint32_t' });
  const bindMw = k.struct('dmem_ibv_wr_bind_mw', { mw: P, rkey: 'uint32_t', bind_info: bindInfo });
  const tso = k.struct('dmem_ibv_wr_tso', { hdr: P, hdr_sz: 'uint16_t', mss: 'uint16_t' });
  const ops: Record<string, string> = {};
  for (const name of CONTEXT_OPS) ops[name] = P;
  const ibv_context_ops = k.struct('dmem_ibv_context_ops', ops);
  const t: VerbsLayouts = {
    ibv_sge,
    ibv_send_wr: k.struct('dmem_ibv_send_wr', {
      wr_id: 'uint64_t', next: P, sg_list: P, num_sge: 'int', opcode: 'int', send_flags: 'uint32_t',
      imm_data: 'uint32_t',
      wr: k.union('dmem_ibv_wr_union', { rdma, atomic, ud }),
      qp_type: k.union('dmem_ibv_qp_type_union', { xrc: k.struct('dmem_ibv_wr_xrc', { remote_srqn: 'uint32_t' }) }),
      ext: k.union('dmem_ibv_wr_ext', { bind_mw: bindMw, tso }),
    }),
    ibv_wc: k.struct('dmem_ibv_wc', {
      wr_id: 'uint64_t', status: 'int', opcode: 'int', vendor_err: 'uint32_t', byte_len: 'uint32_t', imm_data: 'uint32_t',
      qp_num: 'uint32_t', src_qp: 'uint32_t', wc_flags: 'uint32_t', pkey_index: 'uint16_t', slid: 'uint16_t', sl: 'uint8_t',
      dlid_path_bits: 'uint8_t',
    }),
    ibv_qp_cap: k.struct('dmem_ibv_qp_cap', {
      max_send_wr: 'uint32_t', max_recv_wr: 'uint32_t', max_send_sge: 'uint32_t', max_recv_sge: 'uint32_t', max_inline_data: 'uint32_t',
    }),
    ibv_qp_init_attr: null as unknown as KType,
    ibv_global_route: null as unknown as KType, ibv_ah_attr: null as unknown as KType, ibv_qp_attr: null as unknown as KType,
    ibv_mr: null as unknown as KType, ibv_pd: null as unknown as KType, sockaddr_in: null as unknown as KType,
    sockaddr_in6: null as unknown as KType, rdma_event_channel: null as unknown as KType, rdma_ib_addr: null as unknown as KType,
    rdma_addr: null as unknown as KType, rdma_route: null as unknown as KType, rdma_cm_id: null as unknown as KType,
    rdma_conn_param: null as unknown as KType, rdma_ud_param: null as unknown as KType, rdma_cm_event: null as unknown as KType,
    ibv_device_attr: k.struct('dmem_ibv_device_attr', {
      fw_ver: k.array('char', 64), node_guid: 'uint64_t', sys_image_guid: 'uint64_t', max_mr_size: 'uint64_t', page_size_cap: 'uint64_t',
      vendor_id: 'uint32_t', vendor_part_id: 'uint32_t', hw_ver: 'uint32_t', max_qp: 'int', max_qp_wr: 'int', device_cap_flags: 'uint32_t',
      max_sge: 'int', max_sge_rd: 'int', max_cq: 'int', max_cqe: 'int', max_mr: 'int', max_pd: 'int', max_qp_rd_atom: 'int',
      max_ee_rd_atom: 'int', max_res_rd_atom: 'int', max_qp_init_rd_atom: 'int', max_ee_init_rd_atom: 'int', atomic_cap: 'int',
      max_ee: 'int', max_rdd: 'int', max_mw: 'int', max_raw_ipv6_qp: 'int', max_raw_ethy_qp: 'int', max_mcast_grp: 'int',
      max_mcast_qp_attach: 'int', max_total_mcast_qp_attach: 'int', max_ah: 'int', max_fmr: 'int', max_map_per_fmr: 'int',
      max_srq: 'int', max_srq_wr: 'int', max_srq_sge: 'int', max_pkeys: 'uint16_t', local_ca_ack_delay: 'uint8_t', phys_port_cnt: 'uint8_t',
    }),
    ibv_context_ops,
    ibv_context: k.struct('dmem_ibv_context', {
      device: P, ops: ibv_context_ops, cmd_fd: 'int', async_fd: 'int', num_comp_vectors: 'int', mutex, abi_compat: P,
    }),
    ibv_qp: k.struct('dmem_ibv_qp', {
      context: P, qp_context: P, pd: P, send_cq: P, recv_cq: P, srq: P, handle: 'uint32_t', qp_num: 'uint32_t', state: 'int',
      qp_type: 'int', mutex, cond, events_completed: 'uint32_t',
    }),
    ibv_cq: k.struct('dmem_ibv_cq', {
      context: P, channel: P, cq_context: P, handle: 'uint32_t', cqe: 'int', mutex, cond,
      comp_events_completed: 'uint32_t', async_events_completed: 'uint32_t',
    }),
  };
  t.ibv_qp_init_attr = k.struct('dmem_ibv_qp_init_attr', {
    qp_context: P, send_cq: P, recv_cq: P, srq: P, cap: t.ibv_qp_cap, qp_type: 'int', sq_sig_all: 'int',
  });
  // union ibv_gid is raw[16] or two __be64: one 8-aligned struct of 16 bytes.
  const gid = k.struct('dmem_ibv_gid', { subnet_prefix: 'uint64_t', interface_id: 'uint64_t' });
  t.ibv_global_route = k.struct('dmem_ibv_global_route', {
    dgid: gid, flow_label: 'uint32_t', sgid_index: 'uint8_t', hop_limit: 'uint8_t', traffic_class: 'uint8_t',
  });
  t.ibv_ah_attr = k.struct('dmem_ibv_ah_attr', {
    grh: t.ibv_global_route, dlid: 'uint16_t', sl: 'uint8_t', src_path_bits: 'uint8_t', static_rate: 'uint8_t', is_global: 'uint8_t',
    port_num: 'uint8_t',
  });
  t.ibv_qp_attr = k.struct('dmem_ibv_qp_attr', {
    qp_state: 'int', cur_qp_state: 'int', path_mtu: 'int', path_mig_state: 'int', qkey: 'uint32_t', rq_psn: 'uint32_t',
    sq_psn: 'uint32_t', dest_qp_num: 'uint32_t', qp_access_flags: 'uint32_t', cap: t.ibv_qp_cap, ah_attr: t.ibv_ah_attr,
    alt_ah_attr: t.ibv_ah_attr, pkey_index: 'uint16_t', alt_pkey_index: 'uint16_t', en_sqd_async_notify: 'uint8_t',
    sq_draining: 'uint8_t', max_rd_atomic: 'uint8_t', max_dest_rd_atomic: 'uint8_t', min_rnr_timer: 'uint8_t', port_num: 'uint8_t',
    timeout: 'uint8_t', retry_cnt: 'uint8_t', rnr_retry: 'uint8_t', alt_port_num: 'uint8_t', alt_timeout: 'uint8_t',
    rate_limit: 'uint32_t',
  });
  t.ibv_mr = k.struct('dmem_ibv_mr', {
    context: P, pd: P, addr: P, length: 'size_t', handle: 'uint32_t', lkey: 'uint32_t', rkey: 'uint32_t',
  });
  t.ibv_pd = k.struct('dmem_ibv_pd', { context: P, handle: 'uint32_t' });
  // Socket addresses as the kernel lays them out (sin_port and sin_addr in network byte order).
  t.sockaddr_in = k.struct('dmem_sockaddr_in', {
    sin_family: 'uint16_t', sin_port: 'uint16_t', sin_addr: 'uint32_t', sin_zero: k.array('uint8_t', 8),
  });
  t.sockaddr_in6 = k.struct('dmem_sockaddr_in6', {
    sin6_family: 'uint16_t', sin6_port: 'uint16_t', sin6_flowinfo: 'uint32_t', sin6_addr: k.array('uint8_t', 16),
    sin6_scope_id: 'uint32_t',
  });
  // sockaddr_storage: 128 bytes, 8-aligned (glibc's __ss_align is an unsigned long).
  const storage = k.array('int64_t', 16);
  t.rdma_event_channel = k.struct('dmem_rdma_event_channel', { fd: 'int' });
  t.rdma_ib_addr = k.struct('dmem_rdma_ib_addr', { sgid: gid, dgid: gid, pkey: 'uint16_t' });
  t.rdma_addr = k.struct('dmem_rdma_addr', { src: storage, dst: storage, addr: t.rdma_ib_addr });
  t.rdma_route = k.struct('dmem_rdma_route', { addr: t.rdma_addr, path_rec: P, num_paths: 'int' });
  t.rdma_cm_id = k.struct('dmem_rdma_cm_id', {
    verbs: P, channel: P, context: P, qp: P, route: t.rdma_route, ps: 'int', port_num: 'uint8_t', event: P,
    send_cq_channel: P, send_cq: P, recv_cq_channel: P, recv_cq: P, srq: P, pd: P, qp_type: 'int',
  });
  t.rdma_conn_param = k.struct('dmem_rdma_conn_param', {
    private_data: P, private_data_len: 'uint8_t', responder_resources: 'uint8_t', initiator_depth: 'uint8_t',
    flow_control: 'uint8_t', retry_count: 'uint8_t', rnr_retry_count: 'uint8_t', srq: 'uint8_t', qp_num: 'uint32_t',
  });
  t.rdma_ud_param = k.struct('dmem_rdma_ud_param', {
    private_data: P, private_data_len: 'uint8_t', ah_attr: t.ibv_ah_attr, qp_num: 'uint32_t', qkey: 'uint32_t',
  });
  t.rdma_cm_event = k.struct('dmem_rdma_cm_event', {
    id: P, listen_id: P, event: 'int', status: 'int',
    param: k.union('dmem_rdma_cm_event_param', { conn: t.rdma_conn_param, ud: t.rdma_ud_param }),
  });
  cached = { koffi: k, t };
  return cached;
}

/** Byte offset of ops slot `slot` inside struct ibv_context (the function pointer ibv_post_send/ibv_poll_cq call). */
export function verbsOpOffset(slot: (typeof CONTEXT_OPS)[number]): number {
  const { koffi: k, t } = verbsLayouts();
  return k.offsetof(t.ibv_context, 'ops') + k.offsetof(t.ibv_context_ops, slot);
}

/** Every field of `type` as [koffi name, C designator], renaming anonymous unions. */
function fieldsOf(type: KType, rename: Record<string, string> = {}): Array<[string, string]> {
  const members = (type as unknown as { members: Record<string, unknown> }).members;
  return Object.keys(members).map((m) => [m, rename[m] ?? m]);
}

/** Offset of a dotted koffi field path ('wr.atomic.rkey') in `type`. */
export function offsetOfPath(k: Koffi, type: KType, path: string): number {
  let off = 0;
  let cur = type;
  for (const part of path.split('.')) {
    const m = (cur as unknown as { members: Record<string, { offset: number; type: KType }> }).members[part];
    if (m === undefined) throw new Error(`no field ${part} in ${path}`);
    off += m.offset;
    cur = m.type;
  }
  return off;
}

/** The verbs structs to check against infiniband/verbs.h. */
export function verbsChecks(): LayoutCheck[] {
  const { t } = verbsLayouts();
  const h = 'infiniband/verbs.h';
  const wrPaths: Array<[string, string]> = [
    'wr.rdma.remote_addr', 'wr.rdma.rkey', 'wr.atomic.remote_addr', 'wr.atomic.compare_add', 'wr.atomic.swap', 'wr.atomic.rkey',
    'wr.ud.ah', 'wr.ud.remote_qpn', 'wr.ud.remote_qkey', 'qp_type.xrc.remote_srqn',
  ].map((p) => [p, p]);
  return [
    { c: 'struct ibv_sge', header: h, type: t.ibv_sge, fields: fieldsOf(t.ibv_sge) },
    {
      c: 'struct ibv_send_wr', header: h, type: t.ibv_send_wr,
      fields: [...fieldsOf(t.ibv_send_wr, { ext: 'bind_mw' }), ['imm_data', 'invalidate_rkey'], ['ext', 'tso'], ...wrPaths,
        ['ext.bind_mw.rkey', 'bind_mw.rkey'], ['ext.bind_mw.bind_info', 'bind_mw.bind_info'], ['ext.tso.mss', 'tso.mss']],
    },
    { c: 'struct ibv_wc', header: h, type: t.ibv_wc, fields: [...fieldsOf(t.ibv_wc), ['imm_data', 'invalidated_rkey']] },
    { c: 'struct ibv_qp_cap', header: h, type: t.ibv_qp_cap, fields: fieldsOf(t.ibv_qp_cap) },
    { c: 'struct ibv_qp_init_attr', header: h, type: t.ibv_qp_init_attr, fields: fieldsOf(t.ibv_qp_init_attr) },
    { c: 'struct ibv_device_attr', header: h, type: t.ibv_device_attr, fields: fieldsOf(t.ibv_device_attr) },
    { c: 'struct ibv_context_ops', header: h, type: t.ibv_context_ops, fields: fieldsOf(t.ibv_context_ops) },
    { c: 'struct ibv_context', header: h, type: t.ibv_context, fields: [...fieldsOf(t.ibv_context), ['ops.post_send', 'ops.post_send'], ['ops.poll_cq', 'ops.poll_cq']] },
    { c: 'struct ibv_qp', header: h, type: t.ibv_qp, fields: fieldsOf(t.ibv_qp) },
    { c: 'struct ibv_cq', header: h, type: t.ibv_cq, fields: fieldsOf(t.ibv_cq) },
    { c: 'struct ibv_global_route', header: h, type: t.ibv_global_route, fields: [...fieldsOf(t.ibv_global_route), ['dgid.interface_id', 'dgid.global.interface_id']] },
    { c: 'struct ibv_ah_attr', header: h, type: t.ibv_ah_attr, fields: fieldsOf(t.ibv_ah_attr) },
    { c: 'struct ibv_qp_attr', header: h, type: t.ibv_qp_attr, fields: fieldsOf(t.ibv_qp_attr) },
    { c: 'struct ibv_mr', header: h, type: t.ibv_mr, fields: fieldsOf(t.ibv_mr) },
    { c: 'struct ibv_pd', header: h, type: t.ibv_pd, fields: fieldsOf(t.ibv_pd) },
  ];
}

/** The librdmacm structs (and the socket addresses they carry) to check against rdma/rdma_cma.h. */
export function rdmacmChecks(): LayoutCheck[] {
  const { t } = verbsLayouts();
  const h = 'rdma/rdma_cma.h';
  return [
    { c: 'struct sockaddr_in', header: 'netinet/in.h', type: t.sockaddr_in, fields: fieldsOf(t.sockaddr_in) },
    { c: 'struct sockaddr_in6', header: 'netinet/in.h', type: t.sockaddr_in6, fields: fieldsOf(t.sockaddr_in6) },
    { c: 'struct rdma_event_channel', header: h, type: t.rdma_event_channel, fields: fieldsOf(t.rdma_event_channel) },
    { c: 'struct rdma_ib_addr', header: h, type: t.rdma_ib_addr, fields: fieldsOf(t.rdma_ib_addr) },
    {
      c: 'struct rdma_addr', header: h, type: t.rdma_addr,
      fields: [['src', 'src_storage'], ['src', 'src_sin'], ['dst', 'dst_storage'], ['dst', 'dst_sin6'], ['addr', 'addr.ibaddr'], ['addr.pkey', 'addr.ibaddr.pkey']],
    },
    { c: 'struct rdma_route', header: h, type: t.rdma_route, fields: fieldsOf(t.rdma_route) },
    { c: 'struct rdma_cm_id', header: h, type: t.rdma_cm_id, fields: [...fieldsOf(t.rdma_cm_id), ['route.addr.dst', 'route.addr.dst_sin']] },
    { c: 'struct rdma_conn_param', header: h, type: t.rdma_conn_param, fields: fieldsOf(t.rdma_conn_param) },
    { c: 'struct rdma_ud_param', header: h, type: t.rdma_ud_param, fields: fieldsOf(t.rdma_ud_param) },
    {
      c: 'struct rdma_cm_event', header: h, type: t.rdma_cm_event,
      fields: [...fieldsOf(t.rdma_cm_event), ['param.conn.private_data', 'param.conn.private_data'],
        ['param.conn.private_data_len', 'param.conn.private_data_len'], ['param.conn.initiator_depth', 'param.conn.initiator_depth'],
        ['param.ud.qkey', 'param.ud.qkey']],
    },
  ];
}

/** The libfabric structs of ofi.ts to check against rdma/fabric.h and friends. @throws TransportUnavailableError without libfabric */
export function ofiChecks(): LayoutCheck[] {
  const { t } = ofi();
  const out: LayoutCheck[] = [];
  for (const [name, type] of Object.entries(t)) {
    out.push({ c: `struct ${name}`, header: 'rdma/fabric.h', type, fields: fieldsOf(type) });
  }
  return out;
}

/** A C program that prints `S <ctype> <sizeof>` and `F <ctype> <designator> <offsetof>` for every check. */
export function layoutProgram(checks: LayoutCheck[]): string {
  const headers = new Set(['stdio.h', 'stddef.h', ...checks.map((c) => c.header)]);
  if (checks.some((c) => c.header === 'rdma/fabric.h')) {
    for (const x of ['rdma/fi_domain.h', 'rdma/fi_endpoint.h', 'rdma/fi_cm.h', 'rdma/fi_rma.h', 'rdma/fi_atomic.h', 'rdma/fi_eq.h']) headers.add(x);
  }
  const lines = [...headers].map((x) => `#include <${x}>`);
  lines.push('int main(void) {');
  for (const c of checks) {
    lines.push(`  printf("S %s %zu\\n", "${c.c}", sizeof(${c.c}));`);
    for (const [, designator] of c.fields) {
      lines.push(`  printf("F %s %s %zu\\n", "${c.c}", "${designator}", offsetof(${c.c}, ${designator}));`);
    }
  }
  lines.push('  return 0;', '}');
  return `${lines.join('\n')}\n`;
}
