import { isCbtError } from '../../../shared/errors/cbt-error';
import { MAX_METADATA_PAYLOAD, ReplyParser, type ReplyResult, type ReplyTarget } from '../../../daemon/nbd/reply-parser';
import { DONE, chunk, dataChunk, errorChunk, holeChunk, noneChunk, simple, statusChunk } from './nbd-wire';

interface Harness {
  parser: ReplyParser;
  targets: Map<number, ReplyTarget>;
  done: Map<number, ReplyResult>;
}

function harness(targets: Array<[number, ReplyTarget]>): Harness {
  const h: Harness = { targets: new Map(targets), done: new Map(), parser: undefined as unknown as ReplyParser };
  h.parser = new ReplyParser({
    target: (cookie) => h.targets.get(cookie),
    complete: (cookie, result) => {
      h.targets.delete(cookie);
      h.done.set(cookie, result);
    },
  });
  return h;
}

const read = (offset: number, length: number): ReplyTarget => ({ kind: 'read', offset, length, dest: Buffer.alloc(length, 0xee) });
const status = (offset: number, length: number): ReplyTarget => ({ kind: 'block-status', offset, length });

/** Feeds a stream whole, byte by byte, and in uneven pieces; each run must give the same outcome. */
const splitters: Array<[string, (b: Buffer) => Buffer[]]> = [
  ['whole', (b) => [b]],
  ['bytewise', (b) => [...b].map((x) => Buffer.from([x]))],
  ['uneven', (b) => { const out: Buffer[] = []; for (let i = 0, k = 1; i < b.length; i += k, k = (k * 7) % 23 + 1) out.push(b.subarray(i, i + k)); return out; }],
];

describe.each(splitters)('valid replies fed %s', (_name, split) => {
  test('data and hole chunks in any order fill the destination, holes as zeroes', () => {
    const t = read(1000, 300);
    const h = harness([[7, t]]);
    const stream = Buffer.concat([
      dataChunk(7, 1200, Buffer.alloc(100, 0xbb), 0),
      holeChunk(7, 1100, 100, 0),
      dataChunk(7, 1000, Buffer.alloc(100, 0xaa), 0),
      noneChunk(7),
    ]);
    for (const p of split(stream)) h.parser.push(p);
    const r = h.done.get(7) as ReplyResult;
    expect(r.errors).toEqual([]);
    expect(r.covered).toBe(300);
    expect(t.dest).toEqual(Buffer.concat([Buffer.alloc(100, 0xaa), Buffer.alloc(100, 0), Buffer.alloc(100, 0xbb)]));
  });

  test('interleaved replies of several requests and a block status with two contexts', () => {
    const a = read(0, 8);
    const h = harness([[1, a], [2, status(0, 4096)], [3, read(8, 8)]]);
    const stream = Buffer.concat([
      statusChunk(2, 5, [[1024, 0], [3072, 3]], 0),
      dataChunk(1, 0, Buffer.from('abcdefgh')),
      statusChunk(2, 9, [[8192, 1]], DONE),
      errorChunk(3, 5, 'disk on fire', 12),
    ]);
    for (const p of split(stream)) h.parser.push(p);
    expect(a.dest?.toString()).toBe('abcdefgh');
    expect(h.done.get(2)?.blockStatus).toEqual(new Map([[5, [[1024, 0], [3072, 3]]], [9, [[8192, 1]]]]));
    expect(h.done.get(3)?.errors).toEqual([{ errno: 5, message: 'disk on fire', offset: 12 }]);
    expect(h.done.size).toBe(3);
  });

  test('simple error reply to block status and generic error chunk', () => {
    const h = harness([[4, status(0, 512)], [5, read(0, 512)]]);
    for (const p of split(Buffer.concat([simple(4, 22), errorChunk(5, 1, '')]))) h.parser.push(p);
    expect(h.done.get(4)?.errors).toEqual([{ errno: 22, message: '' }]);
    expect(h.done.get(5)?.errors).toEqual([{ errno: 1, message: '' }]);
  });

  test('an unknown error chunk type (bit 15) errors the request but keeps the stream', () => {
    const h = harness([[6, read(0, 4)], [7, read(4, 4)]]);
    const payload = Buffer.concat([Buffer.from([0, 0, 0, 5, 0, 2]), Buffer.from('no'), Buffer.alloc(3)]);
    for (const p of split(Buffer.concat([chunk(6, 0x8123, DONE, payload), dataChunk(7, 4, Buffer.from('wxyz'))]))) h.parser.push(p);
    expect(h.done.get(6)?.errors).toEqual([{ errno: 5, message: 'no' }]);
    expect(h.done.get(7)?.covered).toBe(4);
  });
});

test('a partial reply (no DONE yet) completes nothing', () => {
  const h = harness([[1, read(0, 8)]]);
  h.parser.push(dataChunk(1, 0, Buffer.alloc(4), 0));
  expect(h.done.size).toBe(0);
});

test('dataTarget exposes the destination so the socket can receive in place', () => {
  const t = read(0, 64);
  const h = harness([[1, t]]);
  const msg = dataChunk(1, 0, Buffer.alloc(64, 0x5a));
  h.parser.push(msg.subarray(0, 28 + 10));
  const target = h.parser.dataTarget() as Buffer;
  expect(target.length).toBe(54);
  expect(target.buffer).toBe(t.dest?.buffer);
  msg.copy(target, 0, 38);
  h.parser.push(target);
  expect(t.dest).toEqual(Buffer.alloc(64, 0x5a));
  expect(h.done.get(1)?.covered).toBe(64);
  expect(h.parser.dataTarget()).toBeUndefined();
});

