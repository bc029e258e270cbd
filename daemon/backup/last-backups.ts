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
  /** The storage snapshot this backup recorded (manifest `extra.storageSnapshots`, storage-delta.ts). */
  readonly storageSnapshot?: string;
  /** The VM generation id in the config this backup kept (undefined: none kept, or the VM had none). */
  readonly vmgenid?: string;
}

/** `vmgenid:` of a kept config's current section. */
export function vmgenidOf(conf: string | undefined): string | undefined {
  return conf === undefined ? undefined : /^vmgenid:\s*(\S+)/m.exec(conf.split(/^\[/m)[0])?.[1];
}

function storageSnapshotOf(extra: Record<string, unknown>, disk: string): string | undefined {
  const all = extra.storageSnapshots;
  const name = all && typeof all === 'object' ? (all as Record<string, unknown>)[disk] : undefined;
  return typeof name === 'string' ? name : undefined;
}

export async function lastBackupsByDisk(repo: Pick<Repository, 'listBackups' | 'readManifest'>, vmid: number): Promise<Map<string, LastDiskBackup>> {
  const out = new Map<string, LastDiskBackup>();
  const list = await repo.listBackups(vmid);
  for (const b of [...list].reverse()) {
    if (b.disks.every((d) => out.has(d.name))) continue;
    const m = await repo.readManifest(b.id);
    for (const d of m.disks) {
      if (out.has(d.name)) continue;
      const snap = storageSnapshotOf(m.extra ?? {}, d.name);
      const genid = vmgenidOf(m.config?.conf);
      out.set(d.name, {
        backupId: m.id,
        size: d.size,
        chunkSize: d.chunkSize,
        ...(d.bitmap ? { bitmap: d.bitmap } : {}),
        ...(snap ? { storageSnapshot: snap } : {}),
        ...(genid ? { vmgenid: genid } : {}),
      });
    }
  }
  return out;
}
