/**
 * Server side of the NBD wire format (doc/proto.md): parsing of client options and requests, encoding
 * of option replies, info records and transmission replies. Pure: buffers in, values out; a malformed
 * client message yields a string (the problem) instead of a value, so the server can answer
 * NBD_REP_ERR_INVALID or drop the connection.
 */
import {
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
  NBD_STRUCTURED_REPLY_MAGIC,
  REQUEST_SIZE,
} from './nbd-constants';

/** Options and commands the server knows beyond what the client side lists in nbd-constants.ts. */
export const NBD_OPT_EXPORT_NAME = 1;
export const NBD_OPT_LIST = 3;
export const NBD_OPT_STARTTLS = 5;
export const NBD_OPT_INFO = 6;
export const NBD_INFO_NAME = 1;
export const NBD_CMD_WRITE = 1;
export const NBD_CMD_FLUSH = 3;
export const NBD_CMD_TRIM = 4;
export const NBD_CMD_CACHE = 5;
export const NBD_CMD_WRITE_ZEROES = 6;
export const NBD_REP_ERR_UNSUP = 0x80000001;
export const NBD_REP_ERR_POLICY = 0x80000002;
export const NBD_REP_ERR_INVALID = 0x80000003;
export const NBD_REP_ERR_UNKNOWN = 0x80000006;
export const NBD_REP_ERR_TOO_BIG = 0x80000009;
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_EINVAL = 22;
export const NBD_ENOTSUP = 95;

export const OPTION_HEADER_SIZE = 16;

/** S: 'NBDMAGIC', 'IHAVEOPT', u16 handshake flags. */
export function encodeServerGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(18);
  b.writeBigUInt64BE(NBD_INIT_MAGIC, 0);
  b.writeBigUInt64BE(NBD_OPTS_MAGIC, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

export interface OptionHeader {
  option: number;
  length: number;
}

export function decodeOptionHeader(buf: Buffer): OptionHeader | string {
  if (buf.length < OPTION_HEADER_SIZE) return 'option header too short';
  if (buf.readBigUInt64BE(0) !== NBD_OPTS_MAGIC) return 'bad option magic';
  return { option: buf.readUInt32BE(8), length: buf.readUInt32BE(12) };
}

/** NBD_OPT_GO / NBD_OPT_INFO data: u32 name length, name, u16 count, u16 info types. */
export function decodeGoData(data: Buffer): { name: string; infos: number[] } | string {
  if (data.length < 6) return 'data too short';
  const n = data.readUInt32BE(0);
  if (4 + n + 2 > data.length) return 'name length beyond the data';
  const count = data.readUInt16BE(4 + n);
  if (data.length !== 4 + n + 2 + 2 * count) return 'info request count does not match the data length';
  const infos: number[] = [];
  for (let i = 0; i < count; i++) infos.push(data.readUInt16BE(4 + n + 2 + 2 * i));
  return { name: data.toString('utf8', 4, 4 + n), infos };
}

/** NBD_OPT_{SET,LIST}_META_CONTEXT data: u32 name length, name, u32 count, (u32 length, query)*. */
export function decodeMetaContextData(data: Buffer): { name: string; queries: string[] } | string {
  if (data.length < 8) return 'data too short';
  const n = data.readUInt32BE(0);
  if (4 + n + 4 > data.length) return 'name length beyond the data';
  const count = data.readUInt32BE(4 + n);
  let at = 4 + n + 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return 'query count beyond the data';
    const len = data.readUInt32BE(at);
    if (at + 4 + len > data.length) return 'query length beyond the data';
    queries.push(data.toString('utf8', at + 4, at + 4 + len));
    at += 4 + len;
  }
  if (at !== data.length) return 'trailing bytes after the queries';
  return { name: data.toString('utf8', 4, 4 + n), queries };
}

/** The contexts a query selects, out of the ones served (proto.md: 'ns:' selects the whole namespace). */
export function matchMetaContexts(queries: string[], served: readonly string[], listing: boolean): string[] {
  if (queries.length === 0) return listing ? [...served] : [];
  const out = new Set<string>();
  for (const q of queries) {
    for (const s of served) {
      if (q === s || (listing && q.endsWith(':') && s.startsWith(q))) out.add(s);
    }
  }
  return [...out];
}

