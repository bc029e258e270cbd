/**
 * One backup being written: `vm/<vmid>/<time>/` without a manifest until `commit`.
 *
 * The writer holds the VM's lock (`.locks/vm-<vmid>.lock`) from start to commit/abort; the lock
 * also tells GC when the writer started and which backups it cloned from (see repository-lock.ts).
 * `commit` makes every chunk and page written durable (format 1: file and folder fsyncs; format 2:
 * every pack of the session sealed and its .idx written, blob-store.ts), then writes the manifest
 * atomically: only then does the backup exist. It never commits a manifest that references a blob
 * found damaged or unreadable in this run and not rewritten since (CBT_REPO_DAMAGED_REFERENCE). `abort` removes the folder; a writer that dies
 * leaves the same kind of manifest-less folder, which GC removes once the VM's lock is stale.
 */
import type { Logger } from 'winston';
import type { RepositoryStorage } from './storage';
import type { BlobSession, BlobStore } from './blob-store';
import type { BadBlobRegistry } from './bad-blobs';
import type { LockHandle, RepositoryLocks } from './repository-lock';
import type { BlobWorkers } from './blob-workers';
import { IndexDiskWriter, type DiskWriter, type DiskWriterContext } from './disk-writer';
import { MANIFEST_FORMAT, sealManifest, serializeManifest, type Manifest, type SavedVmConfig } from './manifest';
import { isValidChunkSize } from './disk-index';
import { RepoDamagedReferenceError, RepoDiskNotFoundError, RepoInvalidArgumentError, RepoWriterStateError } from './repository-errors';

export interface OpenDiskOptions {
  /** qdev name, e.g. 'scsi0', 'efidisk0'. */
  name: string;
  /** Image format of the source ('qcow2', 'raw', 'vmdk'), recorded for restore. */
  format: string;
  size: number;
  /** Multiple of 64 KiB and a power of two; default: the base's, else the repository default. */
  chunkSize?: number;
  base?: { backupId: string; disk: string };
}

export interface BackupWriter {
  readonly id: string;
  readonly vmid: number;
  readonly time: Date;
  openDisk(opts: OpenDiskOptions): Promise<DiskWriter>;
  /** `config`: the VM's config at backup time, kept in the manifest. */
  commit(extra?: Record<string, unknown>, config?: SavedVmConfig): Promise<Manifest>;
  abort(): Promise<void>;
}

export interface BackupWriterDeps {
  storage: RepositoryStorage;
  chunks: BlobStore;
  pages: BlobStore;
  /** A new write session of the repository's blob stores (blob-store.ts). */
  openSession(): BlobSession;
  workers: BlobWorkers;
  badRegistry: BadBlobRegistry;
  locks: RepositoryLocks;
  toolVersion: string;
  defaultChunkSize: number;
  logger?: Logger;
  readManifest(backupId: string): Promise<Manifest>;
  onCommit(m: Manifest): void;
}

const DISK_NAME_RE = /^[a-z][a-z0-9_-]{0,63}$/i;

export class RepositoryBackupWriter implements BackupWriter {
  private readonly disks = new Map<string, IndexDiskWriter>();
  private state: 'open' | 'committing' | 'committed' | 'aborted' = 'open';
  private readonly ctx: DiskWriterContext;

  constructor(
    private readonly deps: BackupWriterDeps,
    readonly id: string,
    readonly vmid: number,
    readonly time: Date,
    private readonly parent: string | null,
    private readonly lock: LockHandle,
    bad: { chunks: Set<string>; pages: Set<string> },
  ) {
    this.ctx = { backupId: id, chunks: deps.chunks, pages: deps.pages, workers: deps.workers, bad, damaged: { chunks: new Set(), pages: new Set() }, repaired: [], session: deps.openSession(), logger: deps.logger };
  }

  private get dirKey(): string {
    return this.id;
  }

