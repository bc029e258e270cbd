/**
 * On-disk blob format shared by chunks and index pages.
 *
 *   offset  size  field
 *   0       8     magic: which kind of blob (chunk or page), format version 1
 *   8       1     flags: bits 0-6 the compression of the content inside the payload: 0 = none,
 *                 1 = lz4 block (lz4-napi, size-prefixed); bit 7 (0x80) = encrypted. The byte
 *                 values in use, frozen: 0x00 raw, 0x01 lz4, 0x80 raw + AES-256-GCM,
 *                 0x81 lz4 + AES-256-GCM (compress-then-encrypt).
 *   9       3     lz4 (0x01, 0x81): length of the payload as stored (little endian; 0 in 0x01
 *                 blobs written before it was recorded); 0x00: 0 (the payload length is the plain
 *                 length); 0x80: 0 (the payload length is the plain length + 28)
 *   12      4     CRC-32 of the payload as stored (little endian)
 *   16      4     length of the plain (uncompressed) content (little endian)
 *   20      ...   payload; encrypted: nonce (12) | AES-256-GCM ciphertext of the raw or lz4
 *                 content | tag (16), the header without its CRC field as AAD (blob-cipher.ts)
 *
 * Encrypted blobs exist only in encrypted repositories (marker `encryption`), whose blobs are all
 * encrypted: a reader with the key refuses an unencrypted blob there, a reader without one refuses
 * an encrypted blob; both are "corrupt", never returned as content. In an encrypted repository the
 * name is the keyed digest (HMAC-SHA256 under the digest key, digest.ts) instead of the SHA-256.
 *
 * The CRC covers the stored bytes so that a flipped bit is found before decompressing; the name of
 * the file is the SHA-256 of the plain content, which readers check as well. The magic numbers are
 * the first 8 bytes of SHA-256("pve-cbt chunk v1") and SHA-256("pve-cbt page v1"), written out
 * here as literals: do not modify, files on disk depend on them. With the payload length known
 * from the header, a truncated blob is recognised from its size alone (`storedSizeOf`).
 */
import lz4 from 'lz4-napi';
import { blobCipher, type BlobCipher } from './blob-cipher';
import type { Compression } from './compressions';

export const CHUNK_MAGIC_V1 = Buffer.from([45, 15, 246, 163, 79, 168, 108, 130]);
export const PAGE_MAGIC_V1 = Buffer.from([199, 192, 100, 75, 45, 32, 38, 157]);

export const BLOB_HEADER_SIZE = 20;

export type BlobKind = 'chunk' | 'page';
export type Lz4Sync = { uncompressSync(data: Buffer): Buffer };
export type Lz4Module = Lz4Sync & { compressSync(data: Buffer): Buffer };
export { COMPRESSIONS, type Compression } from './compressions';

export function magicOf(kind: BlobKind): Buffer {
  return kind === 'chunk' ? CHUNK_MAGIC_V1 : PAGE_MAGIC_V1;
}

/**
 * Early abort for incompressible data (as ZFS does for its compressors), in two steps:
 * 1. A byte histogram of 4 slices of 1 KiB spread over the blob. Bytes as even as random data's
 *    (chi-square within 5 standard deviations of its mean, 255 +- 5 * 22.6, for 255 degrees of
 *    freedom) say "random": encrypted or already compressed content, which lz4 cannot shrink. lz4
 *    does no entropy coding, so it saves only on repeated strings, and repeats within the sample
 *    (a period up to a slice long) or between slices (the same bytes at the same place) make the
 *    counts uneven; a chi-square below the band (too even: 0, 1, 2, ... 255 over and over) is not
 *    random either. About 6 us per chunk here, where step 2 costs about 55 us: on a full of random
 *    data that was as much CPU as the SHA-256.
 * 2. Otherwise lz4 on 4 slices of 2 KiB, and the whole blob is compressed only when they shrink by
 *    the 1/32 that encodeBlobSync asks of a whole blob. lz4 spends as long failing on random data
 *    as it does compressing text (about 2.5 s of CPU per GiB here).
 * A wrong guess stores a blob raw: space, never correctness (content repeated only beyond a slice,
 * e.g. the same 4 KiB page twice in a chunk, can be missed by either step). Self-contained like
 * decodeBlobSync (the blob workers run its source).
 */
export function worthCompressing(plain: Buffer, lz4Mod: Lz4Module): boolean {
  const slices = 4;
  const sliceBytes = 2048;
  if (plain.length < 4 * slices * sliceBytes) return true;
  const step = Math.floor(plain.length / slices);
  // 1. Histogram: four count tables side by side, so consecutive bytes do not wait on one counter.
  const histBytes = 1024;
  const counts = new Int32Array(1024);
  for (let i = 0; i < slices; i++) {
    const v = new Uint8Array(plain.buffer, plain.byteOffset + i * step, histBytes);
    for (let o = 0; o < histBytes; o += 4) {
      counts[v[o]]++;
      counts[256 + v[o + 1]]++;
      counts[512 + v[o + 2]]++;
      counts[768 + v[o + 3]]++;
    }
  }
  const expected = (slices * histBytes) / 256;
  let chi = 0;
  for (let b = 0; b < 256; b++) {
    const d = counts[b] + counts[256 + b] + counts[512 + b] + counts[768 + b] - expected;
    chi += d * d;
  }
  chi /= expected;
  if (chi > 255 - 113 && chi < 255 + 113) return false;
  // 2. lz4 on the samples.
  let packed = 0;
  for (let i = 0; i < slices; i++) packed += lz4Mod.compressSync(plain.subarray(i * step, i * step + sliceBytes)).length;
  const sampled = slices * sliceBytes;
  return packed <= sampled - (sampled >> 5);
}

