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
 * On object storage (S3, remote-packs.ts) the same steps go through the storage methods: the live
 * blobs are fetched with ranged GETs, adjacent ones in one run (`planRuns`), and the new packs are
 * staged locally and uploaded before their .idx (raw-pack-writer.ts); the deletions are the same
 * storage calls (rename aside, stat, remove), so the same grace rule holds.
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
import { planRuns, remotePacksOf, type RemotePacks } from './remote-packs';
import type { PackEntryRef } from './repack-plan';
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
  const remote = remotePacksOf(storage);
  const localPath = storage.localPath?.bind(storage);
  if (!localPath && !remote) throw RepoStorageNotLocalError({ root: storage.root, key: packKeyOf(repack[0].packId) });
  const writer = new RawPackWriter(storage, { sealBytes: opts.sealBytes });
  try {
    for (let i = 0; i < repack.length; i++) {
      const d = repack[i];
      opts.onProgress?.(i, repack.length, 'repack copy');
      const source = localPath ? await openLocalPack(localPath(packKeyOf(d.packId))) : remotePack(remote!, packKeyOf(d.packId));
      const refused = source ? await copyPack(source, d, writer, result) : { packId: d.packId, offset: 0, digest: '', reason: 'pack file missing' };
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

/** Reads the stored bytes of a pack's live blobs, in the order it chooses; `null` for a blob: pack gone. */
interface PackSource {
  blobs(live: readonly PackEntryRef[]): AsyncIterable<{ e: PackEntryRef; stored: Buffer | null }>;
  close(): Promise<void>;
}

async function openLocalPack(file: string): Promise<PackSource | null> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return null;
  }
  return {
    async *blobs(live) {
      for (const e of live) {
        const stored = Buffer.allocUnsafe(e.storedLength);
        const { bytesRead } = await fh.read(stored, 0, e.storedLength, e.offset);
        yield { e, stored: stored.subarray(0, bytesRead) };
      }
    },
    close: () => fh.close(),
  };
}

/** A pack object read with one ranged GET per run of adjacent live blobs (remote-packs.ts planRuns). */
function remotePack(remote: RemotePacks, key: string): PackSource {
  return {
    async *blobs(live) {
      const runs = planRuns(live.map((e) => ({ offset: e.offset, length: e.storedLength, e })));
      for (const run of runs) {
        const buf = await remote.readRange(key, run.start, run.end - run.start);
        for (const it of run.items) {
          if (!buf) yield { e: it.e, stored: null };
          else yield { e: it.e, stored: buf.subarray(Math.min(buf.length, it.offset - run.start), Math.min(buf.length, it.offset - run.start + it.length)) };
        }
      }
    },
    close: async () => undefined,
  };
}

async function copyPack(source: PackSource, d: PackDecision, writer: RawPackWriter, result: RepackCopyResult): Promise<RepackCopyResult['refused'][number] | null> {
  try {
    for await (const { e, stored } of source.blobs(d.live)) {
      if (!stored) return { packId: d.packId, offset: 0, digest: '', reason: 'pack file missing' };
      const plain = stored.length === e.storedLength ? decodeBlobSync(stored, magicOf(e.kind), true, lz4) : `truncated: ${stored.length} of ${e.storedLength} bytes`;
      const reason = typeof plain === 'string' ? plain : sha256Hex(plain) !== e.digest ? 'content does not match its digest' : null;
      if (reason || typeof plain === 'string') return { packId: d.packId, offset: e.offset, digest: e.digest, reason: reason ?? 'unreadable' };
      const sealed = await writer.append(e.digest, e.kind, plain.length, stored);
      if (sealed) result.sealed.push(sealed);
      result.blobsCopied++;
      result.bytesCopied += stored.length;
    }
    return null;
  } finally {
    await source.close();
  }
}