  async openDisk(opts: OpenDiskOptions): Promise<DiskWriter> {
    this.checkOpen();
    if (!DISK_NAME_RE.test(opts.name)) throw RepoInvalidArgumentError({ what: 'disk name', value: opts.name, hint: 'like scsi0' });
    if (this.disks.has(opts.name)) throw RepoInvalidArgumentError({ what: 'disk name', value: opts.name, hint: 'opened twice' });
    if (!Number.isSafeInteger(opts.size) || opts.size < 0) {
      throw RepoInvalidArgumentError({ what: 'disk size', value: opts.size, hint: 'a non-negative integer' });
    }
    if (opts.chunkSize !== undefined && !isValidChunkSize(opts.chunkSize)) {
      throw RepoInvalidArgumentError({ what: 'chunk size', value: opts.chunkSize, hint: 'a power of two, 64 KiB to 16 MiB' });
    }
    let base: { backupId: string; disk: string; entry: Manifest['disks'][number] } | null = null;
    if (opts.base) {
      const bases = this.lock.info.bases ?? [];
      if (!bases.includes(opts.base.backupId)) await this.deps.locks.update(this.lock, { bases: [...bases, opts.base.backupId] });
      const m = await this.deps.readManifest(opts.base.backupId);
      const entry = m.disks.find((d) => d.name === opts.base?.disk);
      if (!entry) throw RepoDiskNotFoundError({ backupId: opts.base.backupId, disk: opts.base.disk });
      base = { ...opts.base, entry };
    }
    const w = await IndexDiskWriter.open(
      this.ctx,
      { name: opts.name, format: opts.format, size: opts.size, chunkSize: opts.chunkSize, defaultChunkSize: this.deps.defaultChunkSize },
      base,
    );
    this.checkOpen();
    this.disks.set(opts.name, w);
    return w;
  }

  async commit(extra: Record<string, unknown> = {}, config?: SavedVmConfig): Promise<Manifest> {
    this.checkOpen();
    const unfinished = [...this.disks.values()].filter((d) => !d.isFinished).map((d) => d.name);
    if (unfinished.length) throw RepoWriterStateError({ backupId: this.id, reason: `disks not finished: ${unfinished.join(', ')}` });
    for (const d of this.disks.values()) {
      const ref = d.damagedReference(this.ctx.damaged);
      if (!ref) continue;
      await this.markDamaged();
      throw RepoDamagedReferenceError({ backupId: this.id, disk: d.name, ...ref });
    }
    this.state = 'committing';
    try {
      const entries = [...this.disks.values()].map((d) => d.finishedEntry());
      const manifest = sealManifest({
        format: MANIFEST_FORMAT,
        id: this.id,
        vmid: this.vmid,
        time: this.time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
        parent: this.parent,
        toolVersion: this.deps.toolVersion,
        disks: entries,
        extra,
        ...(config ? { config: { conf: config.conf, firewall: config.firewall } } : {}),
      });
      // Format 1: the sync batch; format 2: every pack sealed and its .idx durable (pack-store.ts).
      await this.ctx.session.commit();
      await this.deps.storage.writeAtomic(`${this.dirKey}/manifest.json`, serializeManifest(manifest));
      this.state = 'committed';
      this.deps.logger?.info('backup committed', { backupId: this.id, vmid: this.vmid, disks: entries.map((d) => d.name) });
      // The backup exists now; what follows is bookkeeping that must not make a caller believe
      // it failed (a stale marker, lock or catalog row is repaired later: takeover, rebuild).
      try {
        for (const r of this.ctx.repaired) await this.deps.badRegistry.clear(r.kind, r.digest);
        await this.markDamaged();
        await this.deps.locks.release(this.lock);
        this.deps.onCommit(manifest);
      } catch (err) {
        this.deps.logger?.warn('bookkeeping after commit failed', { backupId: this.id, error: (err as Error).message });
      }
      return manifest;
    } catch (err) {
      if (this.state === 'committing') this.state = 'open';
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.state === 'aborted') return;
    if (this.state === 'committed') throw RepoWriterStateError({ backupId: this.id, reason: 'already committed' });
    this.state = 'aborted';
    await this.ctx.session.abort();
    await this.deps.storage.removeTree(this.dirKey);
    await this.deps.locks.release(this.lock);
    this.deps.logger?.info('backup aborted', { backupId: this.id, vmid: this.vmid });
  }

  /**
   * Blobs found damaged in this run and not rewritten join the bad-blob registry, so the next
   * backup that would inherit one re-reads its chunks (and verify's report agrees).
   */
  private async markDamaged(): Promise<void> {
    for (const digest of this.ctx.damaged.chunks) await this.deps.badRegistry.add('chunk', digest);
    for (const digest of this.ctx.damaged.pages) await this.deps.badRegistry.add('page', digest);
  }

  private checkOpen(): void {
    if (this.state !== 'open') throw RepoWriterStateError({ backupId: this.id, reason: `writer is ${this.state}` });
  }
}
