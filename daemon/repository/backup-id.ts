/**
 * Backup ids name a backup's folder in the repository, PBS style: `vm/<vmid>/<UTC time>`, with the
 * time's colons replaced by underscores so the name is safe on every file system
 * (`vm/100/2026-11-25T15_04_05Z`). Sorting ids of one VM as strings sorts them by time.
 *
 * Users type ids as PBS writes them, with colons (`vm/100/2026-11-25T15:04:05Z`, the form of the
 * help examples). `normalizeBackupId` accepts both forms and returns the folder form. The folder
 * name keeps its underscores: existing repositories, manifests (`id`, `parent`) and the catalog
 * name backups that way, and a colon is not safe in every file system a repository may live on.
 * What pve-cbt prints (tables, JSON, log messages meant for people) is the PBS form: `displayBackupId`.
 */
import { RepoBadBackupIdError } from './repository-errors';

const ID_RE = /^vm\/([1-9][0-9]{0,9})\/(\d{4}-\d{2}-\d{2})T(\d{2})_(\d{2})_(\d{2})Z$/;

export function formatBackupId(vmid: number, time: Date): string {
  const iso = time.toISOString().replace(/\.\d{3}Z$/, 'Z');
  return `vm/${vmid}/${iso.replace(/:/g, '_')}`;
}

export function parseBackupId(id: string): { vmid: number; time: Date } {
  const m = ID_RE.exec(id);
  const time = m ? new Date(`${m[2]}T${m[3]}:${m[4]}:${m[5]}Z`) : null;
  if (!m || !time || Number.isNaN(time.getTime())) throw RepoBadBackupIdError({ backupId: id });
  return { vmid: Number(m[1]), time };
}

const TYPED_RE = /^vm\/([1-9][0-9]{0,9})\/(\d{4}-\d{2}-\d{2})T(\d{2})[:_](\d{2})[:_](\d{2})Z$/;

/** An id as typed (colons or underscores) in the folder form; throws CBT_REPO_BAD_BACKUP_ID. */
export function normalizeBackupId(raw: string): string {
  const m = TYPED_RE.exec(raw);
  if (!m) throw RepoBadBackupIdError({ backupId: raw });
  const id = `vm/${m[1]}/${m[2]}T${m[3]}_${m[4]}_${m[5]}Z`;
  parseBackupId(id);
  return id;
}

/**
 * The PBS form of a folder-form id, as pve-cbt prints it (`vm/100/2026-11-25T15:04:05Z`). Anything
 * that is not a folder-form id (already PBS form, or not an id at all) is returned unchanged.
 */
export function displayBackupId(id: string): string {
  const m = ID_RE.exec(id);
  return m ? `vm/${m[1]}/${m[2]}T${m[3]}:${m[4]}:${m[5]}Z` : id;
}

const IDS_IN_TEXT_RE = /\bvm\/([1-9][0-9]{0,9})\/(\d{4}-\d{2}-\d{2})T(\d{2})_(\d{2})_(\d{2})Z/g;

/** Every folder-form id inside a text (an error message, a hint) in the PBS form. */
export function displayBackupIdsIn(text: string): string {
  return text.replace(IDS_IN_TEXT_RE, 'vm/$1/$2T$3:$4:$5Z');
}

export function isBackupId(id: string): boolean {
  return ID_RE.test(id);
}

/** Backup times have whole seconds: the id is the time. */
export function truncateToSecond(t: Date): Date {
  return new Date(Math.floor(t.getTime() / 1000) * 1000);
}
