/**
 * A pve-cbt backup repository: the facade the engine, CLI and daemon use.
 *
 * Layout (all under one directory; see the named modules for each format):
 *   .pve-cbt-repository           marker: {"format":"pve-cbt-repository-2","created":...,"chunkSize":65536,
 *                                  "encryption":null | {"cipher":"aes-256-gcm","keyFingerprint":<hex>}}
 *                                  (format 1: "pve-cbt-repository-1", no chunkSize)
 *   .packs/<2 hex>/<packId>.pack|.idx  format 2: blobs in pack files (pack-format.ts, pack-store.ts)
 *   .chunks/<2 hex>/<sha256>       format 1: chunks (chunk-store.ts, file-formats.ts)
 *   .pages/<2 hex>/<sha256>        format 1: index pages (disk-index.ts)
 *   .locks/vm-<vmid>.lock, gc.lock (repository-lock.ts)
 *   .bad/chunk-<sha256>            blobs verify found bad (bad-blobs.ts)
 *   vm/<vmid>/<time>/manifest.json the commit marker of one backup (manifest.ts)
 *   vm/<vmid>/<time>/verify.json   last verify result (verify.ts)
 *   verify-last.json               last verify of the whole repository (verify-record.ts)
 *   .handoff/<vmid>/{claim,handoff}.json  bitmap records following a live-migrated VM between
 *                                  the nodes' daemons (daemon/migration/handoff-format.ts)
 *
 * Every backup is a synthetic full: its manifest reaches every chunk of every disk directly, so
 * restore never replays a chain, and any backup can be removed independently. Unchanged data is
 * shared between all backups of all VMs through the chunk store.
 *
 * Encryption is chosen once, at creation (`keys`, from a key file: key-file.ts): the marker then
 * records the key's fingerprint, every blob is AES-256-GCM encrypted (blob-cipher.ts), digests are
 * keyed (digest.ts) and manifests authenticated (manifest.ts). Opening checks the key against the
 * marker before anything else is read: an encrypted repository without a key is
 * CBT_REPO_KEY_MISSING, another key CBT_REPO_KEY_WRONG, a key for an unencrypted one
 * CBT_REPO_NOT_ENCRYPTED. An optional catalog sink mirrors
 * commits, removals and verify results into SQLite; the repository stays the source of truth.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { programPath } from '../proc/external-programs';
import { LocalDirStorage, type RepositoryStorage } from './storage';
import { BlobWorkers } from './blob-workers';
import { Format1Blobs } from './chunk-store';
import { PackStore } from './pack-store';
import { PACKS_DIR } from './pack-format';
import type { BlobStore, RepositoryBlobs } from './blob-store';
import { BadBlobRegistry } from './bad-blobs';
import { lastVerifyOf, readLastVerify, writeLastVerify, type LastVerify } from './verify-record';
import { RepositoryLocks } from './repository-lock';
import { RepositoryBackupWriter, type BackupWriter } from './backup-writer';
import { isValidChunkSize } from './disk-index';
import { parseManifest, type BackupMode, type Manifest } from './manifest';
import { formatBackupId, isBackupId, parseBackupId, truncateToSecond } from './backup-id';
import { restoreDisk, type RestoreOptions, type RestoreTarget } from './restore';
import { verifyBackups, VERIFY_FILE, type ProgressFn, type VerifyReport, type VerifyState } from './verify';
import { DEFAULT_GC_GRACE_MS, garbageCollect, type GcOptions, type GcReport } from './garbage-collect';
import { refuseDuringUpgrade } from './upgrade-state';
import { RepoFormatChangedError } from './upgrade-errors';
import { upgradeRepository, type UpgradeOptions, type UpgradeReport } from './upgrade-repository';
import type { S3Storage } from './s3-storage';
import { computePrune, type PruneMark, type PruneOptions } from './prune';
import type { Compression } from './file-formats';
import type { RepositoryKeys } from './key-file';
import {
  RepoBackupExistsError,
  RepoBackupNotFoundError,
  RepoInUseError,
  RepoInvalidArgumentError,
  RepoKeyMissingError,
  RepoKeyWrongError,
  RepoNotARepositoryError,
  RepoNotEncryptedError,
  RepoUnknownFormatError,
} from './repository-errors';

export type { BackupWriter, OpenDiskOptions } from './backup-writer';
export type { DiskWriter, DiskMeta, PutResult } from './disk-writer';
export type { Manifest, DiskEntry, BackupMode, Consistency } from './manifest';
export type { RestoreTarget, RestoreOptions } from './restore';
export type { VerifyReport, VerifyProblem, VerifyState, ProgressFn } from './verify';
export type { LastVerify } from './verify-record';
export type { GcReport, GcOptions } from './garbage-collect';
export type { UpgradeReport, UpgradeOptions } from './upgrade-repository';
export type { PruneOptions, PruneMark } from './prune';

export { REPOSITORY_MARKER } from './repository-marker';
import { REPOSITORY_MARKER } from './repository-marker';
/** Format 1: one file per blob (read and written by the format-1 code, chunk-store.ts). */
export const REPOSITORY_FORMAT_1 = 'pve-cbt-repository-1';
/** Format 2: pack files (pack-format.ts); what new repositories are. */
export const REPOSITORY_FORMAT_2 = 'pve-cbt-repository-2';
/** The format new repositories get. */
export const REPOSITORY_FORMAT = REPOSITORY_FORMAT_2;
/** Default chunk size of new indexes in a new format-2 repository (the bitmap granule: dedup = change granularity). */
export const FORMAT_2_CHUNK_SIZE = 65536;
/** Format 1 stores a file per chunk; 256 KiB measured best there (COMPRESSION.md). Its marker records no chunk size. */
export const FORMAT_1_CHUNK_SIZE = 262144;

