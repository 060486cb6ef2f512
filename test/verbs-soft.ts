/**
 * A software RDMA device for the verbs tests on machines without one: an
 * implementation of plugins/rdma/verbs.ts's `Verbs` interface in which
 * rdma_cm (ids, event channels, connect/accept/disconnect) and the HCA
 * (PDs, MRs with lkeys and rkeys, RC QPs with states, CQs) are simulated in
 * this process, on the real memory the code under test registers.
 *
 * What is real: koffi, the struct layouts (every field is written and read
 * at the offsets test/verbs-layout.test.ts checks against rdma-core's
 * headers), the event channel's fd (an eventfd, so verbs-cm.ts's poll(2)
 * on a koffi worker thread and its non-blocking drain run as they would),
 * and ibv_post_send / ibv_poll_cq reached through the ops table of the
 * context (koffi callbacks placed at ibv_context.ops.post_send and poll_cq).
 * What is simulated: everything the kernel and the HCA do. The simulated
 * HCA follows the verbs rules the transport relies on: a work request
 * needs a QP in RTS whose peer QP is not in the error state (else
 * IBV_WC_RETRY_EXC_ERR), an rkey of a live MR of the peer's PD with the
 * access right (else IBV_WC_REM_ACCESS_ERR), and a local SGE inside an MR
 * of its own PD with that lkey (else IBV_WC_LOC_PROT_ERR); atomics need
 * 8-byte alignment and are done with Atomics on the registered memory, so
 * they are atomic against the node's CPU atomics (IBV_ATOMIC_GLOB).
 */
import { createRequire } from 'node:module';
import { RDMA_CM_EVENT, loadVerbs, type Verbs } from '../plugins/rdma/verbs.js';
import { offsetOfPath, verbsOpOffset } from '../plugins/rdma/verbs-layout.js';

type Koffi = typeof import('koffi').default;

const IBV_QPS_RTS = 3;
const IBV_QPS_ERR = 6;
const WC_LOC_PROT_ERR = 4;
const WC_REM_ACCESS_ERR = 10;
const WC_RETRY_EXC_ERR = 12;

interface Mr { ptr: bigint; pd: bigint; addr: number; length: number; access: number; lkey: number; rkey: number; valid: boolean }
interface Qp { ptr: bigint; cq: bigint; id: bigint; pd: bigint; state: number; peer: Qp | null }
interface Id { ptr: bigint; ch: bigint; port: number; listening: boolean; peer: bigint; connected: boolean }
interface Ev { type: number; id: bigint; listenId: bigint; status: number; pdata: Uint8Array; depth: number }

/** Knobs and counters of a SoftRdma. */
export interface SoftRdmaState {
  /** atomic_cap reported by ibv_query_device (2 = IBV_ATOMIC_GLOB). */
  atomicCap: number;
  /** Write atomics' original values back big-endian, as some HCAs do. */
  replyBigEndian: boolean;
  /** Work requests posted, by opcode. */
  posted: Map<number, number>;
  /** Completions by status. */
  completed: Map<number, number>;
  /** Calls made, in order (for checks of the fencing order). */
  calls: string[];
}