describe('malformed replies are protocol errors', () => {
  const lenHeader = (cookie: number, type: number, length: number): Buffer => {
    const c = chunk(cookie, type, DONE, Buffer.alloc(0));
    c.writeUInt32BE(length, 16);
    return c;
  };
  test.each<[string, ReplyTarget, Buffer, RegExp]>([
    ['bad magic', read(0, 8), Buffer.from('HTTP/1.1 400 Bad Request\r\n'), /bad reply magic/],
    ['unknown cookie', read(0, 8), dataChunk(99, 0, Buffer.alloc(8)), /unknown cookie/],
    ['cookie high word set', read(0, 8), chunk(1, 1, DONE, Buffer.concat([Buffer.alloc(8), Buffer.alloc(8)]), 1), /unknown cookie/],
    ['unknown chunk type', read(0, 8), chunk(1, 3, DONE, Buffer.alloc(4)), /unknown structured reply chunk type/],
    ['OFFSET_DATA longer than the request', read(0, 8), dataChunk(1, 0, Buffer.alloc(9)), /length overflow/],
    ['OFFSET_DATA without data', read(0, 8), chunk(1, 1, DONE, Buffer.alloc(8)), /length overflow/],
    ['OFFSET_DATA huge length', read(0, 8), lenHeader(1, 1, 0xffffffff), /length overflow/],
    ['data before the request', read(100, 8), dataChunk(1, 99, Buffer.alloc(8)), /outside the request/],
    ['data past the request', read(100, 8), dataChunk(1, 104, Buffer.alloc(8)), /outside the request/],
    ['overlapping data', read(0, 8), Buffer.concat([dataChunk(1, 0, Buffer.alloc(4), 0), dataChunk(1, 2, Buffer.alloc(4))]), /overlaps/],
    ['hole overlapping data', read(0, 8), Buffer.concat([holeChunk(1, 4, 4, 0), dataChunk(1, 0, Buffer.alloc(5))]), /overlaps/],
    ['hole with wrong length', read(0, 8), chunk(1, 2, DONE, Buffer.alloc(16)), /OFFSET_HOLE length/],
    ['hole of size 0', read(0, 8), holeChunk(1, 0, 0), /size 0/],
    ['block status to a read', read(0, 8), statusChunk(1, 1, [[8, 0]]), /BLOCK_STATUS chunk in reply to a read/],
    ['data to a block status', status(0, 8), dataChunk(1, 0, Buffer.alloc(8)), /OFFSET_DATA chunk in reply to block status/],
    ['block status length not 4+8n', status(0, 8), chunk(1, 5, DONE, Buffer.alloc(13)), /BLOCK_STATUS length/],
    ['block status without descriptors', status(0, 8), chunk(1, 5, DONE, Buffer.alloc(4)), /BLOCK_STATUS length/],
    ['block status length overflow', status(0, 8), lenHeader(1, 5, MAX_METADATA_PAYLOAD + 4 + 8), /BLOCK_STATUS length/],
    ['descriptor of length 0', status(0, 8), statusChunk(1, 1, [[0, 0]]), /length 0/],
    ['two chunks for one context', status(0, 8), Buffer.concat([statusChunk(1, 1, [[4, 0]], 0), statusChunk(1, 1, [[4, 0]])]), /two BLOCK_STATUS/],
    ['NONE with payload', read(0, 8), chunk(1, 0, DONE, Buffer.alloc(1)), /NONE chunk with a payload/],
    ['NONE without DONE', read(0, 8), chunk(1, 0, 0, Buffer.alloc(0)), /NONE chunk without DONE/],
    ['error chunk too short', read(0, 8), chunk(1, 0x8001, DONE, Buffer.alloc(5)), /error chunk length/],
    ['error chunk length overflow', read(0, 8), lenHeader(1, 0x8001, 0x7fffffff), /error chunk length/],
    ['error message longer than chunk', read(0, 8), chunk(1, 0x8001, DONE, Buffer.from([0, 0, 0, 5, 0, 9, 65])), /longer than its chunk/],
    ['error value 0', read(0, 8), errorChunk(1, 0, 'x'), /error 0/],
    ['ERROR_OFFSET without offset', read(0, 8), chunk(1, 0x8002, DONE, Buffer.from([0, 0, 0, 5, 0, 0, 1, 2])), /ERROR_OFFSET length mismatch/],
    ['simple reply to a read', read(0, 8), simple(1, 0), /simple reply to a read/],
    ['simple success to block status', status(0, 8), simple(1, 0), /simple success reply/],
  ])('%s', (_name, target, stream, reason) => {
    const h = harness([[1, target]]);
    let caught: unknown;
    try {
      h.parser.push(stream);
    } catch (err) {
      caught = err;
    }
    expect(isCbtError(caught) && caught.code).toBe('CBT_NBD_PROTOCOL');
    expect((caught as Error).message).toMatch(reason);
    expect(() => h.parser.push(noneChunk(1))).toThrow(caught as Error);
  });
});