export type RepositoryFormat = 1 | 2;

/** The marker's content. */
export interface RepositoryMarker {
  format: string;
  created: string;
  chunkSize?: number;
  encryption?: unknown;
}

/** The blob stores of a repository of `format` (blob-store.ts). */
export function blobsFor(format: RepositoryFormat, storage: RepositoryStorage, compression: Compression, workers: BlobWorkers, logger?: Logger): RepositoryBlobs {
  return format === 2 ? new PackStore(storage, compression, workers, logger) : new Format1Blobs(storage, compression, workers);
}

/** Receives what the repository commits, removes and verifies (the SQLite catalog implements it). */
export interface CatalogSink {
  recordBackup(m: Manifest): void;
  forgetBackup(backupId: string): void;
  recordVerify(backupId: string, state: VerifyState): void;
}

export interface RepositoryOptions {
  create?: boolean;
  /** Format of a repository created now (default 2); an existing one keeps its own. */
  format?: RepositoryFormat;
  compression?: Compression;
  /** Default chunk size of new indexes (an incremental keeps its base's). */
  chunkSize?: number;
  logger?: Logger;
  catalog?: CatalogSink;
  qemuImg?: string;
  /** Defaults to a local directory at `dir`. */
  storage?: RepositoryStorage;
  /** The keys of an encrypted repository (key-file.ts); with `create`, a new repository is encrypted. */
  keys?: RepositoryKeys;
}

/** What the marker says about encryption. */
export interface RepositoryEncryption {
  cipher: 'aes-256-gcm';
  keyFingerprint: string;
}

export interface BackupInfo {
  id: string;
  vmid: number;
  time: Date;
  parent: string | null;
  disks: { name: string; format: string; size: number; mode: BackupMode; reason: string; bytesRead: number; bytesStored: number }[];
  verifyState: 'none' | 'ok' | 'failed';
}

