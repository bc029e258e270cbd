/**
 * Writes packs from blobs that are already encoded (stored bytes: a format-1 blob, header and
 * payload), for the two maintenance jobs that move blobs without re-encoding them: GC's repack
 * (pack-repack.ts) and the format 1 → 2 upgrade (upgrade-repository.ts). Backups write packs on
 * the blob workers instead (pack-worker.ts); the file format and the seal rule are the same
 * (pack-format.ts):
 * - a new pack is created under `.packs/<2 hex>/<packId>.pack` with its 16-byte header, blobs are
 *   appended with positional writes, no fsync while filling;
 * - `seal`: fsync of the pack and its folder, then the .idx through `storage.writeAtomic`
 *   (temporary file, fsync, rename, folder fsync). Only once `seal` returns does the pack exist
 *   for readers; what a caller records or deletes on the strength of it comes after.
 * - `abort` (or a crash) leaves an unsealed .pack without .idx: nothing reads it; GC removes it
 *   once older than its cutoff, the upgrade when it resumes.
 * - on object storage (remote-packs.ts: S3) the pack is filled in this process's staging folder, as
 *   a backup's are, and `seal` uploads it as one object at its key BEFORE the .idx is PUT, so an
 *   .idx never names a pack object that is not there; the staged file goes either way (a pack
 *   object without .idx, after a failed .idx PUT, is GC's once older than its cutoff).
 * A digest goes into one pack at most once (the .idx cannot list it twice): a second append of a
 * digest the open pack holds seals the pack first.
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { RepositoryStorage } from './storage';
import { FILE_MODE } from './storage';
import type { BlobKind } from './file-formats';
import { PACK_HEADER_SIZE, PACK_SEAL_BYTES, newPackId, packHeader, packIndexKeyOf, packKeyOf } from './pack-format';
import { encodePackIndex, type PackIndexEntry } from './pack-index-file';
import { RepoStorageNotLocalError, noSpaceOr } from './repository-errors';
import { remotePacksOf, type RemotePacks } from './remote-packs';

/** A pack is never made larger than this by a maintenance job (design: 16–64 MiB). */
export const RAW_PACK_MAX_BYTES = 64 * 1024 * 1024;

export interface SealedPack {
  packId: string;
  entries: PackIndexEntry[];
  /** Size of the .pack file. */
  bytes: number;
}

interface OpenRawPack {
  packId: string;
  file: string;
  fh: fsp.FileHandle;
  size: number;
  entries: PackIndexEntry[];
  digests: Set<string>;
}

export class RawPackWriter {
  private open: OpenRawPack | null = null;
  private readonly remote: RemotePacks | null;

  constructor(
    private readonly storage: RepositoryStorage,
    private readonly opts: { sealBytes?: number; maxBytes?: number } = {},
  ) {
    this.remote = remotePacksOf(storage);
  }

  /** Bytes of the open pack (header included), 0 when none is open. */
  get bytes(): number {
    return this.open?.size ?? 0;
  }

  get packId(): string | null {
    return this.open?.packId ?? null;
  }

  /** Whether the open pack should be sealed before a blob of `nextBytes` (or `digest`) joins it. */
  full(nextBytes: number, digest?: string): boolean {
    const p = this.open;
    if (!p || p.size <= PACK_HEADER_SIZE) return false;
    if (digest !== undefined && p.digests.has(digest)) return true;
    return p.size >= (this.opts.sealBytes ?? PACK_SEAL_BYTES) || p.size + nextBytes > (this.opts.maxBytes ?? RAW_PACK_MAX_BYTES);
  }

  /**
   * Appends one stored blob; seals the open pack first when it is full or already holds the
   * digest, and answers the pack sealed that way (null if none).
   */
  async append(digest: string, kind: BlobKind, plainLength: number, stored: Buffer): Promise<SealedPack | null> {
    const sealed = this.full(stored.length, digest) ? await this.seal() : null;
    const p = this.open ?? (this.open = await this.create());
    try {
      for (let o = 0; o < stored.length; ) {
        const { bytesWritten } = await p.fh.write(stored, o, stored.length - o, p.size + o);
        if (bytesWritten === 0) throw Object.assign(new Error('write to a pack returned 0 bytes'), { code: 'EIO' });
        o += bytesWritten;
      }
    } catch (err) {
      throw noSpaceOr(err, p.file);
    }
    p.entries.push({ digest: Buffer.from(digest, 'hex'), offset: p.size, storedLength: stored.length, plainLength, kind });
    p.digests.add(digest);
    p.size += stored.length;
    return sealed;
  }

  /** Opens a pack if none is open (a pack may be sealed empty: the upgrade records a range of skipped blobs so). */
  async begin(): Promise<void> {
    this.open ??= await this.create();
  }

  /** Makes the open pack durable and visible (see the module header); null when none is open. */
  async seal(): Promise<SealedPack | null> {
    const p = this.open;
    if (!p) return null;
    this.open = null;
    try {
      try {
        await p.fh.sync();
      } finally {
        await p.fh.close();
      }
      await syncDir(path.dirname(p.file));
    } catch (err) {
      throw noSpaceOr(err, p.file);
    }
    if (this.remote) {
      try {
        await this.remote.upload(packKeyOf(p.packId), p.file);
        await this.storage.writeAtomic(packIndexKeyOf(p.packId), encodePackIndex(p.entries));
      } finally {
        await fsp.rm(p.file, { force: true });
      }
    } else {
      await this.storage.writeAtomic(packIndexKeyOf(p.packId), encodePackIndex(p.entries));
    }
    return { packId: p.packId, entries: p.entries, bytes: p.size };
  }

  /** Drops the open pack (closed and deleted, never sealed). */
  async abort(): Promise<void> {
    const p = this.open;
    if (!p) return;
    this.open = null;
    await p.fh.close().catch(() => undefined);
    await fsp.rm(p.file, { force: true });
  }

  private async create(): Promise<OpenRawPack> {
    const packId = newPackId();
    const key = packKeyOf(packId);
    let file: string;
    if (this.storage.localPath) {
      file = this.storage.localPath(key);
      await this.storage.mkdir(path.posix.dirname(key));
    } else if (this.remote) {
      file = path.join(this.remote.stagingDir(), packId.slice(0, 2), `${packId}.pack`);
      await fsp.mkdir(path.dirname(file), { recursive: true });
    } else {
      throw RepoStorageNotLocalError({ root: this.storage.root, key });
    }
    let fh: fsp.FileHandle;
    try {
      fh = await fsp.open(file, 'wx', FILE_MODE);
    } catch (err) {
      throw noSpaceOr(err, file);
    }
    try {
      await fh.write(packHeader(), 0, PACK_HEADER_SIZE, 0);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await fsp.rm(file, { force: true });
      throw noSpaceOr(err, file);
    }
    return { packId, file, fh, size: PACK_HEADER_SIZE, entries: [], digests: new Set() };
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
