/**
 * Streaming decoder of transmission-phase replies (doc/proto.md, "Simple reply message",
 * "Structured reply chunk message"). Pure: bytes are pushed in as they arrive; completed replies are
 * handed to the handler. It never concatenates received chunks: headers and small payloads are
 * gathered into their own buffers, and OFFSET_DATA payloads are copied straight into the read's
 * destination. `dataTarget()` exposes that destination so the socket can receive into it directly,
 * in which case the pushed chunk already is the destination and nothing is copied.
 *
 *   simple:     u32 0x67446698, u32 error, u64 cookie
 *   structured: u32 0x668e33ef, u16 flags, u16 type, u64 cookie, u32 length, payload
 *     OFFSET_DATA u64 offset + data; OFFSET_HOLE u64 offset, u32 size; BLOCK_STATUS u32 context,
 *     (u32 length, u32 flags)+; ERROR u32 errno, u16 msglen, msg; ERROR_OFFSET ... + u64 offset
 *
 * Every violation (bad magic, unknown cookie, unknown non-error chunk type, lengths that do not fit,
 * data outside the request or overlapping earlier data) throws CBT_NBD_PROTOCOL; after that the
 * stream is unusable and every further push throws the same error.
 */
import {
  NBD_REPLY_FLAG_DONE,
  NBD_REPLY_TYPE_BLOCK_STATUS,
  NBD_REPLY_TYPE_ERROR_BIT,
  NBD_REPLY_TYPE_ERROR_OFFSET,
  NBD_REPLY_TYPE_NONE,
  NBD_REPLY_TYPE_OFFSET_DATA,
  NBD_REPLY_TYPE_OFFSET_HOLE,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  SIMPLE_REPLY_SIZE,
  STRUCTURED_REPLY_SIZE,
} from './nbd-constants';
import { NbdProtocolError } from './nbd-errors';

export type RequestKind = 'read' | 'block-status';

/** What the parser needs to know about an outstanding request. */
export interface ReplyTarget {
  kind: RequestKind;
  offset: number;
  length: number;
  /** Read destination, exactly `length` bytes; holes are zero-filled by the parser. */
  dest?: Buffer;
}

export interface ReplyErrorInfo {
  errno: number;
  message: string;
  offset?: number;
}

export interface ReplyResult {
  errors: ReplyErrorInfo[];
  /** Per context id, the (length, flags) descriptors of its BLOCK_STATUS chunk. */
  blockStatus: Map<number, Array<[number, number]>>;
  /** Bytes of a read covered by data and hole chunks. */
  covered: number;
}

export interface ReplyHandler {
  target(cookie: number): ReplyTarget | undefined;
  complete(cookie: number, result: ReplyResult): void;
}

/** Structured payloads other than read data are small; a bigger one is a broken server. */
export const MAX_METADATA_PAYLOAD = 64 * 1024 * 1024;
export const MAX_ERROR_PAYLOAD = 64 * 1024;

const enum State {
  Header,
  Payload,
  DataOffset,
  Data,
}

interface Pending {
  target: ReplyTarget;
  result: ReplyResult;
  /** Sorted, disjoint [start, end) ranges of the read already covered, relative to the request. */
  spans: Array<[number, number]>;
}

export class ReplyParser {
  private state = State.Header;
  private readonly hdr = Buffer.alloc(STRUCTURED_REPLY_SIZE);
  private hdrGot = 0;
  private hdrWant = 4;
  private payload: Buffer = Buffer.alloc(0);
  private payloadGot = 0;
  private chunkFlags = 0;
  private chunkType = 0;
  private chunkCookie = 0;
  private current: Pending | undefined;
  private dataPos = 0;
  private dataLeft = 0;
  private dataDest: Buffer | undefined;
  private readonly pending = new Map<number, Pending>();
  private broken: unknown;

  constructor(private readonly handler: ReplyHandler) {}

  /** Where the next data bytes belong, when the parser is inside an OFFSET_DATA payload. */
  dataTarget(): Buffer | undefined {
    if (this.state !== State.Data || !this.dataDest) return undefined;
    return this.dataDest.subarray(this.dataPos, this.dataPos + this.dataLeft);
  }

  /**
   * How many bytes finish the current unit: the rest of a header (plus the 8-byte offset an
   * OFFSET_DATA chunk starts with, the common case), of a small payload, or of read data. Reading
   * no more than this keeps the next OFFSET_DATA payload out of the scratch buffer, so that it can be
   * received straight into its destination.
   */
  bytesWanted(): number {
    switch (this.state) {
      case State.Header:
        return STRUCTURED_REPLY_SIZE + 8 - this.hdrGot;
      case State.DataOffset:
        return 8 - this.payloadGot;
      case State.Payload:
        return this.payload.length - this.payloadGot;
      case State.Data:
        return this.dataLeft;
    }
  }

  push(chunk: Buffer): void {
    if (this.broken !== undefined) throw this.broken;
    try {
      this.consume(chunk);
    } catch (err) {
      this.broken = err;
      throw err;
    }
  }