export class Repository {
  /** The blob stores of this repository's format (format-1 files or format-2 packs). */
  readonly blobs: RepositoryBlobs;
  private readonly chunks: BlobStore;
  private readonly pages: BlobStore;
  private readonly locks: RepositoryLocks;
  private readonly badRegistry: BadBlobRegistry;
  private readonly logger?: Logger;
  private readonly catalog?: CatalogSink;
  private readonly chunkSize: number;
  private readonly qemuImg: string;
  /** Worker threads that hash, store and read the chunk store's blobs (blob-workers.ts). */
  private readonly workers: BlobWorkers;
  private readonly keys: RepositoryKeys | null;

  private constructor(
    readonly dir: string,
    readonly storage: RepositoryStorage,
    opts: RepositoryOptions,
    readonly format: RepositoryFormat,
    marker: RepositoryMarker,
    /** Null: not encrypted. */
    readonly encryption: RepositoryEncryption | null,
  ) {
    this.keys = opts.keys ?? null;
    this.workers = new BlobWorkers(undefined, this.keys ? { blob: this.keys.blob, id: this.keys.id } : null);
    const compression = opts.compression ?? 'auto';
    this.blobs = blobsFor(format, storage, compression, this.workers, opts.logger);
    this.chunks = this.blobs.chunks;
    this.pages = this.blobs.pages;
    this.locks = new RepositoryLocks(storage);
    this.badRegistry = new BadBlobRegistry(storage);
    this.logger = opts.logger;
    this.catalog = opts.catalog;
    this.chunkSize = opts.chunkSize ?? marker.chunkSize ?? (format === 1 ? FORMAT_1_CHUNK_SIZE : FORMAT_2_CHUNK_SIZE);
    this.qemuImg = opts.qemuImg ?? programPath('qemu-img');
  }

  static async open(dir: string, opts: RepositoryOptions = {}): Promise<Repository> {
    // An S3 storage names itself by its s3:// URL, which is no path to resolve.
    const abs = opts.storage?.root ?? path.resolve(dir);
    if (opts.chunkSize !== undefined && !isValidChunkSize(opts.chunkSize)) {
      throw RepoInvalidArgumentError({ what: 'chunk size', value: opts.chunkSize, hint: 'a power of two, 64 KiB to 16 MiB' });
    }
    const storage = opts.storage ?? new LocalDirStorage(abs);
    const data = await storage.read(REPOSITORY_MARKER);
    let marker = data ? parseMarker(data) : null;
    if (data && !marker) throw RepoNotARepositoryError({ dir: abs });
    if (!marker) {
      if (!opts.create) throw RepoNotARepositoryError({ dir: abs });
      const format = opts.format ?? 2;
      const dirs = format === 2 ? [PACKS_DIR, '.locks', '.bad', 'vm'] : ['.chunks', '.pages', '.locks', '.bad', 'vm'];
      for (const d of dirs) await storage.mkdir(d);
      const encryption: RepositoryEncryption | null = opts.keys ? { cipher: 'aes-256-gcm', keyFingerprint: opts.keys.fingerprint } : null;
      marker =
        format === 2
          ? { format: REPOSITORY_FORMAT_2, created: new Date().toISOString(), chunkSize: opts.chunkSize ?? FORMAT_2_CHUNK_SIZE, encryption }
          : { format: REPOSITORY_FORMAT_1, created: new Date().toISOString(), ...(encryption ? { encryption } : {}) };
      await storage.writeAtomic(REPOSITORY_MARKER, Buffer.from(`${JSON.stringify(marker)}\n`));
      opts.logger?.info('repository created', { dir: abs, format, encrypted: encryption !== null, ...(encryption ? { keyFingerprint: encryption.keyFingerprint } : {}) });
    }
    const format = marker.format === REPOSITORY_FORMAT_2 ? 2 : marker.format === REPOSITORY_FORMAT_1 ? 1 : null;
    if (format === null) throw RepoUnknownFormatError({ dir: abs, format: marker.format });
    const encryption = encryptionOf(marker.encryption);
    if (encryption === 'unknown') throw RepoUnknownFormatError({ dir: abs, format: `${marker.format} with encryption ${JSON.stringify(marker.encryption)}` });
    checkKey(abs, encryption, opts.keys);
    return new Repository(abs, storage, opts, format, marker, encryption);
  }

