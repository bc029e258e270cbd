/**
 * Test helpers: the stored bytes of one blob, whatever the repository's format, so that the
 * corruption tests damage exactly that blob. Format 1: its own file. Format 2: its bytes inside
 * its pack, found through the repository's lookup (pack-lookup.ts); "deleting" it rewrites the
 * pack's .idx without its entry (a missing blob), "truncating" it shortens the pack file when the
 * blob is the pack's last, else zeroes its tail (the reader's length check sees both).
 */
import fs from 'node:fs';
import path from 'node:path';
import { shardOf } from '../../../daemon/repository/chunk-store';
import type { Repository } from '../../../daemon/repository/repository';
import { PackStore } from '../../../daemon/repository/pack-store';
import { packIndexKeyOf, packKeyOf } from '../../../daemon/repository/pack-format';
import { encodePackIndex } from '../../../daemon/repository/pack-index-file';
import type { BlobKind } from '../../../daemon/repository/file-formats';

export interface BlobPlace {
  file: string;
  offset: number;
  length: number;
  packId: string | null;
}

export async function blobPlace(repo: Repository, kind: BlobKind, digest: string): Promise<BlobPlace> {
  if (!(repo.blobs instanceof PackStore)) {
    const file = path.join(repo.dir, kind === 'chunk' ? '.chunks' : '.pages', shardOf(digest), digest);
    return { file, offset: 0, length: fs.statSync(file).size, packId: null };
  }
  await repo.blobs.lookup.refresh();
  const loc = (await repo.blobs.lookup.all(digest))[0];
  if (!loc) throw new Error(`${kind} ${digest} is in no pack`);
  return { file: path.join(repo.dir, packKeyOf(loc.packId)), offset: loc.offset, length: loc.storedLength, packId: loc.packId };
}

export async function readBlob(repo: Repository, kind: BlobKind, digest: string): Promise<Buffer> {
  const p = await blobPlace(repo, kind, digest);
  const fd = fs.openSync(p.file, 'r');
  try {
    const b = Buffer.alloc(p.length);
    fs.readSync(fd, b, 0, p.length, p.offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

/** Overwrites the blob's bytes in place (same length). */
export async function writeBlobInPlace(repo: Repository, kind: BlobKind, digest: string, bytes: Buffer): Promise<void> {
  const p = await blobPlace(repo, kind, digest);
  if (bytes.length !== p.length) throw new Error(`in place: ${bytes.length} bytes for a blob of ${p.length}`);
  const fd = fs.openSync(p.file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, p.offset);
  } finally {
    fs.closeSync(fd);
  }
}

/** XORs the byte `fromEnd` bytes before the blob's end (and any `more` offsets from its start). */
export async function flipBlobByte(repo: Repository, kind: BlobKind, digest: string, fromEnd = 100, mask = 0x01, more: number[] = []): Promise<Buffer> {
  const bytes = await readBlob(repo, kind, digest);
  bytes[bytes.length - fromEnd] ^= mask;
  for (const o of more) bytes[o] ^= 0x55;
  await writeBlobInPlace(repo, kind, digest, bytes);
  return bytes;
}

/** Makes the blob missing: format 1 removes its file, format 2 its entry from the pack's .idx. */
export async function deleteBlob(repo: Repository, kind: BlobKind, digest: string): Promise<void> {
  const p = await blobPlace(repo, kind, digest);
  if (!p.packId || !(repo.blobs instanceof PackStore)) return fs.unlinkSync(p.file);
  const entries = repo.blobs.lookup.packEntries(p.packId).filter((e) => e.digest.toString('hex') !== digest);
  fs.writeFileSync(path.join(repo.dir, packIndexKeyOf(p.packId)), encodePackIndex(entries));
  repo.blobs.lookup.removePack(p.packId);
  await repo.blobs.lookup.refresh();
}

/** Keeps only the first `keep` bytes of the blob (format 2: the rest zeroed, or the pack cut when it is the last blob). */
export async function truncateBlob(repo: Repository, kind: BlobKind, digest: string, keep: number): Promise<void> {
  const p = await blobPlace(repo, kind, digest);
  if (!p.packId) return fs.truncateSync(p.file, keep);
  if (fs.statSync(p.file).size === p.offset + p.length) return fs.truncateSync(p.file, p.offset + keep);
  const fd = fs.openSync(p.file, 'r+');
  try {
    fs.writeSync(fd, Buffer.alloc(p.length - keep), 0, p.length - keep, p.offset + keep);
  } finally {
    fs.closeSync(fd);
  }
}

/** Replaces the blob's stored form with `bytes` (format 2: in place, padded with zeros or cut to its length). */
export async function replaceBlob(repo: Repository, kind: BlobKind, digest: string, bytes: Buffer): Promise<void> {
  const p = await blobPlace(repo, kind, digest);
  if (!p.packId) return fs.writeFileSync(p.file, bytes);
  const padded = Buffer.alloc(p.length);
  bytes.copy(padded, 0, 0, Math.min(bytes.length, p.length));
  await writeBlobInPlace(repo, kind, digest, padded);
}

/** Number of chunk (or page) blobs stored: format 1 files, format 2 pack index entries. */
export async function countBlobs(repo: Repository, kind: BlobKind): Promise<number> {
  if (!(repo.blobs instanceof PackStore)) {
    const d = path.join(repo.dir, kind === 'chunk' ? '.chunks' : '.pages');
    return fs.readdirSync(d).reduce((n, s) => n + fs.readdirSync(path.join(d, s)).length, 0);
  }
  const lookup = repo.blobs.lookup;
  await lookup.refresh();
  return lookup.packIds().reduce((n, id) => n + lookup.packEntries(id).filter((e) => e.kind === kind).length, 0);
}
