/**
 * Jobs a killed daemon left running, settled at the next start (interrupted-jobs.ts), on a real
 * repository and a real SQLite catalog: a committed backup has its commit finished (catalog row,
 * ledger), but never trusts a bitmap past a lifecycle event stored since the job started; a job
 * without a backup of its own is recorded CBT_JOB_INTERRUPTED.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { createLogger } from 'winston';
import { BackupCatalog } from '../../../daemon/catalog/backup-catalog';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import type { CbtConfig } from '../../../daemon/config/config-schema';
import { Ledger } from '../../../daemon/ledger/ledger';
import { Repository } from '../../../daemon/repository/repository';
import { settleInterruptedJobs } from '../../../daemon/service/interrupted-jobs';

const CHUNK = 64 * 1024;
const VMID = 300;

describe('settleInterruptedJobs', () => {
  let dir: string;
  let db: Database.Database;
  let catalog: BackupCatalog;
  let ledger: Ledger;
  let repo: Repository;
  const logger = createLogger({ silent: true });

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-jobs-'));
    db = openCatalog(path.join(dir, 'catalog.sqlite'));
    catalog = new BackupCatalog(db);
    ledger = new Ledger(db);
    // No catalog sink: the killed daemon never wrote the row, as at the after-manifest-commit kill point.
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK });
  });
  afterEach(async () => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const stores = () => ({ config: { qemuServerRunDir: path.join(dir, 'run') } as CbtConfig, logger, catalog, ledger, repo });

  async function commitBackup(generation: number, time?: Date): Promise<string> {
    const w = await repo.startBackup({ vmid: VMID, ...(time ? { time } : {}) });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: 2 * CHUNK, chunkSize: CHUNK });
    for (let i = 0; i < 2; i++) await d.putChunk(i, Buffer.alloc(CHUNK, generation + i));
    await d.finish({ mode: 'full', reason: 'test', bytesRead: 2 * CHUNK, durationMs: 1, bitmap: { name: `pve-cbt-scsi0-g${generation}`, generation } });
    return (await w.commit()).id;
  }

  const startJob = (id: string, secondsAgo: number) => catalog.recordJobStart({ id, kind: 'backup', vmid: VMID, startedAt: new Date(Date.now() - secondsAgo * 1000) });

  test('a backup committed by the job: job ok, catalog row written, its bitmap valid in the ledger', async () => {
    startJob('job-1', 2);
    const id = await commitBackup(1);
    const settled = await settleInterruptedJobs(stores());
    expect(settled).toEqual([{ jobId: 'job-1', vmid: VMID, backupId: id, bitmaps: [{ disk: 'scsi0', bitmap: 'pve-cbt-scsi0-g1', valid: true }] }]);
    expect(catalog.listJobs({ vmid: VMID })[0]).toMatchObject({ id: 'job-1', status: 'ok', backupId: id });
    expect(catalog.getBackup(id)?.disks[0].bitmapName).toBe('pve-cbt-scsi0-g1');
    expect(ledger.get(VMID, 'scsi0')).toMatchObject({ state: 'valid', bitmapName: 'pve-cbt-scsi0-g1', generation: 1 });
    expect(await settleInterruptedJobs(stores())).toEqual([]);
  });

  test('a QEMU restart stored since the job started leaves the settled transient bitmap invalid', async () => {
    startJob('job-2', 2);
    const id = await commitBackup(1);
    ledger.recordEvent({ vmid: VMID, phase: 'pre-start', source: 'hookscript', time: new Date().toISOString() });
    const [settled] = await settleInterruptedJobs(stores());
    expect(settled).toMatchObject({ backupId: id, bitmaps: [{ disk: 'scsi0', valid: false }] });
    expect(ledger.get(VMID, 'scsi0')?.state).toBe('invalid');
  });

  test('no backup of its own: recorded CBT_JOB_INTERRUPTED, an older job’s backup is not taken', async () => {
    const older = await commitBackup(1, new Date(Date.now() - 60_000));
    catalog.recordJobStart({ id: 'job-old', kind: 'backup', vmid: VMID, startedAt: new Date(Date.now() - 61_000) });
    catalog.recordJobEnd('job-old', { status: 'ok', backupId: older });
    // A job that started in the same second as the older backup must not claim it either.
    catalog.recordJobStart({ id: 'job-3', kind: 'backup', vmid: VMID, startedAt: new Date(Date.parse((await repo.readManifest(older)).time) + 500) });
    const settled = await settleInterruptedJobs(stores());
    expect(settled).toEqual([{ jobId: 'job-3', vmid: VMID, backupId: null, bitmaps: [] }]);
    expect(catalog.listJobs({ vmid: VMID }).find((j) => j.id === 'job-3')).toMatchObject({ status: 'failed', errorCode: 'CBT_JOB_INTERRUPTED' });
    expect(ledger.get(VMID, 'scsi0')).toBeUndefined();
  });
});