  /** Committed backups (manifest present and valid), oldest first. */
  async listBackups(vmid?: number): Promise<BackupInfo[]> {
    const out: BackupInfo[] = [];
    for (const d of await this.listBackupDirs(vmid)) {
      if (!d.hasManifest) continue;
      let m: Manifest;
      try {
        m = await this.readManifest(d.id);
      } catch {
        continue;
      }
      const v = await this.readVerifyState(d.id);
      out.push({
        id: m.id,
        vmid: m.vmid,
        time: new Date(m.time),
        parent: m.parent,
        disks: m.disks.map((x) => ({
          name: x.name,
          format: x.format,
          size: x.size,
          mode: x.mode,
          reason: x.reason,
          bytesRead: x.bytesRead,
          bytesStored: x.bytesStored,
        })),
        verifyState: v?.state ?? 'none',
      });
    }
    return out.sort((a, b) => a.time.getTime() - b.time.getTime() || a.vmid - b.vmid);
  }

  async readManifest(backupId: string): Promise<Manifest> {
    parseBackupId(backupId);
    const data = await this.storage.read(`${backupId}/manifest.json`);
    if (!data) throw RepoBackupNotFoundError({ backupId });
    return parseManifest(backupId, data, this.manifestKeys());
  }

  async readVerifyState(backupId: string): Promise<VerifyState | null> {
    const data = await this.storage.read(`${backupId}/${VERIFY_FILE}`);
    if (!data) return null;
    try {
      return JSON.parse(data.toString('utf8')) as VerifyState;
    } catch {
      return null;
    }
  }

  /**
   * Starts a backup of one VM. Fails fast with CBT_REPO_LOCKED while another writer of that VM
   * lives. The id is the start time in whole seconds; without an explicit `time` it moves to the
   * next free second if the current one is taken.
   */
  /**
   * `logger`: the caller's (child) logger, so the writer's `backup committed` carries its job context.
   * `manifests`: manifests the caller has read for this backup (the parent's, the bases'): the writer
   * takes them from there instead of reading them again; the parent is still checked to be committed.
   */
  async startBackup(opts: { vmid: number; parent?: string; time?: Date; logger?: Logger; manifests?: ReadonlyMap<string, Manifest> }): Promise<BackupWriter> {
    if (!Number.isSafeInteger(opts.vmid) || opts.vmid < 1) {
      throw RepoInvalidArgumentError({ what: 'vmid', value: opts.vmid, hint: 'a positive integer' });
    }
    const lock = await this.locks.acquire(`vm-${opts.vmid}`, {
      what: 'backup',
      vmid: opts.vmid,
      bases: opts.parent ? [opts.parent] : [],
    });
    try {
      await refuseDuringUpgrade(this.storage, this.dir);
      await this.refuseIfFormatChanged();
      const known = opts.manifests ?? new Map<string, Manifest>();
      if (opts.parent && known.has(opts.parent)) {
        if (!(await this.storage.stat(`${opts.parent}/manifest.json`))) throw RepoBackupNotFoundError({ backupId: opts.parent });
      } else if (opts.parent) await this.readManifest(opts.parent);
      await this.storage.mkdir(`vm/${opts.vmid}`);
      let time = truncateToSecond(opts.time ?? new Date());
      let id = formatBackupId(opts.vmid, time);
      while (!(await this.storage.mkdir(id))) {
        if (opts.time) throw RepoBackupExistsError({ backupId: id });
        time = new Date(time.getTime() + 1000);
        id = formatBackupId(opts.vmid, time);
      }
      await this.locks.update(lock, { backupId: id });
      const bad = await this.badRegistry.load();
      const logger = opts.logger ?? this.logger;
      // The engine logs `backup started` with the disks; here only the directory taken.
      logger?.debug('backup directory reserved', { backupId: id, vmid: opts.vmid, parent: opts.parent ?? null });
      return new RepositoryBackupWriter(
        {
          storage: this.storage,
          chunks: this.chunks,
          pages: this.pages,
          openSession: () => this.blobs.openSession(),
          workers: this.workers,
          badRegistry: this.badRegistry,
          locks: this.locks,
          toolVersion: toolVersion(),
          manifestKeys: this.manifestKeys(),
          defaultChunkSize: this.chunkSize,
          logger,
          readManifest: async (bid) => known.get(bid) ?? this.readManifest(bid),
          onCommit: (m) => this.catalog?.recordBackup(m),
        },
        id,
        opts.vmid,
        time,
        opts.parent ?? null,
        lock,
        bad,
      );
    } catch (err) {
      await this.locks.release(lock);
      throw err;
    }
  }