export function encodeOptionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20 + data.length);
  b.writeBigUInt64BE(NBD_REP_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

export function encodeInfoExport(size: number, transmissionFlags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(NBD_INFO_EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(transmissionFlags, 10);
  return b;
}

export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(NBD_INFO_BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

export function encodeInfoName(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(2 + n.length);
  b.writeUInt16BE(NBD_INFO_NAME, 0);
  n.copy(b, 2);
  return b;
}

export function encodeMetaContextReply(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

/** NBD_REP_SERVER data: u32 name length, name. */
export function encodeServerListEntry(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

/** Reply to NBD_OPT_EXPORT_NAME: u64 size, u16 flags, then 124 zero bytes unless NO_ZEROES was agreed. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(10 + (noZeroes ? 0 : 124));
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(transmissionFlags, 8);
  return b;
}

export interface Request {
  flags: number;
  type: number;
  cookie: bigint;
  offset: number;
  length: number;
}

export function decodeRequest(buf: Buffer): Request | string {
  if (buf.length < REQUEST_SIZE) return 'request too short';
  if (buf.readUInt32BE(0) !== NBD_REQUEST_MAGIC) return 'bad request magic';
  const offset = buf.readBigUInt64BE(16);
  if (offset > BigInt(Number.MAX_SAFE_INTEGER)) return 'offset too large';
  return { flags: buf.readUInt16BE(4), type: buf.readUInt16BE(6), cookie: buf.readBigUInt64BE(8), offset: Number(offset), length: buf.readUInt32BE(24) };
}

export function encodeSimpleReply(cookie: bigint, error: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32BE(NBD_SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(error, 4);
  b.writeBigUInt64BE(cookie, 8);
  return b;
}

/** Structured reply chunk header: magic, u16 flags, u16 type, u64 cookie, u32 length of the payload. */
export function encodeChunkHeader(cookie: bigint, flags: number, type: number, length: number): Buffer {
  const b = Buffer.alloc(20);
  b.writeUInt32BE(NBD_STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(cookie, 8);
  b.writeUInt32BE(length, 16);
  return b;
}

/** u64 offset (NBD_REPLY_TYPE_OFFSET_DATA payload prefix). */
export function encodeOffset(offset: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(offset), 0);
  return b;
}

/** NBD_REPLY_TYPE_OFFSET_HOLE payload: u64 offset, u32 hole size. */
export function encodeHole(offset: number, length: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeBigUInt64BE(BigInt(offset), 0);
  b.writeUInt32BE(length, 8);
  return b;
}

/** NBD_REPLY_TYPE_BLOCK_STATUS payload: u32 context id, then (u32 length, u32 flags)*. */
export function encodeBlockStatus(contextId: number, extents: { length: number; flags: number }[]): Buffer {
  const b = Buffer.alloc(4 + 8 * extents.length);
  b.writeUInt32BE(contextId, 0);
  extents.forEach((e, i) => {
    b.writeUInt32BE(e.length, 4 + 8 * i);
    b.writeUInt32BE(e.flags, 8 + 8 * i);
  });
  return b;
}

/** NBD_REPLY_TYPE_ERROR payload: u32 error, u16 message length, message. */
export function encodeErrorPayload(error: number, message: string): Buffer {
  const m = Buffer.from(message, 'utf8');
  const b = Buffer.alloc(6 + m.length);
  b.writeUInt32BE(error, 0);
  b.writeUInt16BE(m.length, 4);
  m.copy(b, 6);
  return b;
}

export interface Piece {
  offset: number;
  length: number;
  /** Chunk index the piece lies in, and where in that chunk it starts. */
  chunk: number;
  within: number;
  zero: boolean;
}

/**
 * Cuts [offset, offset+length) into pieces along chunk boundaries, neighbouring zero chunks merged
 * (one hole). Pure, given whether each chunk is zero.
 */
export function splitRange(offset: number, length: number, chunkSize: number, isZero: (i: number) => boolean): Piece[] {
  const out: Piece[] = [];
  const end = offset + length;
  for (let at = offset; at < end; ) {
    const chunk = Math.floor(at / chunkSize);
    const within = at - chunk * chunkSize;
    const len = Math.min(chunkSize - within, end - at);
    const zero = isZero(chunk);
    const last = out[out.length - 1];
    if (zero && last?.zero) last.length += len;
    else out.push({ offset: at, length: len, chunk, within, zero });
    at += len;
  }
  return out;
}
