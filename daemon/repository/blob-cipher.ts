/**
 * AES-256-GCM of one blob's payload, for encrypted repositories (the byte layout is in
 * file-formats.ts): compress-then-encrypt, so `seal` gets the payload as it would be stored
 * unencrypted (raw or lz4) and returns nonce (12 random bytes) | ciphertext | tag (16 bytes).
 * The AAD is the blob header without its CRC field (bytes 0..12 and 16..20: magic, flags, payload
 * length, plain length), so a header edited to another kind, compression or length fails the tag.
 * The CRC (over the stored payload) is computed after sealing, which is why it is left out.
 *
 * A random 96-bit nonce per blob: the same key seals at most one blob per chunk written, far below
 * the 2^32 messages NIST SP 800-38D allows for random nonces under one key.
 *
 * Self-contained (only their arguments, literals and built-in modules): the blob workers run their
 * source text (blob-workers.ts), as they do with the codec of file-formats.ts. 20 = the header size,
 * 28 = nonce + tag (`CIPHER_OVERHEAD`).
 */
/** Bytes encryption adds to a payload: nonce + tag. */
export const CIPHER_OVERHEAD = 28;

export function sealBlobPayload(header: Buffer, payload: Buffer, key: Buffer): Buffer {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.concat([header.subarray(0, 12), header.subarray(16, 20)]));
  const body = c.update(payload);
  const tail = c.final();
  return Buffer.concat([nonce, body, tail, c.getAuthTag()]);
}

/** The payload as sealed, or null when the tag does not match (tampered, or another key). */
export function openBlobPayload(header: Buffer, sealed: Buffer, key: Buffer): Buffer | null {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const crypto = require('node:crypto') as typeof import('node:crypto');
  if (sealed.length < 28) return null;
  const d = crypto.createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  d.setAAD(Buffer.concat([header.subarray(0, 12), header.subarray(16, 20)]));
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  try {
    const body = d.update(sealed.subarray(12, sealed.length - 16));
    const tail = d.final();
    return tail.length ? Buffer.concat([body, tail]) : body;
  } catch {
    return null;
  }
}

/** What the codec needs to encrypt and decrypt (null in an unencrypted repository). */
export interface BlobCipher {
  key: Buffer;
  seal: typeof sealBlobPayload;
  open: typeof openBlobPayload;
}

export function blobCipher(key: Buffer | null | undefined): BlobCipher | null {
  return key ? { key, seal: sealBlobPayload, open: openBlobPayload } : null;
}