  async restoreDisk(backupId: string, disk: string, target: RestoreTarget, opts: RestoreOptions = {}): Promise<{ bytes: number }> {
    const m = await this.readManifest(backupId);
    return restoreDisk(
      { chunks: this.chunks, pages: this.pages, qemuImg: this.qemuImg, logger: this.logger },
      m,
      disk,
      target,
      opts,
    );
  }

  /**
   * Verifies one backup, or all backup folders that have a manifest file (corrupt ones included);
   * the result of a whole-repository run is kept as the last verify (verify-record.ts).
   */
  async verify(opts: { backupId?: string; onProgress?: ProgressFn } = {}): Promise<VerifyReport> {
    const started = new Date();
    let ids: string[];
    if (opts.backupId) {
      parseBackupId(opts.backupId);
      if (!(await this.storage.stat(`${opts.backupId}/manifest.json`))) throw RepoBackupNotFoundError({ backupId: opts.backupId });
      ids = [opts.backupId];
    } else {
      ids = (await this.listBackupDirs()).filter((d) => d.hasManifest).map((d) => d.id);
    }
    const report = await verifyBackups(
      {
        storage: this.storage,
        chunks: this.chunks,
        pages: this.pages,
        ...(this.blobs instanceof PackStore ? { packs: this.blobs.lookup } : {}),
        badRegistry: this.badRegistry,
        readManifest: (id) => this.readManifest(id),
        onVerified: (id, state) => this.catalog?.recordVerify(id, state),
        logger: this.logger,
      },
      ids,
      opts.onProgress,
    );
    if (!opts.backupId) await writeLastVerify(this.storage, lastVerifyOf(report, started, new Date()));
    return report;
  }

  private manifestKeys(): { auth: Buffer; config: Buffer } | null {
    return this.keys ? { auth: this.keys.manifest, config: this.keys.config } : null;
  }

  /** The blob and digest keys a reader of this repository needs (backup-reader.ts); null: not encrypted. */
  blobKeys(): { blob: Buffer; id: Buffer } | null {
    return this.keys ? { blob: this.keys.blob, id: this.keys.id } : null;
  }

  /** The last verify of the whole repository, null if none ran yet. */
  lastVerify(): Promise<LastVerify | null> {
    return readLastVerify(this.storage);
  }

  /** Garbage collection (see garbage-collect.ts); exclusive: fails fast if another GC runs. */
  async gc(opts: GcOptions = {}): Promise<GcReport> {
    const lock = await this.locks.acquire('gc', { what: 'gc' });
    const started = Date.now();
    try {
      const report = await garbageCollect(
        {
          storage: this.storage,
          blobs: this.blobs,
          locks: this.locks,
          listBackupDirs: () => this.listBackupDirs(),
          readManifest: (id) => this.readManifest(id),
          logger: this.logger,
        },
        opts,
      );
      // Object storage: multipart uploads a killed writer left (their parts count against a quota),
      // under the same cutoff as everything else: older than every live writer and the grace.
      const objects = this.storage as Partial<Pick<S3Storage, 'abortStaleUploads'>>;
      if (typeof objects.abortStaleUploads === 'function') {
        const writers = await this.locks.listLive('vm-');
        const cutoff = Math.min(started, ...writers.map((w) => w.info.startedAtMs)) - (opts.graceMs ?? DEFAULT_GC_GRACE_MS);
        const aborted = await objects.abortStaleUploads.call(this.storage, cutoff);
        report.tempFilesRemoved += aborted.length;
        if (aborted.length) this.logger?.info('stale multipart uploads aborted', { keys: aborted });
      }
      return report;
    } finally {
      await this.locks.release(lock);
    }
  }