/**
 * Encodes plain content into the stored form, compressing with lz4 when that pays off. Returns the
 * header and the payload as separate buffers (written with one writev), so a raw blob is never
 * copied. Self-contained (the blob workers run its source): 20 = BLOB_HEADER_SIZE, 0/1 = none/lz4.
 * A compressed payload is kept only when it saves at least 1/32 (>> 5); it is then smaller than the
 * plain content (at most 16 MiB), so its length fits the header's three bytes (with the 28 bytes
 * of a cipher too). With `cipher` the payload is sealed (blob-cipher.ts) and flag 0x80 is set.
 */
export function encodeBlobSync(plain: Buffer, magic: Buffer, compress: boolean, lz4Mod: Lz4Module, probe: typeof worthCompressing, cipher: BlobCipher | null = null): Buffer[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const zlibMod = require('node:zlib') as typeof import('node:zlib');
  let compression = 0;
  let payload = plain;
  if (compress && probe(plain, lz4Mod)) {
    const packed = lz4Mod.compressSync(plain);
    if (packed.length <= plain.length - (plain.length >> 5)) {
      compression = 1;
      payload = packed;
    }
  }
  const h = Buffer.alloc(20);
  magic.copy(h, 0);
  h.writeUInt8(cipher ? compression | 0x80 : compression, 8);
  if (compression === 1) h.writeUIntLE(payload.length + (cipher ? 28 : 0), 9, 3);
  h.writeUInt32LE(plain.length, 16);
  if (cipher) payload = cipher.seal(h, payload, cipher.key);
  h.writeUInt32LE(zlibMod.crc32(payload), 12);
  return [h, payload];
}

/** encodeBlobSync for a kind of blob, on the calling thread (the chunk store encodes on its workers). */
export function encodeBlob(kind: BlobKind, plain: Buffer, compression: Compression, blobKey: Buffer | null = null): Buffer[] {
  return encodeBlobSync(plain, magicOf(kind), compression === 'auto', lz4, worthCompressing, blobCipher(blobKey));
}

/**
 * The size a complete blob with this header has, from the header alone: 'bad' when it is not a
 * header with this magic, 'unknown' for an lz4 blob written before the payload length was
 * recorded. Self-contained (the blob workers run its source): 20 = BLOB_HEADER_SIZE, the flag
 * values of the header (0x00, 0x01, 0x80, 0x81), 28 = the cipher's nonce + tag.
 */
export function storedSizeOf(head: Buffer, magic: Buffer): number | 'bad' | 'unknown' {
  if (head.length < 20 || !head.subarray(0, 8).equals(magic)) return 'bad';
  const flags = head.readUInt8(8);
  if (flags === 0) return 20 + head.readUInt32LE(16);
  if (flags === 0x80) return 20 + head.readUInt32LE(16) + 28;
  if (flags !== 1 && flags !== 0x81) return 'bad';
  const payload = head.readUIntLE(9, 3);
  if (payload === 0) return flags === 1 ? 'unknown' : 'bad';
  return 20 + payload;
}

/**
 * Decodes a stored blob, checking magic, CRC (unless `checkCrc` is false: readers that check the
 * SHA-256 of the plain content anyway, which catches everything the CRC would) and length; returns
 * the plain content, or the reason as a string. It is self-contained (only its arguments, literals
 * and built-in modules) because the blob worker threads run its source text
 * (blob-workers.ts); keep it so. The lz4 module is passed in: a worker resolves
 * modules from the process's working directory, not from here. 20 = BLOB_HEADER_SIZE,
 * 0/1 = no compression/lz4, 0x80 = encrypted. `cipher` (an encrypted repository's): every blob
 * must be encrypted and its tag must match; without one an encrypted blob is refused.
 */
export function decodeBlobSync(stored: Buffer, magic: Buffer, checkCrc: boolean, lz4Mod: Lz4Sync, cipher: BlobCipher | null = null): Buffer | string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const zlibMod = require('node:zlib') as typeof import('node:zlib');
  if (stored.length < 20) return `truncated: ${stored.length} bytes`;
  if (!stored.subarray(0, 8).equals(magic)) return 'bad magic';
  const flags = stored.readUInt8(8);
  const compression = flags & 0x7f;
  const plainLength = stored.readUInt32LE(16);
  let payload = stored.subarray(20);
  if (checkCrc && zlibMod.crc32(payload) !== stored.readUInt32LE(12)) return 'checksum mismatch';
  if ((flags & 0x80) === 0 && cipher) return 'not encrypted, in an encrypted repository';
  if (flags & 0x80) {
    if (!cipher) return 'encrypted, and no key was given';
    const opened = cipher.open(stored.subarray(0, 20), payload, cipher.key);
    if (!opened) return 'decryption failed: tampered with, or encrypted under another key';
    payload = opened;
  }
  let plain: Buffer;
  if (compression === 0) plain = payload;
  else if (compression === 1) {
    try {
      plain = lz4Mod.uncompressSync(payload);
    } catch (err) {
      return `lz4: ${(err as Error).message}`;
    }
  } else return `unknown compression ${compression}`;
  if (plain.length !== plainLength) return `length ${plain.length}, header says ${plainLength}`;
  return plain;
}
