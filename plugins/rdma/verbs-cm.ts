/**
 * An rdma_cm event channel driven from the Node event loop, for both sides
 * of the verbs transport (the memory node's listener, a client's connect).
 *
 * The channel's fd is made non-blocking (fcntl O_NONBLOCK, which
 * rdma_get_cm_event honours: it then fails with EAGAIN instead of waiting).
 * A koffi worker thread blocks in poll(2) on the fd (an async koffi call,
 * `pollMs` timeout, looped), so an idle channel costs no CPU and the event
 * loop stays free; when the fd is readable, the main thread drains it with
 * rdma_get_cm_event, copies what it needs out of each event (type, ids,
 * status, the private data) and acks the event *before* handing the copy
 * to `onEvent`. Acking first matters: rdma_destroy_id waits until every
 * event it reported on that id was acked, so a handler may destroy the id
 * of the event it is handling without deadlocking. Every rdma_cm call
 * happens on the main thread; the worker thread only polls the fd.
 */
import { VerbsUnavailableError } from './verbs-errors.js';
import { POLLIN, errnoText, nativeBlock, setNonBlocking, type NativeBlock, type Verbs } from './verbs.js';

/** One rdma_cm event, copied out of librdmacm's struct before the ack. */
export interface CmEvent {
  /** RDMA_CM_EVENT_* (verbs.ts). */
  type: number;
  /** rdma_event_str of `type`. */
  name: string;
  /** The id the event is about (for CONNECT_REQUEST: the new id of the connection). */
  id: bigint;
  /** The listening id of a CONNECT_REQUEST, else 0n. */
  listenId: bigint;
  /** 0, or a negative errno (ADDR_ERROR ...), or the IB reject reason (REJECTED). */
  status: number;
  /** param.conn.private_data (CONNECT_REQUEST, ESTABLISHED, REJECTED), copied. */
  privateData: Uint8Array;
  /** param.conn.initiator_depth and responder_resources of a CONNECT_REQUEST. */
  initiatorDepth: number;
  responderResources: number;
}

/** See the file comment. */
export class CmChannel {
  readonly v: Verbs;
  readonly ch: bigint;
  readonly fd: number;
  /** Called for every event, after it was acked. */
  onEvent: (e: CmEvent) => void = () => undefined;
  private readonly pfd: NativeBlock;
  private running = false;
  private done: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(v: Verbs, ch: bigint, fd: number) {
    this.v = v;
    this.ch = ch;
    this.fd = fd;
    this.pfd = nativeBlock(v, 8);
  }

  /**
   * rdma_create_event_channel, made non-blocking.
   * @throws VerbsUnavailableError (`missing` 'kernel') when /dev/infiniband/rdma_cm cannot be opened
   */
  static open(v: Verbs): CmChannel {
    const ch = v.createEventChannel();
    if (ch === null || ch === 0n) {
      throw new VerbsUnavailableError('kernel', `rdma_create_event_channel failed: ${errnoText(v)}: the kernel's RDMA connection manager is not reachable (/dev/infiniband/rdma_cm): \`modprobe rdma_ucm\`, and check \`ibv_devices\` and \`rdma link show\``);
    }
    const fd = v.koffi.decode(ch, v.koffi.offsetof(v.t.rdma_event_channel, 'fd'), 'int') as number;
    if (setNonBlocking(v, fd) !== 0) {
      v.destroyEventChannel(ch);
      throw new VerbsUnavailableError('kernel', `cannot make the rdma_cm channel non-blocking: ${errnoText(v)}`);
    }
    return new CmChannel(v, ch, fd);
  }

  /** Starts the poll loop (see the file comment); idempotent. */
  start(pollMs = 100): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.pfd.data.setInt32(0, this.fd, true);
    this.pfd.data.setInt16(4, POLLIN, true);
    this.done = new Promise<void>((resolve) => {
      const step = (): void => {
        if (!this.running) { resolve(); return; }
        this.pfd.data.setInt16(6, 0, true);
        this.v.poll.async(this.pfd.ptr, 1, pollMs, (_err: unknown, n: number) => {
          if (this.running && n > 0) this.drain();
          step();
        });
      };
      step();
    });
  }

  /** Stops the poll loop; resolves once the worker thread returned (within `pollMs`). */
  async stop(): Promise<void> {
    this.running = false;
    await this.done;
  }

  /** Reads every pending event (non-blocking) and hands each to `onEvent`. */
  drain(): void {
    const { v } = this;
    const k = v.koffi;
    const t = v.t.rdma_cm_event;
    const out: [bigint | null] = [null];
    for (;;) {
      out[0] = null;
      const rc = v.getCmEvent(this.ch, out);
      // EAGAIN: drained. Any other failure is left to the next poll to retry.
      if (rc !== 0 || out[0] === null) return;
      const ev = out[0];
      const conn = k.offsetof(t, 'param');
      const pdata = k.decode(ev, conn + k.offsetof(v.t.rdma_conn_param, 'private_data'), 'void *') as bigint | null;
      const plen = k.decode(ev, conn + k.offsetof(v.t.rdma_conn_param, 'private_data_len'), 'uint8_t') as number;
      const type = k.decode(ev, k.offsetof(t, 'event'), 'int') as number;
      const e: CmEvent = {
        type,
        name: v.eventStr(type),
        id: (k.decode(ev, k.offsetof(t, 'id'), 'void *') as bigint | null) ?? 0n,
        listenId: (k.decode(ev, k.offsetof(t, 'listen_id'), 'void *') as bigint | null) ?? 0n,
        status: k.decode(ev, k.offsetof(t, 'status'), 'int') as number,
        privateData: pdata === null || plen === 0 ? new Uint8Array(0) : new Uint8Array(k.view(pdata, plen).slice(0)),
        initiatorDepth: k.decode(ev, conn + k.offsetof(v.t.rdma_conn_param, 'initiator_depth'), 'uint8_t') as number,
        responderResources: k.decode(ev, conn + k.offsetof(v.t.rdma_conn_param, 'responder_resources'), 'uint8_t') as number,
      };
      v.ackCmEvent(ev);
      this.onEvent(e);
    }
  }

  /** Destroys the channel (every id on it must be destroyed first); call after `stop`. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.running = false;
    this.v.destroyEventChannel(this.ch);
    this.v.free(this.pfd.ptr);
  }
}

/** A field of an rdma_cm_id (verbs, qp, send_cq ...) as a pointer (0n for NULL). */
export function idPtr(v: Verbs, id: bigint, field: 'verbs' | 'qp' | 'send_cq' | 'recv_cq' | 'pd'): bigint {
  return (v.koffi.decode(id, v.koffi.offsetof(v.t.rdma_cm_id, field), 'void *') as bigint | null) ?? 0n;
}
