/**
 * `vm_groups` (005-catalog-scale.ts) against the backups they sum: filled by the migration from a
 * catalog that already holds backups, then kept by the triggers through records, forgets and a
 * rebuild-style clear. Each time the groups equal what `listCatalogBackups` adds up.
 */
import path from 'node:path';
import fs from 'node:fs';
import { BackupCatalog } from '../../../daemon/catalog/backup-catalog';
import { listVmGroups } from '../../../daemon/catalog/catalog-groups';
import { listCatalogBackups } from '../../../daemon/catalog/catalog-backup-list';
import { loadMigrations, openCatalog } from '../../../daemon/catalog/open-catalog';
import type Database from 'better-sqlite3';
import { MANIFEST_FORMAT, sealManifest, type Manifest } from '../../../daemon/repository/manifest';
import { formatBackupId } from '../../../daemon/repository/backup-id';
import { tempDir } from '../repository/repo-test-helpers';

function manifest(vmid: number, day: number, disks: [string, number][]): Manifest {
  const time = new Date(Date.UTC(2026, 0, 1 + day, 2, 0, 0));
  const id = formatBackupId(vmid, time);
  return sealManifest({
    format: MANIFEST_FORMAT,
    id,
    vmid,
    time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
    parent: null,
    toolVersion: 'test',
    disks: disks.map(([name, stored]) => ({
      name,
      format: 'raw',
      size: 1 << 20,
      chunkSize: 1 << 16,
      pageEntries: 1024,
      pages: ['0'.repeat(64)],
      mode: 'full',
      reason: 'test',
      bitmap: null,
      consistency: 'frozen',
      base: null,
      bytesRead: stored * 2,
      bytesStored: stored,
      chunksStored: 1,
      pageBytesStored: 1,
      durationMs: 1,
    })),
    extra: {},
  } as unknown as Omit<Manifest, 'checksum'>);
}

/** The groups as the backups add them up. */
function expected(db: Database.Database) {
  const out = new Map<number, { vmid: number; backups: number; first: Date; last: Date; lastId: string; bytesRead: number; bytesStored: number }>();
  for (const b of listCatalogBackups(db)) {
    const g = out.get(b.vmid) ?? { vmid: b.vmid, backups: 0, first: b.time, last: b.time, lastId: b.id, bytesRead: 0, bytesStored: 0 };
    g.backups++;
    if (b.time < g.first) g.first = b.time;
    if (b.time >= g.last) [g.last, g.lastId] = [b.time, b.id];
    for (const d of b.disks) [g.bytesRead, g.bytesStored] = [g.bytesRead + d.bytesRead, g.bytesStored + d.bytesStored];
    out.set(b.vmid, g);
  }
  return [...out.values()].sort((a, b) => a.vmid - b.vmid);
}

test('filled by the migration, kept by the triggers: always the sums of the backups', () => {
  const dir = tempDir();
  const file = path.join(dir, 'catalog.sqlite');
  try {
    const before = loadMigrations().filter((m) => m.version < 5);
    let db = openCatalog(file, before);
    const old = new BackupCatalog(db);
    const ms = [manifest(101, 3, [['scsi0', 10]]), manifest(101, 1, [['scsi0', 7], ['virtio1', 5]]), manifest(102, 2, [['scsi0', 3]])];
    for (const m of ms) old.recordBackup(m);
    db.close();
    db = openCatalog(file); // applies 005
    try {
      const c = new BackupCatalog(db);
      expect(listVmGroups(db)).toEqual(expected(db));
      expect(listVmGroups(db).map((g) => [g.vmid, g.backups, g.lastId, g.bytesStored])).toEqual([
        [101, 2, ms[0].id, 22],
        [102, 1, ms[2].id, 3],
      ]);
      // An older backup recorded later keeps the last; a newer one becomes it; re-recording counts once.
      c.recordBackup(manifest(101, 0, [['scsi0', 1]]));
      c.recordBackup(manifest(102, 9, [['scsi0', 4]]));
      c.recordBackup(ms[2]);
      expect(listVmGroups(db)).toEqual(expected(db));
      // Forgetting the last moves it back; forgetting the only one drops the group.
      c.forgetBackup(ms[0].id);
      c.recordBackup(manifest(103, 5, [['scsi0', 8]]));
      c.forgetBackup(formatBackupId(103, new Date(Date.UTC(2026, 0, 6, 2, 0, 0))));
      expect(listVmGroups(db)).toEqual(expected(db));
      expect(listVmGroups(db).map((g) => g.vmid)).toEqual([101, 102]);
      db.prepare('DELETE FROM backups').run(); // as a rebuild clears before refilling
      expect(listVmGroups(db)).toEqual([]);
    } finally {
      db.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
