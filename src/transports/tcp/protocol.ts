/**
 * The dmem wire protocol (server-side mode, ../shared/DESIGN.md "Two ways to
 * run the core"; frame diagrams in docs/protocol.md). One byte stream per
 * connection (TCP, TLS or a Unix socket) carries length-prefixed frames:
 *
 *   request   0        4      5          9
 *             +--------+------+----------+----------------------+
 *             | len    | op   | id       | payload (len - 5 B)  |
 *             | u32 LE | u8   | u32 LE   |                      |
 *             +--------+------+----------+----------------------+
 *   reply     | len    | st   | id       | payload              |
 *             +--------+------+----------+----------------------+
 *
 * `len` counts the bytes after itself (op/st + id + payload), so it is at
 * least 5. `st` is 0 (OK, payload = the result) or 1 (ERROR, payload = u8
 * code length, the DmemError code in ASCII, the message in UTF-8). `id` is
 * chosen by the client; the server echoes it, so many requests may be in
 * flight and replies are matched by id, not by order (today's server answers
 * in order; clients must not rely on it).
 *
 * The first frame of a connection must be HELLO (id 0): magic, protocol
 * version and token (and, to resume a session after a cut, its id and
 * secret). Until it is accepted, frames are limited to HELLO_MAX_BYTES, and
 * the server touches no pool byte. A frame longer than the negotiated
 * maximum, an unknown op, a payload of the wrong size for its op, or a
 * second HELLO is a protocol violation: the connection is closed, and
 * nothing else (other connections, the pool) is touched.
 *
 * Numbers: gaddrs, byte counts and offsets are f64 (exact integers below
 * 2^53, as gaddrs are in JS); 64-bit words are i64; all little-endian.
 *
 * Batching: `FrameWriter` gathers every frame written during one tick of the
 * event loop into one buffer (large payloads ride along as their own buffers
 * without a copy) and hands them to the socket corked, so a burst of N
 * requests costs one writev, not N writes. `FrameReader` cuts frames out of
 * the byte stream; a frame contained in one received chunk is handed over
 * as (chunk, start, end), with no copy and no object per frame; one that
 * spans chunks is copied once into a buffer of exactly its size.
 */
import type { Socket } from 'node:net';
import { DmemError } from '../../errors.js';

/** Protocol version spoken by this build (HELLO carries it; a mismatch is refused). */
export const PROTOCOL_VERSION = 1;
/** "DMEM" in ASCII, the first 4 payload bytes of HELLO. */
export const MAGIC = 0x4d454d44;
/** Bytes before the payload: len (4) + op/status (1) + id (4). */
export const HEADER_BYTES = 9;
/** Largest frame before HELLO is accepted (bytes, len field included). */
export const HELLO_MAX_BYTES = 1024;
/** Default largest frame after HELLO (bytes, len field included): 4 MiB of payload plus headers. */
export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024 + 64;
/** Longest token (bytes). */
export const TOKEN_MAX_BYTES = 512;
/** Bytes of a session id and of its secret. */
export const SESSION_ID_BYTES = 16;
export const SESSION_SECRET_BYTES = 32;

/** Reply status byte. */
export const ST_OK = 0;
export const ST_ERROR = 1;

