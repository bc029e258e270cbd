/**
 * Blob digests as lowercase hex; the all-zero digest is the marker for an all-zero chunk or page.
 * Unencrypted repositories name blobs by the SHA-256 of their plain content; encrypted ones by
 * HMAC-SHA256 under the key file's digest key (key-file.ts), as PBS does, so equal content still
 * deduplicates but a digest says nothing about the content to whoever lacks the key.
 */
import crypto from 'node:crypto';

export const DIGEST_BYTES = 32;
export const ZERO_DIGEST = '0'.repeat(DIGEST_BYTES * 2);

export function sha256Hex(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** The digest function of a repository: SHA-256, or HMAC-SHA256 under `idKey` when encrypted. */
export function blobDigestHex(data: Buffer, idKey: Buffer | null): string {
  return idKey ? crypto.createHmac('sha256', idKey).update(data).digest('hex') : sha256Hex(data);
}

export function isDigest(s: unknown): boolean {
  return typeof s === 'string' && /^[0-9a-f]{64}$/.test(s);
}

const ZEROES = Buffer.alloc(4 * 1024 * 1024);

/** True when every byte is zero (memcmp against a shared zero buffer, in 4 MiB steps). */
export function isAllZero(data: Buffer): boolean {
  for (let o = 0; o < data.length; o += ZEROES.length) {
    const n = Math.min(ZEROES.length, data.length - o);
    if (!data.subarray(o, o + n).equals(ZEROES.subarray(0, n))) return false;
  }
  return true;
}
