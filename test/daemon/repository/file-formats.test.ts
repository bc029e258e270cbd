import crypto from 'node:crypto';
import zlib from 'node:zlib';
import lz4 from 'lz4-napi';
import {
  BLOB_HEADER_SIZE,
  CHUNK_MAGIC_V1,
  PAGE_MAGIC_V1,
  decodeBlobSync,
  magicOf,
  encodeBlob as encodeParts,
  storedSizeOf,
  worthCompressing,
  type BlobKind,
  type Compression,
} from '../../../daemon/repository/file-formats';
import { blobCipher } from '../../../daemon/repository/blob-cipher';

const encodeBlob = (kind: BlobKind, plain: Buffer, compression: Compression): Buffer => Buffer.concat(encodeParts(kind, plain, compression));
/** The plain content, or why the blob is bad. */
const decode = (kind: BlobKind, stored: Buffer): Buffer | string => decodeBlobSync(stored, magicOf(kind), true, lz4);

describe('blob file format', () => {
  it('magic numbers are the frozen SHA-256 prefixes', () => {
    expect(CHUNK_MAGIC_V1).toEqual(crypto.createHash('sha256').update('pve-cbt chunk v1').digest().subarray(0, 8));
    expect(PAGE_MAGIC_V1).toEqual(crypto.createHash('sha256').update('pve-cbt page v1').digest().subarray(0, 8));
  });

  it('compresses compressible data with lz4 and stores random data raw', async () => {
    const text = Buffer.from('hello pve-cbt '.repeat(10000));
    const packed = encodeBlob('chunk', text, 'auto');
    expect(packed[8]).toBe(1);
    expect(packed.length).toBeLessThan(text.length / 10);
    expect(decode('chunk', packed)).toEqual(text);

    const random = crypto.randomBytes(131072);
    const raw = encodeBlob('chunk', random, 'auto');
    expect(raw[8]).toBe(0);
    expect(raw.length).toBe(random.length + BLOB_HEADER_SIZE);
    expect(decode('chunk', raw)).toEqual(random);

    const none = encodeBlob('page', text, 'none');
    expect(none[8]).toBe(0);
    expect(decode('page', none)).toEqual(text);
  });

  const probeCases: [string, () => Buffer, boolean][] = [
    ['random 256 KiB', () => crypto.randomBytes(262144), false],
    ['text 256 KiB', () => Buffer.from('pve-cbt backs up changed blocks. '.repeat(8000)).subarray(0, 262144), true],
    ['random then zeros', () => Buffer.concat([crypto.randomBytes(131072), Buffer.alloc(131072)]), true],
    ['zeros then random', () => Buffer.concat([Buffer.alloc(131072), crypto.randomBytes(131072)]), true],
    ['small random blob (always tried)', () => crypto.randomBytes(16384), true],
    ['random 64 KiB (a format-2 chunk)', () => crypto.randomBytes(65536), false],
    ['gzip output 64 KiB', () => zlib.gzipSync(Buffer.from(crypto.randomBytes(300000).toString('hex'))).subarray(1000, 66536), false],
    ['0..255 over and over (even bytes, lz4 shrinks it)', () => Buffer.from(Array.from({ length: 65536 }, (_, i) => i & 255)), true],
    ['one random 512-byte block repeated', () => Buffer.concat(Array<Buffer>(128).fill(crypto.randomBytes(512))), true],
    ['random words between zero words', () => { const b = crypto.randomBytes(65536); for (let i = 0; i < b.length; i += 8) b.fill(0, i, i + 4); return b; }, true],
  ];

  it.each(probeCases)('the compression probe says %s -> %s', (_name, make, expected) => {
    expect(worthCompressing(make(), lz4)).toBe(expected);
  });

  it('stores a half-random chunk compressed and restores it exactly', async () => {
    const plain = Buffer.concat([crypto.randomBytes(131072), Buffer.alloc(131072)]);
    const blob = encodeBlob('chunk', plain, 'auto');
    expect(blob[8]).toBe(1);
    expect(blob.length).toBeLessThan(plain.length * 0.6);
    expect(decode('chunk', blob)).toEqual(plain);
  });

  it('the header tells the size of the complete blob', async () => {
    const raw = encodeBlob('chunk', crypto.randomBytes(70000), 'auto');
    const packed = encodeBlob('chunk', Buffer.alloc(70000, 7), 'auto');
    const older = Buffer.from(packed);
    older.fill(0, 9, 12);
    const cases: [string, Buffer, ReturnType<typeof storedSizeOf>][] = [
      ['raw', raw, raw.length],
      ['lz4', packed, packed.length],
      ['lz4 written before the length was recorded', older, 'unknown'],
      ['a page header read as a chunk', encodeBlob('page', Buffer.alloc(64, 1), 'none'), 'bad'],
      ['short', raw.subarray(0, 10), 'bad'],
    ];
    for (const [, blob, expected] of cases) expect(storedSizeOf(blob.subarray(0, BLOB_HEADER_SIZE), CHUNK_MAGIC_V1)).toBe(expected);
    expect(decode('chunk', older)).toEqual(Buffer.alloc(70000, 7));
  });

  const mutations: [string, (b: Buffer) => Buffer][] = [
    ['truncated header', (b) => b.subarray(0, 10)],
    ['truncated payload', (b) => b.subarray(0, b.length - 1)],
    ['flipped payload byte', (b) => { const c = Buffer.from(b); c[c.length - 5] ^= 0x80; return c; }],
    ['flipped magic', (b) => { const c = Buffer.from(b); c[0] ^= 1; return c; }],
    ['unknown compression', (b) => { const c = Buffer.from(b); c[8] = 9; return c; }],
    ['wrong plain length', (b) => { const c = Buffer.from(b); c.writeUInt32LE(c.readUInt32LE(16) + 1, 16); return c; }],
  ];

  it.each(mutations)('detects %s', async (_name, mutate) => {
    const blob = encodeBlob('chunk', Buffer.from('some chunk content '.repeat(500)), 'auto');
    expect(typeof decode('chunk', mutate(blob))).toBe('string');
  });

  it('a page is not accepted as a chunk', async () => {
    const page = encodeBlob('page', Buffer.alloc(64, 3), 'none');
    expect(decode('chunk', page)).toBe('bad magic');
  });
});

