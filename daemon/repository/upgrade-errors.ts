import { defineError } from '../../shared/errors/cbt-error';

/** Error codes of `pve-cbt repository upgrade` (format 1 → 2, upgrade-repository.ts). */

/** A record under `.upgrade/` cannot be parsed or contradicts the others (gap, overlap); nothing was changed. */
export const RepoUpgradeStateCorruptError = defineError<{ file: string; reason: string; hint: string }>(
  'CBT_REPO_UPGRADE_STATE_CORRUPT',
  (d) => `upgrade state ${d.file} is corrupt: ${d.reason}`,
);

/** The upgrade refuses to start while a backup writer of the repository is alive (its blobs could be missed). */
export const RepoUpgradeBusyError = defineError<{ writers: { lock: string; pid: number; host: string }[]; hint: string }>(
  'CBT_REPO_UPGRADE_BUSY',
  (d) => `repository upgrade refused: ${d.writers.length} backup(s) running (${d.writers.map((w) => `${w.lock} pid ${w.pid} on ${w.host}`).join(', ')})`,
);

/** A backup was refused because `pve-cbt repository upgrade` is under way (or was interrupted: run it again). */
export const RepoUpgradeInProgressError = defineError<{ dir: string; hint: string }>(
  'CBT_REPO_UPGRADE_IN_PROGRESS',
  (d) => `repository ${d.dir} is being upgraded to format 2; backups wait until the upgrade is finished`,
);

/** The repository's marker names a format this version cannot upgrade from. */
export const RepoUpgradeUnknownFormatError = defineError<{ dir: string; format: string }>(
  'CBT_REPO_UPGRADE_UNKNOWN_FORMAT',
  (d) => `repository ${d.dir} has format ${JSON.stringify(d.format)}, which cannot be upgraded`,
);

/** The repository object was opened as one format and the marker now says another (upgraded meanwhile): reopen it (restart pve-cbtd). */
export const RepoFormatChangedError = defineError<{ dir: string; opened: string; now: string; hint: string }>(
  'CBT_REPO_FORMAT_CHANGED',
  (d) => `repository ${d.dir} was opened as ${d.opened} and is now ${d.now}`,
);
