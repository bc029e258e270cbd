/**
 * The index of one pack, `<packId>.idx` (pack-format.ts): pure encode and decode.
 *
 *   offset  size  field
 *   0       8     magic: the first 8 bytes of SHA-256("pve-cbt pack index v2"), as a literal below
 *   8       4     version, u32 LE = 2
 *   12      4     entry count n, u32 LE
 *   16      52*n  entries sorted by digest (bytewise), each:
 *                   digest 32 | offset u64 LE | stored length u32 LE (header + payload) |
 *                   plain length u32 LE | kind u8 (0 chunk, 1 page) | 3 bytes 0
 *   16+52n  32    SHA-256 of everything before it
 * Frozen: do not modify the magic or the layout, files on disk depend on them. A file that fails
 * any check is corrupt (`decodePackIndex` answers the reason instead of throwing).
 *
 * `entriesOf` returns the entry section as is (a Buffer view): the lookup (pack-lookup.ts) keeps
 * that compact form in memory and reads fields with the `entry*` accessors.
 */
import crypto from 'node:crypto';
import type { BlobKind } from './file-formats';

export const PACK_INDEX_MAGIC_V2 = Buffer.from([56, 179, 115, 36, 111, 215, 163, 68]);
export const PACK_INDEX_VERSION = 2;
export const PACK_INDEX_HEADER_SIZE = 16;
export const PACK_INDEX_ENTRY_SIZE = 52;
export const PACK_INDEX_TRAILER_SIZE = 32;

export interface PackIndexEntry {
  /** 32 bytes. */
  digest: Buffer;
  offset: number;
  storedLength: number;
  plainLength: number;
  kind: BlobKind;
}

const KINDS: readonly BlobKind[] = ['chunk', 'page'];

/** Encodes entries (any order; sorted here by digest). Duplicate digests and bad fields throw RangeError (a bug). */
export function encodePackIndex(entries: readonly PackIndexEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => Buffer.compare(a.digest, b.digest));
  const out = Buffer.alloc(PACK_INDEX_HEADER_SIZE + sorted.length * PACK_INDEX_ENTRY_SIZE + PACK_INDEX_TRAILER_SIZE);
  PACK_INDEX_MAGIC_V2.copy(out, 0);
  out.writeUInt32LE(PACK_INDEX_VERSION, 8);
  out.writeUInt32LE(sorted.length, 12);
  sorted.forEach((e, i) => {
    if (e.digest.length !== 32) throw new RangeError(`pack index entry ${i}: digest of ${e.digest.length} bytes`);
    if (i > 0 && sorted[i - 1].digest.equals(e.digest)) throw new RangeError(`pack index: digest ${e.digest.toString('hex')} twice`);
    const o = PACK_INDEX_HEADER_SIZE + i * PACK_INDEX_ENTRY_SIZE;
    e.digest.copy(out, o);
    out.writeBigUInt64LE(BigInt(e.offset), o + 32);
    out.writeUInt32LE(e.storedLength, o + 40);
    out.writeUInt32LE(e.plainLength, o + 44);
    out.writeUInt8(KINDS.indexOf(e.kind), o + 48);
  });
  crypto.createHash('sha256').update(out.subarray(0, out.length - PACK_INDEX_TRAILER_SIZE)).digest().copy(out, out.length - PACK_INDEX_TRAILER_SIZE);
  return out;
}

/**
 * Checks a .idx file and returns its entry section (a view of `data`, entries sorted by digest),
 * or the reason it is corrupt.
 */
export function decodePackIndex(data: Buffer): { entries: Buffer; count: number } | { corrupt: string } {
  const min = PACK_INDEX_HEADER_SIZE + PACK_INDEX_TRAILER_SIZE;
  if (data.length < min) return { corrupt: `truncated: ${data.length} bytes` };
  if (!data.subarray(0, 8).equals(PACK_INDEX_MAGIC_V2)) return { corrupt: 'bad magic' };
  const version = data.readUInt32LE(8);
  if (version !== PACK_INDEX_VERSION) return { corrupt: `unknown version ${version}` };
  const count = data.readUInt32LE(12);
  if (data.length !== min + count * PACK_INDEX_ENTRY_SIZE) return { corrupt: `length ${data.length} for ${count} entries` };
  const body = data.subarray(0, data.length - PACK_INDEX_TRAILER_SIZE);
  if (!crypto.createHash('sha256').update(body).digest().equals(data.subarray(data.length - PACK_INDEX_TRAILER_SIZE))) return { corrupt: 'checksum mismatch' };
  const entries = data.subarray(PACK_INDEX_HEADER_SIZE, PACK_INDEX_HEADER_SIZE + count * PACK_INDEX_ENTRY_SIZE);
  for (let i = 0; i < count; i++) {
    const o = i * PACK_INDEX_ENTRY_SIZE;
    if (i > 0 && Buffer.compare(entries.subarray(o - PACK_INDEX_ENTRY_SIZE, o - PACK_INDEX_ENTRY_SIZE + 32), entries.subarray(o, o + 32)) >= 0) {
      return { corrupt: `entry ${i} out of order` };
    }
    if (entries.readUInt8(o + 48) > 1) return { corrupt: `entry ${i}: unknown kind ${entries.readUInt8(o + 48)}` };
  }
  return { entries, count };
}

export function entryDigest(entries: Buffer, i: number): Buffer {
  const o = i * PACK_INDEX_ENTRY_SIZE;
  return entries.subarray(o, o + 32);
}

export function entryAt(entries: Buffer, i: number): PackIndexEntry {
  const o = i * PACK_INDEX_ENTRY_SIZE;
  return {
    digest: entries.subarray(o, o + 32),
    offset: Number(entries.readBigUInt64LE(o + 32)),
    storedLength: entries.readUInt32LE(o + 40),
    plainLength: entries.readUInt32LE(o + 44),
    kind: KINDS[entries.readUInt8(o + 48)],
  };
}

/** Entry number of `digest` in a sorted entry section, or -1 (binary search). */
export function findEntry(entries: Buffer, count: number, digest: Buffer): number {
  let lo = 0;
  let hi = count - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = Buffer.compare(entryDigest(entries, mid), digest);
    if (c === 0) return mid;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}
