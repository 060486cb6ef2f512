/**
 * One libfabric RDM endpoint with its fabric, domain, completion queue and
 * address vector: the object chain both the memory node (server.ts) and a
 * one-sided client (transport.ts) open.
 *
 *   fi_getinfo -> fi_fabric -> fi_domain -+-> fi_cq_open (FI_CQ_FORMAT_CONTEXT)
 *                                         +-> fi_av_open (FI_AV_TABLE)
 *                                         +-> fi_endpoint -> bind cq (send|recv), av -> fi_enable
 *
 * Every call after fi_fabric goes through an ops table (ofi.ts, `method`);
 * the functions the hot path needs are decoded once here and kept as
 * fields. Closing walks the chain backwards; a failed step of `open` closes
 * what was opened before it.
 */
import { TransportUnavailableError } from '../../src/errors.js';
import {
  FI_AV_TABLE, FI_CQ_FORMAT_CONTEXT, FI_ENABLE, FI_RECV, FI_TRANSMIT, FI_WAIT_NONE, FI_WAIT_UNSPEC,
  closeFid, fiError, getInfo, method, ptrField, setField,
  type InfoFacts, type KFunc, type Ofi, ofi,
} from './ofi.js';

/** Options of `OfiEndpoint.open`. */
export interface EndpointOptions {
  /** libfabric provider string (`tcp;ofi_rxm`, `sockets`). */
  prov: string;
  /** Host to bind (server) or to reach (client); null for the provider's default. */
  node: string | null;
  /** True on the memory node: `node` is a local address and the CQ gets a wait object for fi_cq_sread. */
  server: boolean;
}

/** An open endpoint; see the file comment. */
export class OfiEndpoint {
  readonly o: Ofi;
  readonly facts: InfoFacts;
  info = 0n;
  fabric = 0n;
  domain = 0n;
  cq = 0n;
  av = 0n;
  ep = 0n;
  /** Decoded ops of the endpoint and CQ (hot path). */
  read!: KFunc;
  write!: KFunc;
  fetchAtomic!: KFunc;
  compareAtomic!: KFunc;
  cqRead!: KFunc;
  cqReadErr!: KFunc;
  cqSread!: KFunc | null;
  private mrReg!: KFunc;
  private closed = false;

  private constructor(o: Ofi, info: bigint, facts: InfoFacts) {
    this.o = o;
    this.info = info;
    this.facts = facts;
  }

  /**
   * Opens the chain (see the file comment).
   * @throws TransportUnavailableError (libfabric missing, no such provider, a step refused, with fi_strerror's text)
   */
  static open(opts: EndpointOptions): OfiEndpoint {
    const o = ofi();
    let got: ReturnType<typeof getInfo>;
    if (opts.server) {
      got = getInfo(o, opts.prov, opts.node, true, true);
    } else {
      // Writes with FI_DELIVERY_COMPLETE where the provider offers it (transport.ts, ordering argument).
      try {
        got = getInfo(o, opts.prov, opts.node, false, false, true);
      } catch {
        got = getInfo(o, opts.prov, opts.node, false, false, false);
      }
    }
    const { info, facts } = got;
    const e = new OfiEndpoint(o, info, facts);
    try {
      e.build(opts.server);
    } catch (err) {
      e.close();
      throw err;
    }
    return e;
  }

  private build(server: boolean): void {
    const { o } = this;
    const { t } = o;
    const out: [bigint | null] = [null];
    const must = (rc: number, what: string): bigint => {
      if (rc !== 0 || out[0] === null) throw new TransportUnavailableError(`libfabric ${what} failed on provider ${this.facts.provName}: ${fiError(o, -rc)}`);
      const v = out[0];
      out[0] = null;
      return v;
    };
    this.fabric = must(o.fabric(ptrField(o, this.info, t.fi_info, 'fabric_attr'), out, null), 'fi_fabric');
    this.domain = must(method(o, this.fabric, t.fid_fabric, 'ops', t.fi_ops_fabric, 'domain', 'domain')(this.fabric, this.info, out, null) as number, 'fi_domain');
    const cqAttr = nativeStruct(o, t.fi_cq_attr);
    try {
      setField(o, cqAttr, t.fi_cq_attr, 'format', 'int', FI_CQ_FORMAT_CONTEXT);
      setField(o, cqAttr, t.fi_cq_attr, 'wait_obj', 'int', server ? FI_WAIT_UNSPEC : FI_WAIT_NONE);
      this.cq = must(method(o, this.domain, t.fid_domain, 'ops', t.fi_ops_domain, 'cq_open', 'cq_open')(this.domain, cqAttr, out, null) as number, 'fi_cq_open');
    } finally {
      o.free(cqAttr);
    }
    const avAttr = nativeStruct(o, t.fi_av_attr);
    try {
      setField(o, avAttr, t.fi_av_attr, 'type', 'int', FI_AV_TABLE);
      setField(o, avAttr, t.fi_av_attr, 'count', 'size_t', 64);
      this.av = must(method(o, this.domain, t.fid_domain, 'ops', t.fi_ops_domain, 'av_open', 'av_open')(this.domain, avAttr, out, null) as number, 'fi_av_open');
    } finally {
      o.free(avAttr);
    }
    this.ep = must(method(o, this.domain, t.fid_domain, 'ops', t.fi_ops_domain, 'endpoint', 'endpoint')(this.domain, this.info, out, null) as number, 'fi_endpoint');
    const bind = method(o, this.ep, t.fid, 'fid.ops', t.fi_ops, 'bind', 'bind');
    let rc = bind(this.ep, this.cq, BigInt(FI_TRANSMIT | FI_RECV)) as number;
    if (rc !== 0) throw new TransportUnavailableError(`fi_ep_bind(cq) failed: ${fiError(o, -rc)}`);
    rc = bind(this.ep, this.av, 0n) as number;
    if (rc !== 0) throw new TransportUnavailableError(`fi_ep_bind(av) failed: ${fiError(o, -rc)}`);
    rc = method(o, this.ep, t.fid, 'fid.ops', t.fi_ops, 'control', 'control')(this.ep, FI_ENABLE, null) as number;
    if (rc !== 0) throw new TransportUnavailableError(`fi_enable failed: ${fiError(o, -rc)}`);
    this.read = method(o, this.ep, t.fid_ep, 'rma', t.fi_ops_rma, 'read', 'read');
    this.write = method(o, this.ep, t.fid_ep, 'rma', t.fi_ops_rma, 'write', 'write');
    this.fetchAtomic = method(o, this.ep, t.fid_ep, 'atomic', t.fi_ops_atomic, 'readwrite', 'fetch_atomic');
    this.compareAtomic = method(o, this.ep, t.fid_ep, 'atomic', t.fi_ops_atomic, 'compwrite', 'compare_atomic');
    this.cqRead = method(o, this.cq, t.fid_cq, 'ops', t.fi_ops_cq, 'read', 'cq_read');
    this.cqReadErr = method(o, this.cq, t.fid_cq, 'ops', t.fi_ops_cq, 'readerr', 'cq_readerr');
    try {
      this.cqSread = method(o, this.cq, t.fid_cq, 'ops', t.fi_ops_cq, 'sread', 'cq_sread');
    } catch {
      this.cqSread = null;
    }
    this.mrReg = method(o, this.domain, t.fid_domain, 'mr', t.fi_ops_mr, 'reg', 'mr_reg');
  }