/** A Verbs implementation backed by the simulation (see the file comment); `dispose()` frees it. */
export function softRdma(): { verbs: Verbs; state: SoftRdmaState; dispose: () => void } {
  const real = loadVerbs();
  const k: Koffi = real.koffi;
  const t = real.t;
  const libc = (createRequire(import.meta.url)('koffi') as Koffi).load('libc.so.6');
  const eventfd = libc.func('int eventfd(unsigned int initval, int flags)');
  const writeFd = libc.func('intptr_t write(int fd, void *buf, size_t n)');
  const readFd = libc.func('intptr_t read(int fd, void *buf, size_t n)');
  const closeFd = libc.func('int close(int fd)');
  const allocs = new Set<bigint>();
  const alloc = (bytes: number): bigint => { const p = real.calloc(1, bytes)!; allocs.add(p); return p; };
  const release = (p: bigint): void => { if (allocs.delete(p)) real.free(p); };
  const ptr = (p: bigint, off: number): bigint => (k.decode(p, off, 'void *') as bigint | null) ?? 0n;
  const off = (type: Parameters<Koffi['offsetof']>[0], f: string): number => k.offsetof(type, f);
  const state: SoftRdmaState = { atomicCap: 2, replyBigEndian: false, posted: new Map(), completed: new Map(), calls: [] };
  const count = (m: Map<number, number>, key: number): void => { m.set(key, (m.get(key) ?? 0) + 1); };

  const device = alloc(64);
  const eight = alloc(8);
  const mrs = new Map<bigint, Mr>();
  const qps = new Map<bigint, Qp>();
  const ids = new Map<bigint, Id>();
  const channels = new Map<bigint, { fd: number; queue: Ev[] }>();
  const completions = new Map<bigint, number[]>();
  let nextKey = 0x100;

  const queue = (id: bigint, e: Omit<Ev, 'id'> & { id?: bigint }): void => {
    const target = ids.get(id);
    if (target === undefined) return;
    const ch = channels.get(target.ch);
    if (ch === undefined) return;
    ch.queue.push({ ...e, id: e.id ?? id });
    new DataView(k.view(eight, 8)).setBigUint64(0, 1n, true);
    writeFd(ch.fd, eight, 8);
  };

  // The HCA: post_send executes at once and queues its completion.
  const postSend = (qpPtr: bigint, wr: bigint): number => {
    const qp = qps.get(qpPtr);
    if (qp === undefined) return 22;
    const wrT = t.ibv_send_wr;
    const opcode = k.decode(wr, off(wrT, 'opcode'), 'int') as number;
    count(state.posted, opcode);
    const done = (status: number): number => { count(state.completed, status); completions.get(qp.cq)!.push(status); return 0; };
    if (qp.state !== IBV_QPS_RTS) return 22; // EINVAL: a QP in the error state refuses posts
    const sge = ptr(wr, off(wrT, 'sg_list'));
    const laddr = Number(k.decode(sge, off(t.ibv_sge, 'addr'), 'uint64_t') as bigint | number);
    const len = k.decode(sge, off(t.ibv_sge, 'length'), 'uint32_t') as number;
    const lkey = k.decode(sge, off(t.ibv_sge, 'lkey'), 'uint32_t') as number;
    const lmr = [...mrs.values()].find((m) => m.valid && m.lkey === lkey && m.pd === qp.pd);
    if (lmr === undefined || laddr < lmr.addr || laddr + len > lmr.addr + lmr.length) return done(WC_LOC_PROT_ERR);
    const peer = qp.peer;
    if (peer === null || peer.state === IBV_QPS_ERR || !qps.has(peer.ptr)) return done(WC_RETRY_EXC_ERR);
    const atomic = opcode === 5 || opcode === 6;
    const at = (path: string): number => offsetOfPath(k, wrT, path);
    const raddr = Number(k.decode(wr, at(atomic ? 'wr.atomic.remote_addr' : 'wr.rdma.remote_addr'), 'uint64_t') as bigint | number);
    const rkey = k.decode(wr, at(atomic ? 'wr.atomic.rkey' : 'wr.rdma.rkey'), 'uint32_t') as number;
    const need = opcode === 4 ? 4 : opcode === 0 ? 2 : 8; // REMOTE_READ, REMOTE_WRITE, REMOTE_ATOMIC
    const rmr = [...mrs.values()].find((m) => m.valid && m.rkey === rkey && m.pd === peer.pd);
    if (rmr === undefined || (rmr.access & need) === 0 || raddr < rmr.addr || raddr + len > rmr.addr + rmr.length) return done(WC_REM_ACCESS_ERR);
    const local = new Uint8Array(k.view(BigInt(laddr), len));
    const remote = new Uint8Array(k.view(BigInt(raddr), len));
    if (opcode === 4) local.set(remote);
    else if (opcode === 0) remote.set(local);
    else {
      if (len !== 8 || raddr % 8 !== 0) return done(WC_REM_ACCESS_ERR);
      const word = new BigInt64Array(k.view(BigInt(raddr), 8));
      const a = BigInt.asIntN(64, BigInt(k.decode(wr, at('wr.atomic.compare_add'), 'uint64_t') as bigint | number));
      const b = BigInt.asIntN(64, BigInt(k.decode(wr, at('wr.atomic.swap'), 'uint64_t') as bigint | number));
      const old = opcode === 5 ? Atomics.compareExchange(word, 0, a, b) : Atomics.add(word, 0, a);
      new DataView(local.buffer, local.byteOffset, 8).setBigInt64(0, old, !state.replyBigEndian);
    }
    return done(0);
  };
  const pollCq = (cq: bigint, _n: number, wc: bigint): number => {
    const q = completions.get(cq);
    const st = q?.shift();
    if (st === undefined) return 0;
    k.encode(wc, off(t.ibv_wc, 'status'), 'int', st);
    return 1;
  };
  const cbs = [k.register(postSend, k.pointer(real.proto.post_send)), k.register(pollCq, k.pointer(real.proto.poll_cq))];
  const ctx = alloc(k.sizeof(t.ibv_context));
  k.encode(ctx, off(t.ibv_context, 'device'), 'void *', device);
  k.encode(ctx, verbsOpOffset('post_send'), 'void *', cbs[0]);
  k.encode(ctx, verbsOpOffset('poll_cq'), 'void *', cbs[1]);

  const idOf = (p: bigint): Id => {
    const id = ids.get(p);
    if (id === undefined) throw new Error(`soft rdma: unknown id 0x${p.toString(16)}`);
    return id;
  };
  const newId = (ch: bigint): bigint => {
    const p = alloc(k.sizeof(t.rdma_cm_id));
    k.encode(p, off(t.rdma_cm_id, 'channel'), 'void *', ch);
    ids.set(p, { ptr: p, ch, port: 0, listening: false, peer: 0n, connected: false });
    return p;
  };
  const portOf = (sa: bigint): number => { const v = new DataView(k.view(sa, 4)); return v.getUint16(2, false); };

  const verbs: Verbs = {
    ...real,
    getDeviceList: (num) => { const l = alloc(16); k.encode(l, 0, 'void *', device); num[0] = 1; return l; },
    freeDeviceList: (l) => release(l),
    getDeviceName: () => 'soft0',
    queryDevice: (_c, attr) => { k.encode(attr, off(t.ibv_device_attr, 'atomic_cap'), 'int', state.atomicCap); return 0; },
    allocPd: (c) => { const p = alloc(k.sizeof(t.ibv_pd)); k.encode(p, 0, 'void *', c); state.calls.push('alloc_pd'); return p; },
    deallocPd: (p) => { release(p); state.calls.push('dealloc_pd'); return 0; },
    regMr: (pd, addr, length, access) => {
      const p = alloc(k.sizeof(t.ibv_mr));
      const m: Mr = { ptr: p, pd, addr: Number(addr), length, access, lkey: nextKey++, rkey: nextKey++, valid: true };
      k.encode(p, off(t.ibv_mr, 'lkey'), 'uint32_t', m.lkey);
      k.encode(p, off(t.ibv_mr, 'rkey'), 'uint32_t', m.rkey);
      mrs.set(p, m);
      state.calls.push(`reg_mr ${length}`);
      return p;
    },
    deregMr: (p) => { const m = mrs.get(p); if (m === undefined) return 22; m.valid = false; mrs.delete(p); release(p); state.calls.push('dereg_mr'); return 0; },
    modifyQp: (qp, attr, mask) => {
      const q = qps.get(qp);
      if (q === undefined || mask !== 1) return 22;
      q.state = k.decode(attr, off(t.ibv_qp_attr, 'qp_state'), 'int') as number;
      state.calls.push(`modify_qp ${q.state}`);
      return 0;
    },
    createEventChannel: () => {
      const p = alloc(8);
      const fd = eventfd(0, 0) as number;
      k.encode(p, 0, 'int', fd);
      channels.set(p, { fd, queue: [] });
      return p;
    },
    destroyEventChannel: (p) => { const ch = channels.get(p); if (ch) closeFd(ch.fd); channels.delete(p); release(p); },
    createId: (ch, out) => { out[0] = newId(ch ?? 0n); return 0; },
    destroyId: (p) => { ids.delete(p); release(p); state.calls.push('destroy_id'); return 0; },
    bindAddr: (p, sa) => { idOf(p).port = portOf(sa) || 20_000 + ids.size; k.encode(p, off(t.rdma_cm_id, 'verbs'), 'void *', ctx); return 0; },
    listen: (p) => { idOf(p).listening = true; return 0; },
    getSrcPort: (p) => { const port = idOf(p).port; return ((port & 0xff) << 8) | (port >> 8); },
    resolveAddr: (p, _src, dst) => {
      idOf(p).port = portOf(dst);
      k.encode(p, off(t.rdma_cm_id, 'verbs'), 'void *', ctx);
      queue(p, { type: RDMA_CM_EVENT.ADDR_RESOLVED, listenId: 0n, status: 0, pdata: new Uint8Array(0), depth: 0 });
      return 0;
    },
    resolveRoute: (p) => { queue(p, { type: RDMA_CM_EVENT.ROUTE_RESOLVED, listenId: 0n, status: 0, pdata: new Uint8Array(0), depth: 0 }); return 0; },
    createQp: (p, pd) => {
      const qp = alloc(k.sizeof(t.ibv_qp));
      const cq = alloc(k.sizeof(t.ibv_cq));
      k.encode(qp, 0, 'void *', ctx);
      k.encode(cq, 0, 'void *', ctx);
      k.encode(p, off(t.rdma_cm_id, 'qp'), 'void *', qp);
      k.encode(p, off(t.rdma_cm_id, 'send_cq'), 'void *', cq);
      k.encode(p, off(t.rdma_cm_id, 'recv_cq'), 'void *', cq);
      qps.set(qp, { ptr: qp, cq, id: p, pd, state: 1, peer: null });
      completions.set(cq, []);
      return 0;
    },
    destroyQp: (p) => {
      const qp = ptr(p, off(t.rdma_cm_id, 'qp'));
      const q = qps.get(qp);
      if (q) { qps.delete(qp); completions.delete(q.cq); release(q.cq); release(qp); }
      k.encode(p, off(t.rdma_cm_id, 'qp'), 'void *', null);
      state.calls.push('destroy_qp');
    },
    connect: (p, param) => {
      const me = idOf(p);
      const listener = [...ids.values()].find((i) => i.listening && i.port === me.port);
      if (listener === undefined) { queue(p, { type: RDMA_CM_EVENT.REJECTED, listenId: 0n, status: 28, pdata: new Uint8Array(0), depth: 0 }); return 0; }
      const cp = t.rdma_conn_param;
      const len = k.decode(param, off(cp, 'private_data_len'), 'uint8_t') as number;
      const data = new Uint8Array(k.view(ptr(param, off(cp, 'private_data')), len).slice(0));
      const srv = newId(listener.ch);
      k.encode(srv, off(t.rdma_cm_id, 'verbs'), 'void *', ctx);
      idOf(srv).peer = p;
      me.peer = srv;
      queue(srv, { type: RDMA_CM_EVENT.CONNECT_REQUEST, listenId: listener.ptr, status: 0, pdata: data, depth: k.decode(param, off(cp, 'initiator_depth'), 'uint8_t') as number });
      return 0;
    },
    accept: (p) => {
      const srv = idOf(p);
      const cli = ids.get(srv.peer);
      const sq = qps.get(ptr(p, off(t.rdma_cm_id, 'qp')));
      const cq = cli === undefined ? undefined : qps.get(ptr(cli.ptr, off(t.rdma_cm_id, 'qp')));
      if (cli === undefined || sq === undefined || cq === undefined) return 22;
      sq.peer = cq; cq.peer = sq;
      sq.state = IBV_QPS_RTS; cq.state = IBV_QPS_RTS;
      srv.connected = true; cli.connected = true;
      for (const i of [p, cli.ptr]) queue(i, { type: RDMA_CM_EVENT.ESTABLISHED, listenId: 0n, status: 0, pdata: new Uint8Array(0), depth: 0 });
      return 0;
    },
    reject: (p) => {
      const srv = idOf(p);
      if (ids.has(srv.peer)) queue(srv.peer, { type: RDMA_CM_EVENT.REJECTED, listenId: 0n, status: 28, pdata: new Uint8Array(0), depth: 0 });
      return 0;
    },
    disconnect: (p) => {
      const me = ids.get(p);
      if (me === undefined || !me.connected) return 22;
      me.connected = false;
      const q = qps.get(ptr(p, off(t.rdma_cm_id, 'qp')));
      if (q) q.state = IBV_QPS_ERR;
      const peer = ids.get(me.peer);
      if (peer?.connected) {
        peer.connected = false;
        queue(peer.ptr, { type: RDMA_CM_EVENT.DISCONNECTED, listenId: 0n, status: 0, pdata: new Uint8Array(0), depth: 0 });
      }
      state.calls.push('disconnect');
      return 0;
    },
    getCmEvent: (chPtr, out) => {
      const ch = channels.get(chPtr);
      const e = ch?.queue.shift();
      if (ch === undefined || e === undefined) {
        if (ch) readFd(ch.fd, eight, 8);
        return -1;
      }
      const ev = alloc(k.sizeof(t.rdma_cm_event));
      const et = t.rdma_cm_event;
      k.encode(ev, off(et, 'id'), 'void *', e.id);
      k.encode(ev, off(et, 'listen_id'), 'void *', e.listenId === 0n ? null : e.listenId);
      k.encode(ev, off(et, 'event'), 'int', e.type);
      k.encode(ev, off(et, 'status'), 'int', e.status);
      const conn = off(et, 'param');
      if (e.pdata.length > 0) {
        const pd = alloc(e.pdata.length);
        new Uint8Array(k.view(pd, e.pdata.length)).set(e.pdata);
        k.encode(ev, conn + off(t.rdma_conn_param, 'private_data'), 'void *', pd);
        k.encode(ev, conn + off(t.rdma_conn_param, 'private_data_len'), 'uint8_t', e.pdata.length);
      }
      k.encode(ev, conn + off(t.rdma_conn_param, 'initiator_depth'), 'uint8_t', e.depth);
      out[0] = ev;
      return 0;
    },
    ackCmEvent: (ev) => {
      const pd = ptr(ev, off(t.rdma_cm_event, 'param') + off(t.rdma_conn_param, 'private_data'));
      if (pd !== 0n) release(pd);
      release(ev);
      return 0;
    },
  };
  const dispose = (): void => {
    for (const ch of channels.values()) closeFd(ch.fd);
    channels.clear();
    for (const p of [...allocs]) release(p);
    for (const c of cbs) k.unregister(c);
  };
  return { verbs, state, dispose };
}