describe('encrypted blobs (flag 0x80)', () => {
  const key = crypto.randomBytes(32);
  const cipher = blobCipher(key);
  const enc = (kind: BlobKind, plain: Buffer, compression: Compression): Buffer => Buffer.concat(encodeParts(kind, plain, compression, key));
  const text = Buffer.from('an encrypted repository stores this text '.repeat(3000));
  const random = crypto.randomBytes(70000);

  const cases: [string, Buffer, Compression, number][] = [
    ['compressible content: lz4 then AES-256-GCM', text, 'auto', 0x81],
    ['random content: raw then AES-256-GCM', random, 'auto', 0x80],
    ['compression none', text, 'none', 0x80],
  ];
  it.each(cases)('%s round-trips with the key; the size is known from the header', (_name, plain, compression, flags) => {
    const blob = enc('chunk', plain, compression);
    expect(blob[8]).toBe(flags);
    expect(storedSizeOf(blob.subarray(0, BLOB_HEADER_SIZE), CHUNK_MAGIC_V1)).toBe(blob.length);
    expect(decodeBlobSync(blob, CHUNK_MAGIC_V1, true, lz4, cipher)).toEqual(plain);
    expect(decodeBlobSync(blob, CHUNK_MAGIC_V1, false, lz4, cipher)).toEqual(plain);
    expect(blob.includes(plain.subarray(0, 32))).toBe(false);
    // A random nonce per blob: the same content never encrypts to the same bytes.
    expect(enc('chunk', plain, compression).equals(blob)).toBe(false);
  });

  const refusals: [string, (blob: Buffer) => Buffer | string][] = [
    ['read without a key', (b) => decodeBlobSync(b, CHUNK_MAGIC_V1, true, lz4)],
    ['read with another key', (b) => decodeBlobSync(b, CHUNK_MAGIC_V1, true, lz4, blobCipher(crypto.randomBytes(32)))],
    ['an unencrypted blob in an encrypted repository', () => decodeBlobSync(Buffer.concat(encodeParts('chunk', text, 'auto')), CHUNK_MAGIC_V1, true, lz4, cipher)],
    ['flags 0x81 edited to 0x80 (CRC skipped)', (b) => decodeBlobSync(Buffer.concat([b.subarray(0, 8), Buffer.from([0x80]), b.subarray(9)]), CHUNK_MAGIC_V1, false, lz4, cipher)],
    ['a page read as a chunk with the magic edited', (b) => decodeBlobSync(Buffer.concat([PAGE_MAGIC_V1, b.subarray(8)]), PAGE_MAGIC_V1, false, lz4, cipher)],
  ];
  it.each(refusals)('refuses %s with a reason, never content', (_name, read) => {
    expect(typeof read(enc('chunk', text, 'auto'))).toBe('string');
  });

  it('an lz4 + cipher header without the payload length is bad, not unknown', () => {
    const blob = enc('chunk', text, 'auto');
    const head = Buffer.from(blob.subarray(0, BLOB_HEADER_SIZE));
    head.writeUIntLE(0, 9, 3);
    expect(storedSizeOf(head, CHUNK_MAGIC_V1)).toBe('bad');
  });
});