  /** This endpoint's fabric address (fi_getname), as bytes to hand to the peer. */
  name(): Buffer {
    const { o } = this;
    const buf = o.calloc(1, 256);
    if (buf === null) throw new TransportUnavailableError('out of memory');
    try {
      const len: [number] = [256];
      const rc = method(o, this.ep, o.t.fid_ep, 'cm', o.t.fi_ops_cm, 'getname', 'getname')(this.ep, buf, len) as number;
      if (rc !== 0) throw new TransportUnavailableError(`fi_getname failed: ${fiError(o, -rc)}`);
      return Buffer.from(o.koffi.view(buf, len[0]).slice(0));
    } finally {
      o.free(buf);
    }
  }

  /**
   * fi_av_insert of a peer's address (bytes from its `name()`).
   * @returns the peer's fi_addr_t
   * @throws TransportUnavailableError when the provider refuses the address
   */
  insert(addr: Uint8Array): bigint {
    const { o } = this;
    const a = o.calloc(1, addr.length + 8);
    const out = o.calloc(1, 8);
    if (a === null || out === null) throw new TransportUnavailableError('out of memory');
    try {
      new Uint8Array(o.koffi.view(a, addr.length)).set(addr);
      const n = method(o, this.av, o.t.fid_av, 'ops', o.t.fi_ops_av, 'insert', 'av_insert')(this.av, a, 1, out, 0n, null) as number;
      if (n !== 1) throw new TransportUnavailableError(`fi_av_insert refused the memory node's fabric address (${n < 0 ? fiError(o, -n) : 'not inserted'}): server and client must use the same provider and address family`);
      return new DataView(o.koffi.view(out, 8)).getBigUint64(0, true);
    } finally {
      o.free(a);
      o.free(out);
    }
  }

  /**
   * fi_mr_reg of `bytes` at `ptr` for remote read, write and atomics, asking
   * for key `key` (providers with FI_MR_PROV_KEY choose their own).
   * @returns the fid_mr and the key the provider granted
   * @throws TransportUnavailableError with fi_strerror's text (FI_ENOKEY: key in use)
   */
  register(ptr: bigint, bytes: number, access: number, key: bigint): { mr: bigint; key: bigint } {
    const { o } = this;
    const out: [bigint | null] = [null];
    const rc = this.mrReg(this.domain, ptr, bytes, BigInt(access), 0n, key, 0n, out, null) as number;
    if (rc !== 0 || out[0] === null) throw new TransportUnavailableError(`fi_mr_reg of ${bytes} B failed: ${fiError(o, -rc)}`);
    const mr = out[0];
    const granted = BigInt.asUintN(64, BigInt(o.koffi.decode(mr, o.koffi.offsetof(o.t.fid_mr, 'key'), 'uint64_t') as bigint | number));
    return { mr, key: granted };
  }

  /** fi_close of any fid (an MR to cut a client off). @returns the libfabric status (0 or negative) */
  closeFid(fid: bigint): number {
    return closeFid(this.o, fid);
  }

  /** Closes the chain backwards; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const f of [this.ep, this.av, this.cq, this.domain, this.fabric]) {
      if (f !== 0n) closeFid(this.o, f);
    }
    this.ep = this.av = this.cq = this.domain = this.fabric = 0n;
    if (this.info !== 0n) this.o.freeinfo(this.info);
    this.info = 0n;
  }
}

/** A zeroed malloc'd struct of koffi type `type`; the caller frees it. */
function nativeStruct(o: Ofi, type: Parameters<Ofi['koffi']['sizeof']>[0]): bigint {
  const p = o.calloc(1, o.koffi.sizeof(type));
  if (p === null || p === 0n) throw new TransportUnavailableError('out of memory');
  return p;
}
