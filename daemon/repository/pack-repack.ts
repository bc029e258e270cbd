/**
 * GC's repack (format 2): the live blobs of packs that repack-plan.ts found sparse are copied, as
 * stored (raw, not re-encoded), into new packs (raw-pack-writer.ts), and those are sealed: fsync of
 * the pack, then its .idx written atomically. Only after that does garbage-collect.ts delete the
 * old packs, under the same per-pack rule as dead ones (rename the .idx aside, re-stat: touched
 * since the cutoff → put back; else the .idx, then the .pack, are removed).
 *
 * Crash rules (kill -9 at any point loses nothing a manifest references):
 * - during the copy: the new pack has no .idx, so it does not exist; the old packs are untouched.
 *   The next GC removes the unsealed pack once older than its cutoff, and repacks again.
 * - after the seal, before or during the deletions: the blobs exist twice (old and new pack),
 *   which readers allow; the next GC finds the old pack's entries canonical in the new pack (it is
 *   dense) and deletes the old one as dead.
 * - between renaming an old .idx aside and removing it: the next GC puts the .idx back and
 *   decides again (garbage-collect.ts).
 * Safe while backups run: a writer that relies on a blob of an old pack touches that pack's .idx,
 * so the deletion's re-stat keeps it; new packs are younger than any cutoff of this run.
 *
 * Every copied blob is checked first (CRC, lz4, length, SHA-256 of the content, as verify does):
 * a damaged live blob is not copied and its pack is not deleted ('refused', reported), so a repack
 * never turns a damaged copy into a missing one, nor copies damage on.
 */
import fsp from 'node:fs/promises';
import lz4 from 'lz4-napi';
import type { Logger } from 'winston';
import type { RepositoryStorage } from './storage';
import { decodeBlobSync, magicOf } from './file-formats';
import { sha256Hex } from './digest';
import { packKeyOf } from './pack-format';
import { RawPackWriter, type SealedPack } from './raw-pack-writer';
import type { PackDecision } from './repack-plan';
import { RepoStorageNotLocalError } from './repository-errors';
import type { ProgressFn } from './verify';

export interface RepackCopyResult {
  /** New packs, sealed. */
  sealed: SealedPack[];
  /** Old packs whose live blobs are all in sealed new packs: to be deleted under the grace rule. */
  copied: string[];
  /** Old packs kept because a live blob could not be read intact. */
  refused: { packId: string; offset: number; digest: string; reason: string }[];
  blobsCopied: number;
  bytesCopied: number;
}

export async function copyLiveBlobs(
  storage: RepositoryStorage,
  repack: readonly PackDecision[],
  opts: { sealBytes?: number; onProgress?: ProgressFn; logger?: Logger } = {},
): Promise<RepackCopyResult> {
  const result: RepackCopyResult = { sealed: [], copied: [], refused: [], blobsCopied: 0, bytesCopied: 0 };
  if (!repack.length) return result;
  if (!storage.localPath) throw RepoStorageNotLocalError({ root: storage.root, key: packKeyOf(repack[0].packId) });
  const writer = new RawPackWriter(storage, { sealBytes: opts.sealBytes });
  try {
    for (let i = 0; i < repack.length; i++) {
      const d = repack[i];
      opts.onProgress?.(i, repack.length, 'repack copy');
      const refused = await copyPack(storage.localPath(packKeyOf(d.packId)), d, writer, result);
      if (refused) {
        result.refused.push(refused);
        opts.logger?.warn('gc repack: pack kept, a live blob is damaged', refused);
      } else result.copied.push(d.packId);
    }
    opts.onProgress?.(repack.length, repack.length, 'repack copy');
    const last = await writer.seal();
    if (last) result.sealed.push(last);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  opts.onProgress?.(result.sealed.length, result.sealed.length, 'repack sealed');
  return result;
}

async function copyPack(file: string, d: PackDecision, writer: RawPackWriter, result: RepackCopyResult): Promise<RepackCopyResult['refused'][number] | null> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return { packId: d.packId, offset: 0, digest: '', reason: 'pack file missing' };
  }
  try {
    for (const e of d.live) {
      const stored = Buffer.allocUnsafe(e.storedLength);
      const { bytesRead } = await fh.read(stored, 0, e.storedLength, e.offset);
      const plain = bytesRead === e.storedLength ? decodeBlobSync(stored, magicOf(e.kind), true, lz4) : `truncated: ${bytesRead} of ${e.storedLength} bytes`;
      const reason = typeof plain === 'string' ? plain : sha256Hex(plain) !== e.digest ? 'content does not match its digest' : null;
      if (reason || typeof plain === 'string') return { packId: d.packId, offset: e.offset, digest: e.digest, reason: reason ?? 'unreadable' };
      const sealed = await writer.append(e.digest, e.kind, plain.length, stored);
      if (sealed) result.sealed.push(sealed);
      result.blobsCopied++;
      result.bytesCopied += stored.length;
    }
    return null;
  } finally {
    await fh.close();
  }
}
