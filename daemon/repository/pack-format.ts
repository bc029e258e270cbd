/**
 * Repository format 2: where blobs live (pack files) and the rules that keep them safe.
 *
 * Layout (beside format 1's `.locks/ .bad/ vm/ .handoff/`, which are unchanged):
 *   .packs/<2 hex>/<packId>.pack   many blobs back to back (packId: 32 lowercase hex, 128 random
 *                                  bits; the shard is its first 2 hex digits)
 *   .packs/<2 hex>/<packId>.idx    the pack's index (pack-index-file.ts): what the pack holds
 *
 * Pack file (frozen once sealed; do not modify the magic, files on disk depend on it):
 *   offset  size  field
 *   0       8     magic: the first 8 bytes of SHA-256("pve-cbt pack v2"), as a literal below
 *   8       4     version, u32 LE = 2
 *   12      4     reserved, u32 LE = 0
 *   16      ...   blobs, each exactly a format-1 blob (file-formats.ts: 20-byte header + payload)
 * No trailer: the .idx is the truth of what the pack holds. Bytes not listed in it are dead (a
 * duplicate a worker wrote speculatively, or the tail a crash left).
 *
 * Writing (pack-store.ts, blob-workers.ts): one open pack per blob worker per backup writer
 * (a "pack session"), appended with sequential write(2) and no lock between threads: a worker
 * owns its file. A pack is sealed at PACK_SEAL_BYTES and at commit: the worker fsyncs the pack
 * and its folder, then the main thread writes the .idx with `storage.writeAtomic` (temporary
 * file, fsync, rename, folder fsync). The manifest is written only after every .idx of the session
 * is durable, so a manifest references only packs that are durable.
 *
 * Crash rules:
 * - A .pack without .idx does not exist for readers, dedup or GC's mark; GC removes it once older
 *   than its cutoff (kill -9 of a writer leaves exactly that).
 * - A truncated .pack with an .idx cannot exist: the .idx is written after the pack's fsync.
 * - A .idx that fails its SHA-256 trailer is corrupt: verify reports it, GC refuses to sweep.
 *
 * Locking: none on packs. Writers never modify a sealed pack; GC deletes a whole pack only (its
 * .idx first, then the .pack) under the per-pack mtime rule: a writer relying on a blob of pack P
 * (a dedup hit) sets P's .idx mtime to now once per session before its commit, and GC removes a
 * pack with no live entry only if its .idx is older than the cutoff, re-checking the mtime after
 * renaming the .idx aside (garbage-collect.ts, repack-plan.ts).
 *
 * Object storage (the S3 backend) plugs in where the local files are used: a sealed pack is one
 * whole object (put once, after the seal: `packKeyOf`), a blob read is a range get of
 * (packKeyOf(id), offset, storedLength), the .idx is an ordinary `writeAtomic` object.
 */
import crypto from 'node:crypto';

export const PACKS_DIR = '.packs';
/** First 8 bytes of SHA-256("pve-cbt pack v2"). */
export const PACK_MAGIC_V2 = Buffer.from([127, 58, 87, 56, 80, 68, 139, 28]);
export const PACK_VERSION = 2;
export const PACK_HEADER_SIZE = 16;
/** A worker seals its pack once it holds this much (design target 16–64 MiB). */
export const PACK_SEAL_BYTES = 32 * 1024 * 1024;

/** The 16-byte header every pack starts with. */
export function packHeader(): Buffer {
  const h = Buffer.alloc(PACK_HEADER_SIZE);
  PACK_MAGIC_V2.copy(h, 0);
  h.writeUInt32LE(PACK_VERSION, 8);
  return h;
}

export function isPackHeader(h: Buffer): boolean {
  return h.length >= PACK_HEADER_SIZE && h.subarray(0, 8).equals(PACK_MAGIC_V2) && h.readUInt32LE(8) === PACK_VERSION;
}

export function isPackId(s: string): boolean {
  return /^[0-9a-f]{32}$/.test(s);
}

export function newPackId(): string {
  return crypto.randomBytes(16).toString('hex');
}

export function packShardOf(packId: string): string {
  return packId.slice(0, 2);
}

export function packKeyOf(packId: string): string {
  return `${PACKS_DIR}/${packShardOf(packId)}/${packId}.pack`;
}

export function packIndexKeyOf(packId: string): string {
  return `${PACKS_DIR}/${packShardOf(packId)}/${packId}.idx`;
}
