/**
 * The latest committed backup of each disk of a VM, read from the repository (the source of truth):
 * its id, size, chunk size and the bitmap it started. Manifests are read newest first and only until
 * every disk named in the list has been seen.
 */
import type { Repository } from '../repository/repository';
import type { LastBackupView } from './mode-decision';

export type BackupRepository = Pick<Repository, 'listBackups' | 'readManifest' | 'startBackup'>;

export interface LastDiskBackup extends LastBackupView {
  readonly chunkSize: number;
}

export async function lastBackupsByDisk(repo: Pick<Repository, 'listBackups' | 'readManifest'>, vmid: number): Promise<Map<string, LastDiskBackup>> {
  const out = new Map<string, LastDiskBackup>();
  const list = await repo.listBackups(vmid);
  for (const b of [...list].reverse()) {
    if (b.disks.every((d) => out.has(d.name))) continue;
    const m = await repo.readManifest(b.id);
    for (const d of m.disks) {
      if (out.has(d.name)) continue;
      out.set(d.name, { backupId: m.id, size: d.size, chunkSize: d.chunkSize, ...(d.bitmap ? { bitmap: d.bitmap } : {}) });
    }
  }
  return out;
}
