/**
 * Transmission-phase request header (doc/proto.md, "Request message"), 28 bytes big-endian:
 *   u32 0x25609513, u16 command flags, u16 type, u64 cookie, u64 offset, u32 length
 * Cookies are 32-bit counters written into the low half of the 64-bit field; a reply whose high half
 * is not zero therefore cannot be ours.
 */
import { NBD_REQUEST_MAGIC, REQUEST_SIZE } from './nbd-constants';

export interface RequestHeader {
  flags: number;
  type: number;
  cookie: number;
  offset: number;
  length: number;
}

const TWO_32 = 0x1_0000_0000;

/** Writes one header at `at` (callers batch many headers into one buffer and one write). */
export function encodeRequest(target: Buffer, at: number, r: RequestHeader): number {
  target.writeUInt32BE(NBD_REQUEST_MAGIC, at);
  target.writeUInt16BE(r.flags, at + 4);
  target.writeUInt16BE(r.type, at + 6);
  target.writeUInt32BE(0, at + 8);
  target.writeUInt32BE(r.cookie >>> 0, at + 12);
  target.writeUInt32BE(Math.floor(r.offset / TWO_32), at + 16);
  target.writeUInt32BE(r.offset % TWO_32, at + 20);
  target.writeUInt32BE(r.length >>> 0, at + 24);
  return at + REQUEST_SIZE;
}

export function encodeRequests(requests: RequestHeader[]): Buffer {
  const b = Buffer.allocUnsafe(requests.length * REQUEST_SIZE);
  let at = 0;
  for (const r of requests) at = encodeRequest(b, at, r);
  return b;
}
