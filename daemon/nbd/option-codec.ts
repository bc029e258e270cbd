/**
 * Encoding and decoding of the fixed-newstyle handshake (doc/proto.md, "Handshake"). Pure: buffers in,
 * values out; malformed server data raises CBT_NBD_PROTOCOL.
 *
 *   S: u64 'NBDMAGIC', u64 'IHAVEOPT', u16 handshake flags      C: u32 client flags
 *   C: u64 'IHAVEOPT', u32 option, u32 length, data
 *   S: u64 0x3e889045565a9, u32 option, u32 reply type, u32 length, data
 * All integers are big-endian.
 */
import {
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_EXPORT,
  NBD_INIT_MAGIC,
  NBD_OPTS_MAGIC,
  NBD_REP_MAGIC,
} from './nbd-constants';
import { NbdProtocolError } from './nbd-errors';

export const GREETING_SIZE = 18;
export const OPTION_REPLY_HEADER_SIZE = 20;
/** Option replies carry names and small records; anything larger is a broken or hostile server. */
export const MAX_OPTION_REPLY_LENGTH = 1024 * 1024;
/** Oldstyle servers send this after NBDMAGIC; we only speak fixed newstyle. */
const OLDSTYLE_MAGIC = 0x00420281861253n;

export interface Greeting {
  handshakeFlags: number;
}

export function decodeGreeting(buf: Buffer): Greeting {
  if (buf.length < GREETING_SIZE) throw NbdProtocolError({ reason: 'greeting too short', length: buf.length });
  const init = buf.readBigUInt64BE(0);
  if (init !== NBD_INIT_MAGIC) {
    throw NbdProtocolError({ reason: 'bad greeting magic (not an NBD server)', magic: `0x${init.toString(16)}` });
  }
  const second = buf.readBigUInt64BE(8);
  if (second === OLDSTYLE_MAGIC) throw NbdProtocolError({ reason: 'oldstyle negotiation is not supported' });
  if (second !== NBD_OPTS_MAGIC) {
    throw NbdProtocolError({ reason: 'bad newstyle magic', magic: `0x${second.toString(16)}` });
  }
  return { handshakeFlags: buf.readUInt16BE(16) };
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(16 + data.length);
  b.writeBigUInt64BE(NBD_OPTS_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}

/** NBD_OPT_GO / NBD_OPT_INFO data: u32 name length, name, u16 count, u16 info types. */
export function encodeGoData(exportName: string, infoRequests: number[]): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const b = Buffer.alloc(4 + name.length + 2 + 2 * infoRequests.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  let at = 4 + name.length;
  b.writeUInt16BE(infoRequests.length, at);
  at += 2;
  for (const info of infoRequests) {
    b.writeUInt16BE(info, at);
    at += 2;
  }
  return b;
}

/** NBD_OPT_SET_META_CONTEXT / LIST data: u32 name length, name, u32 count, then (u32 length, query)*. */
export function encodeMetaContextData(exportName: string, queries: string[]): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  const qs = queries.map((q) => Buffer.from(q, 'utf8'));
  const b = Buffer.alloc(4 + name.length + 4 + qs.reduce((n, q) => n + 4 + q.length, 0));
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  let at = 4 + name.length;
  b.writeUInt32BE(qs.length, at);
  at += 4;
  for (const q of qs) {
    b.writeUInt32BE(q.length, at);
    q.copy(b, at + 4);
    at += 4 + q.length;
  }
  return b;
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  length: number;
}

export function decodeOptionReplyHeader(buf: Buffer, expectedOption: number): OptionReplyHeader {
  if (buf.length < OPTION_REPLY_HEADER_SIZE) {
    throw NbdProtocolError({ reason: 'option reply header too short', length: buf.length });
  }
  const magic = buf.readBigUInt64BE(0);
  if (magic !== NBD_REP_MAGIC) {
    throw NbdProtocolError({ reason: 'bad option reply magic', magic: `0x${magic.toString(16)}` });
  }
  const option = buf.readUInt32BE(8);
  const type = buf.readUInt32BE(12);
  const length = buf.readUInt32BE(16);
  if (option !== expectedOption) {
    throw NbdProtocolError({ reason: 'option reply for another option', option, expectedOption });
  }
  if (length > MAX_OPTION_REPLY_LENGTH) {
    throw NbdProtocolError({ reason: 'option reply length overflow', length, max: MAX_OPTION_REPLY_LENGTH });
  }
  return { option, type, length };
}

export type Info =
  | { kind: 'export'; size: number; transmissionFlags: number }
  | { kind: 'block-size'; minimum: number; preferred: number; maximum: number }
  | { kind: 'other'; type: number };

/** Payload of an NBD_REP_INFO reply. Unknown info types are ignored, as the protocol requires. */
export function decodeInfo(payload: Buffer): Info {
  if (payload.length < 2) throw NbdProtocolError({ reason: 'NBD_REP_INFO shorter than 2 bytes', length: payload.length });
  const type = payload.readUInt16BE(0);
  if (type === NBD_INFO_EXPORT) {
    if (payload.length !== 12) throw NbdProtocolError({ reason: 'NBD_INFO_EXPORT length must be 12', length: payload.length });
    const size = payload.readBigUInt64BE(2);
    if (size > BigInt(Number.MAX_SAFE_INTEGER)) throw NbdProtocolError({ reason: 'export size too large', size: size.toString() });
    return { kind: 'export', size: Number(size), transmissionFlags: payload.readUInt16BE(10) };
  }
  if (type === NBD_INFO_BLOCK_SIZE) {
    if (payload.length !== 14) throw NbdProtocolError({ reason: 'NBD_INFO_BLOCK_SIZE length must be 14', length: payload.length });
    const minimum = payload.readUInt32BE(2);
    const preferred = payload.readUInt32BE(6);
    const maximum = payload.readUInt32BE(10);
    if (minimum === 0 || preferred < minimum || maximum < preferred || (minimum & (minimum - 1)) !== 0) {
      throw NbdProtocolError({ reason: 'inconsistent block size constraints', minimum, preferred, maximum });
    }
    return { kind: 'block-size', minimum, preferred, maximum };
  }
  return { kind: 'other', type };
}

/** Payload of an NBD_REP_META_CONTEXT reply: u32 context id, name. */
export function decodeMetaContext(payload: Buffer): { id: number; name: string } {
  if (payload.length < 5) throw NbdProtocolError({ reason: 'NBD_REP_META_CONTEXT too short', length: payload.length });
  return { id: payload.readUInt32BE(0), name: payload.toString('utf8', 4) };
}