  private consume(chunk: Buffer): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case State.Header: {
          const take = Math.min(this.hdrWant - this.hdrGot, n - i);
          chunk.copy(this.hdr, this.hdrGot, i, i + take);
          this.hdrGot += take;
          i += take;
          if (this.hdrGot === 4 && this.hdrWant === 4) this.hdrWant = this.headerSize();
          if (this.hdrGot === this.hdrWant) this.onHeader();
          break;
        }
        case State.Payload: {
          const take = Math.min(this.payload.length - this.payloadGot, n - i);
          chunk.copy(this.payload, this.payloadGot, i, i + take);
          this.payloadGot += take;
          i += take;
          if (this.payloadGot === this.payload.length) this.onPayload();
          break;
        }
        case State.DataOffset: {
          const take = Math.min(8 - this.payloadGot, n - i);
          chunk.copy(this.payload, this.payloadGot, i, i + take);
          this.payloadGot += take;
          i += take;
          if (this.payloadGot === 8) this.onDataOffset();
          break;
        }
        case State.Data: {
          const take = Math.min(this.dataLeft, n - i);
          const dest = this.dataDest as Buffer;
          const inPlace = chunk.buffer === dest.buffer && chunk.byteOffset + i === dest.byteOffset + this.dataPos;
          if (!inPlace) chunk.copy(dest, this.dataPos, i, i + take);
          this.dataPos += take;
          this.dataLeft -= take;
          i += take;
          if (this.dataLeft === 0) this.endChunk();
          break;
        }
      }
    }
  }

  private headerSize(): number {
    const magic = this.hdr.readUInt32BE(0);
    if (magic === NBD_STRUCTURED_REPLY_MAGIC) return STRUCTURED_REPLY_SIZE;
    if (magic === NBD_SIMPLE_REPLY_MAGIC) return SIMPLE_REPLY_SIZE;
    throw NbdProtocolError({ reason: 'bad reply magic', magic: `0x${magic.toString(16)}` });
  }

  private pendingFor(cookieHigh: number, cookie: number): Pending {
    const known = cookieHigh === 0 ? this.pending.get(cookie) : undefined;
    if (known) return known;
    const target = cookieHigh === 0 ? this.handler.target(cookie) : undefined;
    if (!target) {
      throw NbdProtocolError({ reason: 'reply for an unknown cookie', cookie: cookieHigh * 0x1_0000_0000 + cookie });
    }
    const p: Pending = { target, result: { errors: [], blockStatus: new Map(), covered: 0 }, spans: [] };
    this.pending.set(cookie, p);
    return p;
  }

  private onHeader(): void {
    const h = this.hdr;
    this.hdrGot = 0;
    this.hdrWant = 4;
    if (h.readUInt32BE(0) === NBD_SIMPLE_REPLY_MAGIC) {
      const errno = h.readUInt32BE(4);
      const cookie = h.readUInt32BE(12);
      const p = this.pendingFor(h.readUInt32BE(8), cookie);
      if (p.target.kind === 'read') {
        throw NbdProtocolError({ reason: 'simple reply to a read after structured replies were negotiated', cookie });
      }
      if (errno === 0) throw NbdProtocolError({ reason: 'simple success reply to block status (no extents)', cookie });
      p.result.errors.push({ errno, message: '' });
      this.finish(cookie, p);
      return;
    }
    this.chunkFlags = h.readUInt16BE(4);
    this.chunkType = h.readUInt16BE(6);
    const cookie = h.readUInt32BE(12);
    const length = h.readUInt32BE(16);
    const p = this.pendingFor(h.readUInt32BE(8), cookie);
    this.chunkCookie = cookie;
    this.current = p;
    const type = this.chunkType;
    const kind = p.target.kind;
    if (type === NBD_REPLY_TYPE_NONE) {
      if (length !== 0) throw NbdProtocolError({ reason: 'NONE chunk with a payload', cookie, length });
      if ((this.chunkFlags & NBD_REPLY_FLAG_DONE) === 0) throw NbdProtocolError({ reason: 'NONE chunk without DONE flag', cookie });
      this.endChunk();
      return;
    }
    if (type === NBD_REPLY_TYPE_OFFSET_DATA) {
      if (kind !== 'read') throw NbdProtocolError({ reason: 'OFFSET_DATA chunk in reply to block status', cookie });
      if (length < 9 || length - 8 > p.target.length) {
        throw NbdProtocolError({ reason: 'OFFSET_DATA length overflow', cookie, length, requested: p.target.length });
      }
      this.dataLeft = length - 8;
      this.startPayload(8);
      this.state = State.DataOffset;
      return;
    }
    if (type === NBD_REPLY_TYPE_OFFSET_HOLE) {
      if (kind !== 'read') throw NbdProtocolError({ reason: 'OFFSET_HOLE chunk in reply to block status', cookie });
      if (length !== 12) throw NbdProtocolError({ reason: 'OFFSET_HOLE length must be 12', cookie, length });
      this.startPayload(length);
      return;
    }
    if (type === NBD_REPLY_TYPE_BLOCK_STATUS) {
      if (kind !== 'block-status') throw NbdProtocolError({ reason: 'BLOCK_STATUS chunk in reply to a read', cookie });
      if (length < 12 || (length - 4) % 8 !== 0 || length > MAX_METADATA_PAYLOAD) {
        throw NbdProtocolError({ reason: 'BLOCK_STATUS length invalid', cookie, length });
      }
      this.startPayload(length);
      return;
    }
    if ((type & NBD_REPLY_TYPE_ERROR_BIT) !== 0) {
      if (length < 6 || length > MAX_ERROR_PAYLOAD) throw NbdProtocolError({ reason: 'error chunk length invalid', cookie, type, length });
      this.startPayload(length);
      return;
    }
    throw NbdProtocolError({ reason: 'unknown structured reply chunk type', cookie, type });
  }

  private startPayload(length: number): void {
    this.payload = Buffer.allocUnsafe(length);
    this.payloadGot = 0;
    this.state = State.Payload;
  }

  private onDataOffset(): void {
    const p = this.current as Pending;
    const offset = readU64(this.payload, 0, this.chunkCookie);
    const rel = this.claim(p, offset, this.dataLeft, 'OFFSET_DATA');
    this.dataDest = p.target.dest;
    if (!this.dataDest) throw NbdProtocolError({ reason: 'read without a destination', cookie: this.chunkCookie });
    this.dataPos = rel;
    this.state = State.Data;
  }

  private onPayload(): void {
    const p = this.current as Pending;
    const b = this.payload;
    const cookie = this.chunkCookie;
    const type = this.chunkType;
    if (type === NBD_REPLY_TYPE_OFFSET_HOLE) {
      const offset = readU64(b, 0, cookie);
      const size = b.readUInt32BE(8);
      if (size === 0) throw NbdProtocolError({ reason: 'OFFSET_HOLE of size 0', cookie });
      const rel = this.claim(p, offset, size, 'OFFSET_HOLE');
      (p.target.dest as Buffer).fill(0, rel, rel + size);
    } else if (type === NBD_REPLY_TYPE_BLOCK_STATUS) {
      const contextId = b.readUInt32BE(0);
      if (p.result.blockStatus.has(contextId)) {
        throw NbdProtocolError({ reason: 'two BLOCK_STATUS chunks for one context', cookie, contextId });
      }
      const descriptors: Array<[number, number]> = [];
      for (let at = 4; at < b.length; at += 8) {
        const length = b.readUInt32BE(at);
        if (length === 0) throw NbdProtocolError({ reason: 'block status descriptor of length 0', cookie });
        descriptors.push([length, b.readUInt32BE(at + 4)]);
      }
      p.result.blockStatus.set(contextId, descriptors);
    } else {
      const errno = b.readUInt32BE(0);
      const msgLen = b.readUInt16BE(4);
      if (errno === 0) throw NbdProtocolError({ reason: 'error chunk with error 0', cookie, type });
      if (msgLen > b.length - 6) throw NbdProtocolError({ reason: 'error message longer than its chunk', cookie, msgLen, length: b.length });
      const message = b.toString('utf8', 6, 6 + msgLen);
      if (type === NBD_REPLY_TYPE_ERROR_OFFSET) {
        if (b.length !== 6 + msgLen + 8) throw NbdProtocolError({ reason: 'ERROR_OFFSET length mismatch', cookie, length: b.length });
        p.result.errors.push({ errno, message, offset: readU64(b, 6 + msgLen, cookie) });
      } else {
        p.result.errors.push({ errno, message });
      }
    }
    this.endChunk();
  }

  /** Checks that [offset, offset + length) lies in the request and overlaps nothing earlier. */
  private claim(p: Pending, offset: number, length: number, what: string): number {
    const rel = offset - p.target.offset;
    if (rel < 0 || rel + length > p.target.length) {
      throw NbdProtocolError({ reason: `${what} outside the request`, cookie: this.chunkCookie, offset, length });
    }
    const spans = p.spans;
    let k = spans.length;
    while (k > 0 && (spans[k - 1] as [number, number])[0] > rel) k--;
    const before = spans[k - 1];
    const after = spans[k];
    if ((before && before[1] > rel) || (after && after[0] < rel + length)) {
      throw NbdProtocolError({ reason: `${what} overlaps earlier data`, cookie: this.chunkCookie, offset, length });
    }
    spans.splice(k, 0, [rel, rel + length]);
    p.result.covered += length;
    return rel;
  }

  private endChunk(): void {
    this.state = State.Header;
    this.dataDest = undefined;
    this.payload = Buffer.alloc(0);
    this.payloadGot = 0;
    const p = this.current as Pending;
    this.current = undefined;
    if ((this.chunkFlags & NBD_REPLY_FLAG_DONE) !== 0) this.finish(this.chunkCookie, p);
  }

  private finish(cookie: number, p: Pending): void {
    this.pending.delete(cookie);
    this.handler.complete(cookie, p.result);
  }
}

function readU64(b: Buffer, at: number, cookie: number): number {
  const v = b.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw NbdProtocolError({ reason: 'offset beyond 2^53', cookie, offset: v.toString() });
  return Number(v);
}
