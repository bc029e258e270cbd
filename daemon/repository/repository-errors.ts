import { defineError } from '../../shared/errors/cbt-error';

/** Error codes of the backup repository (chunk store, indexes, manifests, restore, verify, GC). */

export const RepoChunkCorruptError = defineError<{ digest: string; path: string; reason: string }>(
  'CBT_REPO_CHUNK_CORRUPT',
  (d) => `chunk ${d.digest} at ${d.path} is corrupt: ${d.reason}`,
);
export const RepoChunkMissingError = defineError<{ digest: string; path: string }>(
  'CBT_REPO_CHUNK_MISSING',
  (d) => `chunk ${d.digest} is missing (${d.path})`,
);
export const RepoPageCorruptError = defineError<{ digest: string; path: string; reason: string }>(
  'CBT_REPO_PAGE_CORRUPT',
  (d) => `index page ${d.digest} at ${d.path} is corrupt: ${d.reason}`,
);
export const RepoPageMissingError = defineError<{ digest: string; path: string }>(
  'CBT_REPO_PAGE_MISSING',
  (d) => `index page ${d.digest} is missing (${d.path})`,
);
export const RepoManifestCorruptError = defineError<{ backupId: string; reason: string }>(
  'CBT_REPO_MANIFEST_CORRUPT',
  (d) => `manifest of backup ${d.backupId} is corrupt: ${d.reason}`,
);
export const RepoBackupNotFoundError = defineError<{ backupId: string }>(
  'CBT_REPO_BACKUP_NOT_FOUND',
  (d) => `backup ${d.backupId} not found (no committed manifest)`,
);
export const RepoBackupExistsError = defineError<{ backupId: string }>(
  'CBT_REPO_BACKUP_EXISTS',
  (d) => `backup ${d.backupId} already exists`,
);
export const RepoBadBackupIdError = defineError<{ backupId: string }>(
  'CBT_REPO_BAD_BACKUP_ID',
  (d) => `'${d.backupId}' is not a backup id (expected vm/VMID/YYYY-MM-DDThh:mm:ssZ)`,
);
export const RepoDiskNotFoundError = defineError<{ backupId: string; disk: string; has?: string[]; hint?: string }>(
  'CBT_REPO_DISK_NOT_FOUND',
  (d) => `backup ${d.backupId} has no disk ${d.disk}`,
);
export const RepoLockedError = defineError<{ lock: string; holderPid: number; holderHost: string; what: string }>(
  'CBT_REPO_LOCKED',
  (d) => `repository lock ${d.lock} is held by pid ${d.holderPid} on ${d.holderHost} (${d.what})`,
);
export const RepoInUseError = defineError<{ backupId: string; holderPid: number }>(
  'CBT_REPO_BACKUP_IN_USE',
  (d) => `backup ${d.backupId} is the base of a running backup (pid ${d.holderPid})`,
);
export const RepoRestoreFailedError = defineError<{ backupId: string; disk: string; offsets: number[]; reason: string }>(
  'CBT_REPO_RESTORE_FAILED',
  (d) =>
    `restore of ${d.disk} from ${d.backupId} failed: ${d.reason}` +
    (d.offsets.length ? ` at offsets ${d.offsets.slice(0, 8).join(', ')}${d.offsets.length > 8 ? ', ...' : ''}` : ''),
);
export const RepoNoSpaceError = defineError<{ path: string }>(
  'CBT_REPO_NO_SPACE',
  (d) => `no space left on the repository device writing ${d.path}`,
);
export const RepoStorageNotLocalError = defineError<{ root: string; key: string }>(
  'CBT_REPO_STORAGE_NOT_LOCAL',
  (d) => `repository storage ${d.root} has no local files, which the chunk store needs for ${d.key} (object storage is not supported yet)`,
);
/** syncfs(2) of the repository's file system (coreutils `sync --file-system`) failed. */
export const RepoSyncFailedError = defineError<{ dir: string; reason: string }>(
  'CBT_REPO_SYNC_FAILED',
  (d) => `sync --file-system ${d.dir} failed: ${d.reason}`,
);
/** A blob worker thread stopped with jobs outstanding (they fail with this). */
export const RepoWorkerExitedError = defineError<{ exitCode: number }>(
  'CBT_REPO_WORKER_EXITED',
  (d) => `blob worker exited with code ${d.exitCode}`,
);
/** A failed write as the repository reports it: a full device (ENOSPC, EDQUOT) as CBT_REPO_NO_SPACE, anything else as it came. */
export function noSpaceOr(err: unknown, path: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT' ? RepoNoSpaceError({ path }, err) : err;
}
export const RepoInvalidArgumentError = defineError<{ what: string; value: unknown; hint: string }>(
  'CBT_REPO_INVALID_ARGUMENT',
  (d) => `invalid ${d.what} ${JSON.stringify(d.value)}: ${d.hint}`,
);
export const RepoWriterStateError = defineError<{ backupId: string; reason: string }>(
  'CBT_REPO_WRITER_STATE',
  (d) => `backup writer ${d.backupId}: ${d.reason}`,
);
export const RepoNotARepositoryError = defineError<{ dir: string }>(
  'CBT_REPO_NOT_A_REPOSITORY',
  (d) => `${d.dir} is not a pve-cbt repository (pass create to make one)`,
);
export const RepoGcBlockedError = defineError<{ backupIds: string[] }>(
  'CBT_REPO_GC_BLOCKED',
  (d) => `garbage collection refuses to sweep while manifests are unreadable: ${d.backupIds.join(', ')} (remove or repair them)`,
);
export const RepoQemuImgFailedError = defineError<{ command: string; exitCode: number | null; stderr: string }>(
  'CBT_REPO_QEMU_IMG_FAILED',
  (d) => `${d.command} failed (exit ${d.exitCode}): ${d.stderr.trim()}`,
);
export const RepoDamagedReferenceError = defineError<{ backupId: string; disk: string; kind: 'chunk' | 'page'; digest: string }>(
  'CBT_REPO_DAMAGED_REFERENCE',
  (d) => `backup ${d.backupId} not committed: disk ${d.disk} references ${d.kind} ${d.digest}, found damaged or unreadable in this run and not rewritten`,
);
/** Format 2: a pack a backup wrote into could not be sealed (its worker stopped first); the backup is not committed. */
export const RepoPackUnsealedError = defineError<{ packId: string; blobs: number }>(
  'CBT_REPO_PACK_UNSEALED',
  (d) => `pack ${d.packId} (${d.blobs} blobs of this backup) was not sealed: its blob worker stopped before the commit`,
);
/** Format 2: GC refuses to sweep while a pack index cannot be read (the blobs it holds are unknown). */
export const RepoGcBlockedByPackIndexError = defineError<{ packs: { packId: string; reason: string }[] }>(
  'CBT_REPO_GC_BLOCKED_PACK_INDEX',
  (d) => `garbage collection refuses to sweep while pack indexes are unreadable: ${d.packs.map((p) => `${p.packId} (${p.reason})`).join(', ')}`,
);
/** The repository marker names a format this version cannot read. */
export const RepoUnknownFormatError = defineError<{ dir: string; format: string }>(
  'CBT_REPO_UNKNOWN_FORMAT',
  (d) => `${d.dir} is a pve-cbt repository of format ${d.format}, which this version cannot read`,
);
