import { flipBlobByte } from '../repository/blob-files';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { BackupCatalog } from '../../../daemon/catalog/backup-catalog';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, tempDir } from '../repository/repo-test-helpers';

const CHUNK = 128 * 1024;

function dump(db: Database.Database): unknown {
  return {
    backups: db.prepare('SELECT * FROM backups ORDER BY id').all(),
    disks: db.prepare('SELECT * FROM backup_disks ORDER BY backup_id, disk').all(),
    bad: db.prepare('SELECT * FROM bad_chunks ORDER BY backup_id, disk, offset').all(),
  };
}

describe('backup catalog', () => {
  let dir: string;
  let db: Database.Database;
  let catalog: BackupCatalog;
  let repo: Repository;

  beforeAll(async () => {
    dir = tempDir();
    db = openCatalog(path.join(dir, 'catalog.db'));
    catalog = new BackupCatalog(db);
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK, catalog });
  });
  afterAll(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('records commits, removals and verify results, and a rebuild from the repository yields the same tables', async () => {
    const img = path.join(dir, 'a.img');
    const data = seededBytes('cat', 20 * CHUNK + 99);
    fs.writeFileSync(img, data);
    const b1 = await backupImage(repo, img, { vmid: 101 });
    seededBytes('cat2', 100).copy(data, 3 * CHUNK);
    fs.writeFileSync(img, data);
    const b2 = await backupImage(repo, img, { vmid: 101, base: { backupId: b1.id, disk: 'scsi0' }, parent: b1.id, dirty: [3] });
    const b3 = await backupImage(repo, img, { vmid: 102, disk: 'virtio1' });
    const b4 = await backupImage(repo, img, { vmid: 103 });

    const byTime = [b1, b2, b3, b4].sort((x, y) => x.time.localeCompare(y.time) || x.vmid - y.vmid).map((m) => m.id);
    expect(catalog.listBackups().map((b) => b.id)).toEqual(byTime);
    expect(catalog.getBackup(b2.id)).toMatchObject({ vmid: 101, parent: b1.id, disks: [{ disk: 'scsi0', mode: 'incremental', size: data.length }] });

    await repo.removeBackup(b4.id);
    expect(catalog.getBackup(b4.id)).toBeNull();

    // Corrupt the chunk only b2 has, verify, and check the catalog marks b2 bad with the offset.
    const digest = crypto.createHash('sha256').update(data.subarray(3 * CHUNK, 4 * CHUNK)).digest('hex');
    await flipBlobByte(repo, 'chunk', digest, 1, 0xff);
    const report = await repo.verify();
    expect(report.ok).toBe(false);
    expect(catalog.getBackup(b2.id)?.verifyState).toBe('failed');
    expect(catalog.getBackup(b1.id)?.verifyState).toBe('ok');
    expect(catalog.badChunks(b2.id)).toEqual([expect.objectContaining({ disk: 'scsi0', offset: 3 * CHUNK, kind: 'chunk', digest, problem: 'corrupt' })]);

    const db2 = openCatalog(path.join(dir, 'rebuilt.db'));
    try {
      const rebuilt = new BackupCatalog(db2);
      expect(await rebuilt.rebuildFromRepository(repo)).toEqual({ backups: 3 });
      expect(dump(db2)).toEqual(dump(db));
    } finally {
      db2.close();
    }
  });

  it('records jobs from start to end', () => {
    catalog.recordJobStart({ id: 'job-1', kind: 'backup', vmid: 101, startedAt: new Date('2026-01-01T00:00:00Z') });
    catalog.recordJobStart({ id: 'job-2', kind: 'gc', startedAt: new Date('2026-01-02T00:00:00Z') });
    expect(catalog.listJobs({ vmid: 101 })).toEqual([expect.objectContaining({ id: 'job-1', status: 'running', endedAt: null })]);
    catalog.recordJobEnd('job-1', { status: 'failed', error: { code: 'CBT_REPO_NO_SPACE', message: 'full' }, result: { disks: 1 } });
    catalog.recordJobEnd('job-2', { status: 'ok', result: { chunksRemoved: 3 } });
    const jobs = catalog.listJobs();
    expect(jobs.map((j) => j.id)).toEqual(['job-2', 'job-1']);
    expect(jobs[1]).toMatchObject({ status: 'failed', errorCode: 'CBT_REPO_NO_SPACE', result: { disks: 1 } });
    expect(jobs[0]).toMatchObject({ status: 'ok', result: { chunksRemoved: 3 } });
  });
});
