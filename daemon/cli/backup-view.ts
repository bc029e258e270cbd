/**
 * Backups as `pve-cbt` shows them, in tables and in JSON: ids in the PBS form
 * (`vm/101/2026-11-25T02:00:03Z`, displayBackupId) and times in ISO 8601 (format-time.ts). The
 * repository, manifests and catalog keep the folder form (`…T02_00_03Z`); only output changes.
 * Pure: one place that turns repository records into the documented JSON shapes (README).
 */
import { displayBackupId } from '../repository/backup-id';
import type { BackupInfo, GcReport, Manifest, PruneMark, VerifyReport, VerifyState } from '../repository/repository';
import type { BackupResult } from '../service/requests';
import { formatTime } from './format-time';

export function backupInfoView(b: BackupInfo) {
  return { ...b, id: displayBackupId(b.id), time: formatTime(b.time), parent: b.parent === null ? null : displayBackupId(b.parent) };
}

export function verifyStateView(v: VerifyState | null) {
  if (!v) return null;
  return { ...v, time: formatTime(v.time), problems: v.problems.map((p) => ({ ...p, backupId: displayBackupId(p.backupId) })) };
}

export function manifestView(m: Manifest) {
  return { ...m, id: displayBackupId(m.id), time: formatTime(m.time), parent: m.parent === null ? null : displayBackupId(m.parent) };
}

export function verifyReportView(r: VerifyReport) {
  return {
    ...r,
    backups: r.backups.map((b) => ({ ...b, id: displayBackupId(b.id), problems: b.problems.map((p) => ({ ...p, backupId: displayBackupId(p.backupId) })) })),
  };
}

export function pruneMarkView(m: PruneMark) {
  return { ...m, id: displayBackupId(m.id) };
}

export function gcReportView(r: GcReport) {
  return { ...r, cutoff: formatTime(r.cutoff, { ms: true }), partialsRemoved: r.partialsRemoved.map(displayBackupId) };
}

export function backupResultView(r: BackupResult) {
  return { ...r, id: displayBackupId(r.id) };
}
