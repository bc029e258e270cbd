/**
 * The latest committed backup of each disk of a VM, read from the repository (the source of truth):
 * its id, size, chunk size and the bitmap it started. Manifests are read newest first and only until
 * every disk named in the list has been seen.
 *
 * For a backup (`lastBackupsForBackup`): the manifests are read newest first until every disk of the
 * VM's config is known (from the repository's listing of backup directories, which reads no
 * manifest), and each manifest read is handed back, so that the writer takes the parent's and the
 * bases' from there instead of reading them again: one read of each manifest per backup.
 */
import type { Manifest, Repository } from '../repository/repository';
import type { LastBackupView } from './mode-decision';

export type BackupRepository = Pick<Repository, 'listBackups' | 'readManifest' | 'startBackup'> & Partial<Pick<Repository, 'listBackupDirs'>>;

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

function noteDisks(out: Map<string, LastDiskBackup>, m: Manifest): void {
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

export async function lastBackupsByDisk(repo: Pick<Repository, 'listBackups' | 'readManifest'>, vmid: number): Promise<Map<string, LastDiskBackup>> {
  const out = new Map<string, LastDiskBackup>();
  const list = await repo.listBackups(vmid);
  for (const b of [...list].reverse()) {
    if (b.disks.every((d) => out.has(d.name))) continue;
    noteDisks(out, await repo.readManifest(b.id));
  }
  return out;
}

export interface LastBackups {
  byDisk: Map<string, LastDiskBackup>;
  /** Every manifest read, by backup id (the writer's parent and bases come from here). */
  manifests: Map<string, Manifest>;
}

/**
 * The last backup of each of `disks` (and of the other disks of the manifests read on the way).
 * A manifest that does not parse is passed over, as `listBackups` passes over it.
 */
export async function lastBackupsForBackup(repo: BackupRepository, vmid: number, disks: readonly string[]): Promise<LastBackups> {
  const manifests = new Map<string, Manifest>();
  if (!repo.listBackupDirs) {
    const byDisk = await lastBackupsByDisk({ listBackups: (v) => repo.listBackups(v), readManifest: async (id) => remember(manifests, await repo.readManifest(id)) }, vmid);
    return { byDisk, manifests };
  }
  const byDisk = new Map<string, LastDiskBackup>();
  // Backup ids sort by time within a VM (vm/VMID/YYYY-MM-DDTHH:MM:SSZ).
  const ids = (await repo.listBackupDirs(vmid)).filter((d) => d.hasManifest).map((d) => d.id).sort().reverse();
  for (const id of ids) {
    if (disks.every((d) => byDisk.has(d))) break;
    let m: Manifest;
    try {
      m = await repo.readManifest(id);
    } catch {
      continue;
    }
    noteDisks(byDisk, remember(manifests, m));
  }
  return { byDisk, manifests };
}

function remember(manifests: Map<string, Manifest>, m: Manifest): Manifest {
  manifests.set(m.id, m);
  return m;
}