/** Request ops. Payload layouts are in docs/protocol.md. */
export const Op = {
  HELLO: 0x01,
  PING: 0x02,
  BYE: 0x03,
  ALLOC: 0x10,
  ALLOC_CLASS: 0x11,
  FREE: 0x12,
  READ: 0x13,
  WRITE: 0x14,
  CAS: 0x15,
  FAA: 0x16,
  STATS: 0x17,
  CENSUS: 0x18,
  HEAP_ALLOC: 0x20,
  HEAP_FREE: 0x21,
  HEAP_FREE_DELAYED: 0x22,
  HEAP_FLUSH: 0x23,
  HEAP_STATS: 0x24,
  HEAP_TRIM: 0x25,
  REGION_CREATE: 0x30,
  REGION_OPEN: 0x31,
  REGION_DESTROY: 0x32,
  REGION_LIST: 0x33,
  REGION_EXISTS: 0x34,
  REGION_READ: 0x35,
  REGION_WRITE: 0x36,
  REGION_CLOSE: 0x37,
  EPOCH_ENTER: 0x40,
  EPOCH_EXIT: 0x41,
  RECLAIM: 0x42,
  EPOCH_STATE: 0x43,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

/**
 * Payload size of each op whose payload is fixed (bytes); ops not listed
 * have a variable payload checked by their handler (a minimum is given in
 * MIN_PAYLOAD).
 */
export const FIXED_PAYLOAD: Readonly<Record<number, number>> = {
  [Op.PING]: 0, [Op.BYE]: 0,
  [Op.ALLOC]: 8, [Op.ALLOC_CLASS]: 1, [Op.FREE]: 8, [Op.READ]: 12, [Op.CAS]: 24, [Op.FAA]: 16,
  [Op.STATS]: 0, [Op.CENSUS]: 0,
  [Op.HEAP_ALLOC]: 8, [Op.HEAP_FREE]: 8, [Op.HEAP_FREE_DELAYED]: 8, [Op.HEAP_FLUSH]: 0, [Op.HEAP_STATS]: 0, [Op.HEAP_TRIM]: 0,
  [Op.REGION_LIST]: 0, [Op.REGION_READ]: 16, [Op.REGION_CLOSE]: 4,
  [Op.EPOCH_ENTER]: 0, [Op.EPOCH_EXIT]: 0, [Op.RECLAIM]: 0, [Op.EPOCH_STATE]: 0,
};
/** Smallest payload of the variable-size ops (bytes). */
export const MIN_PAYLOAD: Readonly<Record<number, number>> = {
  [Op.WRITE]: 8, [Op.REGION_CREATE]: 9, [Op.REGION_OPEN]: 1, [Op.REGION_DESTROY]: 1, [Op.REGION_EXISTS]: 1, [Op.REGION_WRITE]: 12,
};

/** The peer broke the protocol (malformed, oversized or out-of-order frame); the connection is closed. */
export class ProtocolError extends DmemError {
  constructor(message: string) { super('PROTOCOL', message); }
}

/** The server refused the token (or none was given where one is needed); nothing of the pool was touched. */
export class AuthFailedError extends DmemError {
  constructor(message: string) { super('AUTH_FAILED', message); }
}

/** True when `op` is a request op this build knows. */
export function knownOp(op: number): boolean {
  return FIXED_PAYLOAD[op] !== undefined || MIN_PAYLOAD[op] !== undefined || op === Op.HELLO;
}

/** Checks a request's payload size against its op; returns a reason or null. */
export function payloadProblem(op: number, bytes: number): string | null {
  const fixed = FIXED_PAYLOAD[op];
  if (fixed !== undefined) return bytes === fixed ? null : `op 0x${op.toString(16)} takes ${fixed} payload bytes, got ${bytes}`;
  const min = MIN_PAYLOAD[op];
  if (min !== undefined) return bytes >= min ? null : `op 0x${op.toString(16)} takes at least ${min} payload bytes, got ${bytes}`;
  return `unknown op 0x${op.toString(16)}`;
}

/** What HELLO carries. */
export interface Hello {
  version: number;
  token: Buffer;
  /** Set to resume a session whose connection was cut. */
  resume: { id: Buffer; secret: Buffer } | null;
}

/**
 * HELLO payload:
 *   magic u32 | version u16 | tokenLen u16 | token | resume u8 | [session id 16 | secret 32]
 */
export function encodeHello(h: Hello): Buffer {
  const resumeBytes = h.resume ? SESSION_ID_BYTES + SESSION_SECRET_BYTES : 0;
  const b = Buffer.alloc(4 + 2 + 2 + h.token.length + 1 + resumeBytes);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt16LE(h.version, 4);
  b.writeUInt16LE(h.token.length, 6);
  h.token.copy(b, 8);
  let at = 8 + h.token.length;
  b[at++] = h.resume ? 1 : 0;
  if (h.resume) {
    h.resume.id.copy(b, at);
    h.resume.secret.copy(b, at + SESSION_ID_BYTES);
  }
  return b;
}

/** Parses a HELLO payload. @throws ProtocolError when it is malformed */
export function decodeHello(p: Buffer): Hello {
  if (p.length < 9 || p.readUInt32LE(0) !== MAGIC) throw new ProtocolError('first frame is not a dmem HELLO (bad magic)');
  const version = p.readUInt16LE(4);
  const tokenLen = p.readUInt16LE(6);
  if (tokenLen > TOKEN_MAX_BYTES || 8 + tokenLen + 1 > p.length) throw new ProtocolError('HELLO: token length out of range');
  const token = p.subarray(8, 8 + tokenLen);
  const flag = p[8 + tokenLen];
  const rest = p.length - (9 + tokenLen);
  if (flag === 0 && rest === 0) return { version, token, resume: null };
  if (flag === 1 && rest === SESSION_ID_BYTES + SESSION_SECRET_BYTES) {
    const at = 9 + tokenLen;
    return { version, token, resume: { id: p.subarray(at, at + SESSION_ID_BYTES), secret: p.subarray(at + SESSION_ID_BYTES) } };
  }
  throw new ProtocolError('HELLO: bad resume field');
}

/** What the server tells a client it accepted (HELLO's OK reply, as JSON after the session fields). */
export interface Welcome {
  version: number;
  node: number;
  clientId: number;
  leaseMs: number;
  maxFrameBytes: number;
  geometry: {
    poolBytes: number; sections: number; sectionBytes: number; chunkBytes: number;
    dataOffset: number; dataBytes: number; maxClients: number; layoutVersion: number;
  };
  heapClassSizes: number[];
  /** True when this HELLO resumed an existing session. */
  resumed: boolean;
}

/** HELLO OK payload: session id 16 | secret 32 | Welcome as UTF-8 JSON. */
export function encodeWelcome(id: Buffer, secret: Buffer, w: Welcome): Buffer {
  return Buffer.concat([id, secret, Buffer.from(JSON.stringify(w))]);
}

/** @throws ProtocolError */
export function decodeWelcome(p: Buffer): { id: Buffer; secret: Buffer; welcome: Welcome } {
  const head = SESSION_ID_BYTES + SESSION_SECRET_BYTES;
  if (p.length <= head) throw new ProtocolError('HELLO reply too short');
  try {
    return {
      id: Buffer.from(p.subarray(0, SESSION_ID_BYTES)),
      secret: Buffer.from(p.subarray(SESSION_ID_BYTES, head)),
      welcome: JSON.parse(p.subarray(head).toString('utf8')) as Welcome,
    };
  } catch {
    throw new ProtocolError('HELLO reply: malformed JSON');
  }
}

/** ERROR payload: u8 code length | code (ASCII) | message (UTF-8). */
export function encodeError(code: string, message: string): Buffer {
  const c = Buffer.from(code.slice(0, 255), 'latin1');
  const m = Buffer.from(message.slice(0, 4000), 'utf8');
  const b = Buffer.allocUnsafe(1 + c.length + m.length);
  b[0] = c.length;
  c.copy(b, 1);
  m.copy(b, 1 + c.length);
  return b;
}

export function decodeError(p: Buffer): { code: string; message: string } {
  if (p.length < 1 || 1 + p[0] > p.length) return { code: 'PROTOCOL', message: 'malformed error reply' };
  return { code: p.subarray(1, 1 + p[0]).toString('latin1'), message: p.subarray(1 + p[0]).toString('utf8') };
}

/**
 * Called for each complete frame: kind is the op (requests) or the status
 * (replies); the payload is `buf[start .. end)`, valid during the call
 * (take a subarray to keep it).
 */
export type FrameHandler = (kind: number, id: number, buf: Buffer, start: number, end: number) => void;

/**
 * Cuts frames out of a byte stream. Feed it every received chunk; it calls
 * `onFrame` for each complete frame in order. A frame longer than
 * `maxFrameBytes` (len field included) or shorter than a header throws
 * ProtocolError from `push`, before any of it is buffered.
 */
export class FrameReader {
  /** Largest frame accepted now (bytes); raised after HELLO. */
  maxFrameBytes: number;
  private readonly onFrame: FrameHandler;
  /** Bytes of an incomplete header carried over to the next chunk. */
  private head: Buffer | null = null;
  /** The frame being assembled across chunks, and how much of it is filled. */
  private body: Buffer | null = null;
  private filled = 0;

  constructor(maxFrameBytes: number, onFrame: FrameHandler) {
    this.maxFrameBytes = maxFrameBytes;
    this.onFrame = onFrame;
  }

  /** Consumes one received chunk. @throws ProtocolError (bad length) and whatever onFrame throws */
  push(chunk: Buffer): void {
    let at = 0;
    if (this.body !== null) {
      const n = Math.min(chunk.length, this.body.length - this.filled);
      chunk.copy(this.body, this.filled, 0, n);
      this.filled += n;
      at = n;
      if (this.filled < this.body.length) return;
      const b = this.body;
      this.body = null;
      this.deliver(b);
    }
    if (this.head !== null) {
      chunk = Buffer.concat([this.head, chunk.subarray(at)]);
      this.head = null;
      at = 0;
    }
    while (chunk.length - at >= 4) {
      const len = chunk.readUInt32LE(at);
      if (len < HEADER_BYTES - 4) throw new ProtocolError(`frame length ${len} is shorter than a header`);
      if (len + 4 > this.maxFrameBytes) throw new ProtocolError(`frame of ${len + 4} bytes exceeds the limit of ${this.maxFrameBytes}`);
      const end = at + 4 + len;
      if (end <= chunk.length) {
        this.onFrame(chunk[at + 4], chunk.readUInt32LE(at + 5), chunk, at + HEADER_BYTES, end);
        at = end;
        continue;
      }
      // Spans chunks: one buffer of exactly the frame's size, filled once.
      this.body = Buffer.allocUnsafe(4 + len);
      chunk.copy(this.body, 0, at);
      this.filled = chunk.length - at;
      return;
    }
    if (at < chunk.length) this.head = Buffer.from(chunk.subarray(at));
  }

  private deliver(frame: Buffer): void {
    this.onFrame(frame[4], frame.readUInt32LE(5), frame, HEADER_BYTES, frame.length);
  }
}

/** Size of a batch buffer (bytes); a larger frame gets a batch of its own size. */
const EMPTY = Buffer.alloc(0);
const BATCH_BYTES = 16 * 1024;
/** Payloads at least this long are sent as their own buffer instead of copied into the batch (bytes). */
const ZERO_COPY_BYTES = 2048;

/**
 * Gathers the frames written in one tick into as few buffers as possible
 * and writes them corked at the end of the tick (process.nextTick). Small
 * frames are copied into a shared batch buffer; payloads of ZERO_COPY_BYTES
 * or more are queued as they are (the caller must not change them until the
 * socket has written them: requests and replies never do).
 */
export class FrameWriter {
  private readonly socket: Socket;
  /** Made on the first write, so an idle connection holds none. */
  private batch: Buffer = EMPTY;
  private used = 0;
  /** Start of the part of `batch` not yet queued. */
  private mark = 0;
  private readonly queue: Buffer[] = [];
  private scheduled = false;
  private readonly flushFn = (): void => this.flush();

  constructor(socket: Socket) {
    this.socket = socket;
  }

  /**
   * Reserves a frame of `payloadBytes` and returns the offset in `buf` where
   * the caller writes its payload (`writeFrame` does it for a ready
   * payload). `buf` is valid until the next call (no object per frame).
   */
  begin(kind: number, id: number, payloadBytes: number): number {
    const need = HEADER_BYTES + payloadBytes;
    if (this.used + need > this.batch.length) this.newBatch(need);
    const buf = this.batch;
    const at = this.used;
    buf.writeUInt32LE(need - 4, at);
    buf[at + 4] = kind;
    buf.writeUInt32LE(id, at + 5);
    this.used += need;
    this.schedule();
    return at + HEADER_BYTES;
  }

  /** The buffer the last `begin` reserved its frame in. */
  get buf(): Buffer {
    return this.batch;
  }

  /** Writes a frame whose payload is `head` (copied) followed by `body` (zero-copy when large). */
  writeFrame(kind: number, id: number, head: Uint8Array | null, body: Uint8Array | null = null): void {
    const h = head ? head.length : 0;
    const b = body ? body.length : 0;
    if (b < ZERO_COPY_BYTES) {
      const at = this.begin(kind, id, h + b);
      if (head) this.batch.set(head, at);
      if (body) this.batch.set(body, at + h);
      return;
    }
    const at = this.begin(kind, id, h);
    if (head) this.batch.set(head, at);
    // The frame's length covers the body that follows it in the stream.
    this.batch.writeUInt32LE(HEADER_BYTES - 4 + h + b, at - HEADER_BYTES);
    this.cut();
    this.queue.push(Buffer.from(body!.buffer, body!.byteOffset, b));
  }

  /** Sends what was gathered (called at the end of the tick). */
  flush(): void {
    this.scheduled = false;
    this.cut();
    if (this.queue.length === 0 || this.socket.destroyed) { this.queue.length = 0; return; }
    this.socket.cork();
    for (const b of this.queue) this.socket.write(b);
    this.queue.length = 0;
    this.socket.uncork();
  }

  /** Queues the filled, unqueued part of the batch. */
  private cut(): void {
    if (this.used > this.mark) {
      this.queue.push(this.batch.subarray(this.mark, this.used));
      this.mark = this.used;
    }
  }

  private newBatch(need: number): void {
    this.cut();
    this.batch = Buffer.allocUnsafe(Math.max(BATCH_BYTES, need));
    this.used = 0;
    this.mark = 0;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    process.nextTick(this.flushFn);
  }
}