  /** A daemon that opened the repository before `repository upgrade` must not write format-1 blobs into it. */
  private async refuseIfFormatChanged(): Promise<void> {
    const data = await this.storage.read(REPOSITORY_MARKER);
    const now = (data && parseMarker(data)?.format) || '(no marker)';
    const opened = this.format === 2 ? REPOSITORY_FORMAT_2 : REPOSITORY_FORMAT_1;
    if (now !== opened) {
      throw RepoFormatChangedError({ dir: this.dir, opened, now, hint: 'open the repository again: restart pve-cbtd (systemctl restart pve-cbtd)' });
    }
  }

  /**
   * Upgrades a format-1 repository to format 2 in place (upgrade-repository.ts). This object keeps
   * the format it was opened with: open the repository again afterwards.
   */
  async upgrade(opts: UpgradeOptions = {}): Promise<UpgradeReport> {
    return await upgradeRepository({ dir: this.dir, storage: this.storage, locks: this.locks, tool: toolVersion(), logger: this.logger }, opts);
  }

  /**
   * Removes one backup (its folder; chunks go at the next GC). The manifest is first moved aside so
   * the backup stops existing atomically, then the writer locks are checked: a backup that a
   * running writer cloned from is put back and CBT_REPO_BACKUP_IN_USE is raised.
   */
  async removeBackup(backupId: string, opts: { logger?: Logger } = {}): Promise<void> {
    parseBackupId(backupId);
    const aside = `${backupId}/manifest.removed`;
    if (!(await this.storage.rename(`${backupId}/manifest.json`, aside))) throw RepoBackupNotFoundError({ backupId });
    const user = (await this.locks.listLive('vm-')).find((w) => w.info.bases?.includes(backupId));
    if (user) {
      await this.storage.rename(aside, `${backupId}/manifest.json`);
      throw RepoInUseError({ backupId, holderPid: user.info.pid });
    }
    await this.storage.removeTree(backupId);
    this.catalog?.forgetBackup(backupId);
    (opts.logger ?? this.logger)?.info('backup removed', { backupId, vmid: parseBackupId(backupId).vmid });
  }

  /**
   * Applies retention to each VM's backups (or one VM's). Backups in use as a base are kept this
   * time (reason 'in-use'). `dryRun` only computes the marks.
   */
  /** `logger`: the caller's (child) logger, so `backup removed` carries e.g. the job's id. */
  async prune(opts: PruneOptions & { vmid?: number; dryRun?: boolean; logger?: Logger }): Promise<PruneMark[]> {
    const all = await this.listBackups(opts.vmid);
    const byVm = new Map<number, BackupInfo[]>();
    for (const b of all) byVm.set(b.vmid, [...(byVm.get(b.vmid) ?? []), b]);
    const marks: PruneMark[] = [];
    for (const list of byVm.values()) {
      for (const mark of computePrune(list, opts)) {
        if (!mark.keep && !opts.dryRun) {
          try {
            await this.removeBackup(mark.id, { logger: opts.logger });
          } catch (err) {
            if (!RepoInUseError.is(err)) throw err;
            marks.push({ ...mark, keep: true, reason: 'in-use' });
            continue;
          }
        }
        marks.push(mark);
      }
    }
    return marks;
  }

