/**
 * Builders of server-side NBD wire messages for tests (replies and handshake replies), written
 * independently of the client's decoders from doc/proto.md's layouts.
 */
export const STRUCTURED_MAGIC = 0x668e33ef;
export const SIMPLE_MAGIC = 0x67446698;
export const DONE = 1;

export function chunk(cookie: number, type: number, flags: number, payload: Buffer, cookieHigh = 0): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt32BE(STRUCTURED_MAGIC, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeUInt32BE(cookieHigh, 8);
  h.writeUInt32BE(cookie, 12);
  h.writeUInt32BE(payload.length, 16);
  return Buffer.concat([h, payload]);
}

export function simple(cookie: number, errno: number): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32BE(SIMPLE_MAGIC, 0);
  h.writeUInt32BE(errno, 4);
  h.writeUInt32BE(cookie, 12);
  return h;
}

export function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

export function dataChunk(cookie: number, offset: number, data: Buffer, flags = DONE): Buffer {
  return chunk(cookie, 1, flags, Buffer.concat([u64(offset), data]));
}

export function holeChunk(cookie: number, offset: number, size: number, flags = DONE): Buffer {
  const p = Buffer.alloc(12);
  p.writeBigUInt64BE(BigInt(offset), 0);
  p.writeUInt32BE(size, 8);
  return chunk(cookie, 2, flags, p);
}

export function noneChunk(cookie: number): Buffer {
  return chunk(cookie, 0, DONE, Buffer.alloc(0));
}

export function statusChunk(cookie: number, contextId: number, descriptors: Array<[number, number]>, flags = DONE): Buffer {
  const p = Buffer.alloc(4 + 8 * descriptors.length);
  p.writeUInt32BE(contextId, 0);
  descriptors.forEach(([len, fl], i) => {
    p.writeUInt32BE(len, 4 + 8 * i);
    p.writeUInt32BE(fl, 8 + 8 * i);
  });
  return chunk(cookie, 5, flags, p);
}

export function errorChunk(cookie: number, errno: number, message: string, offset?: number, flags = DONE): Buffer {
  const msg = Buffer.from(message);
  const head = Buffer.alloc(6);
  head.writeUInt32BE(errno, 0);
  head.writeUInt16BE(msg.length, 4);
  const payload = offset === undefined ? Buffer.concat([head, msg]) : Buffer.concat([head, msg, u64(offset)]);
  return chunk(cookie, offset === undefined ? 0x8001 : 0x8002, flags, payload);
}

/** Handshake side: greeting with the given handshake flags. */
export function greeting(flags = 3): Buffer {
  const b = Buffer.alloc(18);
  b.write('NBDMAGIC', 0, 'latin1');
  b.write('IHAVEOPT', 8, 'latin1');
  b.writeUInt16BE(flags, 16);
  return b;
}

export function optionReply(option: number, type: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(20);
  b.writeBigUInt64BE(0x3e889045565a9n, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  return Buffer.concat([b, data]);
}

export function infoExport(size: number, flags: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(0, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

export function infoBlockSize(min: number, preferred: number, max: number): Buffer {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(3, 0);
  b.writeUInt32BE(min, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(max, 10);
  return b;
}

export function metaContext(id: number, name: string): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(id, 0);
  return Buffer.concat([b, Buffer.from(name)]);
}