  /** Removes partial backups of VMs without a live writer (also done by GC); returns their ids. */
  async cleanupPartials(): Promise<string[]> {
    // Folders first, then the locks, then the manifest again (as GC does): a writer takes its lock
    // before it makes its folder and writes its manifest before it releases the lock.
    const dirs = await this.listBackupDirs();
    const busy = new Set((await this.locks.listLive('vm-')).map((w) => w.info.vmid));
    const removed: string[] = [];
    for (const d of dirs) {
      if (d.hasManifest || busy.has(d.vmid) || (await this.storage.stat(`${d.id}/manifest.json`))) continue;
      await this.storage.removeTree(d.id);
      removed.push(d.id);
    }
    if (removed.length) this.logger?.info('partial backups removed', { backupIds: removed });
    return removed;
  }

  /** Every backup folder, committed or partial. */
  async listBackupDirs(vmid?: number): Promise<{ id: string; vmid: number; hasManifest: boolean }[]> {
    const out: { id: string; vmid: number; hasManifest: boolean }[] = [];
    const vms = vmid === undefined ? await this.storage.list('vm') : [String(vmid)];
    for (const vm of vms) {
      for (const t of await this.storage.list(`vm/${vm}`)) {
        const id = `vm/${vm}/${t}`;
        if (!isBackupId(id)) continue;
        out.push({ id, vmid: Number(vm), hasManifest: (await this.storage.stat(`${id}/manifest.json`)) !== null });
      }
    }
    return out;
  }
}

/** The marker, or null when it is not one (a `format` string starting "pve-cbt-repository-"). */
function parseMarker(data: Buffer): RepositoryMarker | null {
  try {
    const m = JSON.parse(data.toString('utf8')) as Partial<RepositoryMarker>;
    if (typeof m.format !== 'string' || !m.format.startsWith('pve-cbt-repository-')) return null;
    if (m.chunkSize !== undefined && !isValidChunkSize(m.chunkSize)) return null;
    return { format: m.format, created: String(m.created ?? ''), ...(m.chunkSize !== undefined ? { chunkSize: m.chunkSize } : {}), ...(m.encryption !== undefined ? { encryption: m.encryption } : {}) };
  } catch {
    return null;
  }
}

/** The marker's `encryption`: none, the one this version knows, or one it cannot use. */
function encryptionOf(e: unknown): RepositoryEncryption | null | 'unknown' {
  if (e === undefined || e === null) return null;
  const x = e as Partial<RepositoryEncryption>;
  return x.cipher === 'aes-256-gcm' && typeof x.keyFingerprint === 'string' && /^[0-9a-f]{64}$/.test(x.keyFingerprint) ? { cipher: x.cipher, keyFingerprint: x.keyFingerprint } : 'unknown';
}

/** The key given must be the marker's, and one must be given exactly when the repository is encrypted. */
function checkKey(dir: string, encryption: RepositoryEncryption | null, keys: RepositoryKeys | undefined): void {
  if (encryption && !keys) {
    throw RepoKeyMissingError({ dir, keyFingerprint: encryption.keyFingerprint, hint: "name its key file in the config's encryption.keyFile (pve-cbt key show KEYFILE prints a file's fingerprint)" });
  }
  if (!encryption && keys) {
    throw RepoNotEncryptedError({ dir, hint: 'encryption is chosen when a repository is created: remove encryption.keyFile from the config, or point repository at a new directory' });
  }
  if (encryption && keys && keys.fingerprint !== encryption.keyFingerprint) {
    throw RepoKeyWrongError({ dir, keyFingerprint: encryption.keyFingerprint, givenFingerprint: keys.fingerprint });
  }
}

let cachedVersion: string | null = null;

/** pve-cbt's version from its package.json, found by walking up from this file (src or dist). */
export function toolVersion(): string {
  if (cachedVersion) return cachedVersion;
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'pve-cbt' && pkg.version) return (cachedVersion = `pve-cbt ${pkg.version}`);
    } catch {
      // not here, keep walking up
    }
  }
  return (cachedVersion = 'pve-cbt unknown');
}
