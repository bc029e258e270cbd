/**
 * Repository operations on an S3 repository (radosgw) beside backup and restore: create/open, the
 * writer locks (live holder refused, a dead holder's lock taken over through S3's copy+delete
 * rename, another host's lock respected), listing, forget (manifest set aside), prune and the
 * removal of partial backups. The manifests come from real backups made in a local repository and
 * copied object by object.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Repository } from '../../daemon/repository/repository';
import type { S3Storage } from '../../daemon/repository/s3-storage';
import { backupImage, seededBytes, tempDir } from '../daemon/repository/repo-test-helpers';
import { dropBucket, makeBucket, s3Env, storageOf } from './s3-test-env';

const env = s3Env();

async function copyTree(from: string, storage: S3Storage, key = ''): Promise<void> {
  for (const name of fs.readdirSync(path.join(from, key))) {
    const rel = key ? `${key}/${name}` : name;
    const st = fs.statSync(path.join(from, rel));
    if (st.isDirectory()) {
      await storage.mkdir(rel);
      await copyTree(from, storage, rel);
    } else {
      await storage.writeAtomic(rel, fs.readFileSync(path.join(from, rel)));
    }
  }
}

describe('repository operations on S3', () => {
  let bucket: string;
  let storage: S3Storage;
  let tmp: string;
  beforeEach(async () => {
    bucket = await makeBucket(env);
    storage = storageOf(env, bucket);
    tmp = tempDir();
  });
  afterEach(async () => {
    await dropBucket(env, bucket);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('is created once, reopened, and refused where no repository is', async () => {
    await expect(Repository.open('ignored', { storage })).rejects.toMatchObject({ code: 'CBT_REPO_NOT_A_REPOSITORY', details: { dir: `s3://${bucket}/repo/` } });
    await Repository.open('ignored', { storage, create: true });
    expect(JSON.parse((await storage.read('.pve-cbt-repository'))!.toString())).toMatchObject({ format: expect.stringMatching(/^pve-cbt-repository-/) });
    const again = await Repository.open('ignored', { storage: storageOf(env, bucket) });
    expect(again.dir).toBe(`s3://${bucket}/repo/`);
    expect(await again.listBackups()).toEqual([]);
  });

  it('one writer per VM: a live holder is refused, a dead one taken over, another host respected', async () => {
    const repo = await Repository.open('x', { storage, create: true });
    const w = await repo.startBackup({ vmid: 100, time: new Date('2026-12-02T04:00:00Z') });
    await expect(repo.startBackup({ vmid: 100 })).rejects.toMatchObject({ code: 'CBT_REPO_LOCKED', details: { holderPid: process.pid } });
    expect(w.id).toBe('vm/100/2026-12-02T04_00_00Z');
    expect(await storage.list('vm/100')).toEqual(['2026-12-02T04_00_00Z']);
    await w.abort();
    expect((await storage.list('.locks')).filter((n) => n.startsWith('vm-'))).toEqual([]);

    // A lock left by a process that is gone (same host): taken over.
    const dead = Number(execFileSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).toString());
    const stale = { pid: dead, procStart: '1', host: os.hostname(), what: 'backup', startedAtMs: Date.now() - 60_000, vmid: 101 };
    await storage.writeAtomic('.locks/vm-101.lock', Buffer.from(JSON.stringify(stale)));
    const w2 = await repo.startBackup({ vmid: 101 });
    expect(JSON.parse((await storage.read('.locks/vm-101.lock'))!.toString())).toMatchObject({ pid: process.pid, vmid: 101 });
    expect((await storage.list('.locks')).filter((n) => n.includes('stale'))).toEqual([]);
    await w2.abort();

    // Another node's lock: held until that node removes it.
    await storage.writeAtomic('.locks/vm-102.lock', Buffer.from(JSON.stringify({ ...stale, host: 'other-node', vmid: 102 })));
    await expect(repo.startBackup({ vmid: 102 })).rejects.toMatchObject({ code: 'CBT_REPO_LOCKED', details: { holderHost: 'other-node' } });
  });

  it('lists, forgets and prunes backups whose manifests are objects; partial backups are removed', async () => {
    const local = await Repository.open(path.join(tmp, 'local'), { create: true, chunkSize: 65536 });
    const img = path.join(tmp, 'disk.raw');
    fs.writeFileSync(img, seededBytes('s3-list', 256 * 1024));
    for (const t of ['2026-12-01T01:00:00Z', '2026-12-01T02:00:00Z', '2026-12-01T03:00:00Z']) {
      await backupImage(local, img, { vmid: 100, time: new Date(t), chunkSize: 65536 });
    }
    await copyTree(path.join(tmp, 'local'), storage);
    await storage.mkdir('vm/100/2026-12-01T04_00_00Z'); // a partial backup: folder without manifest

    const repo = await Repository.open('x', { storage });
    const ids = (await repo.listBackups()).map((b) => b.id);
    expect(ids).toEqual((await local.listBackups()).map((b) => b.id));
    expect((await repo.readManifest(ids[0]!)).disks[0]).toMatchObject({ name: 'scsi0', size: 256 * 1024 });

    await repo.removeBackup(ids[0]!);
    expect((await repo.listBackups()).map((b) => b.id)).toEqual(ids.slice(1));
    expect(await storage.list('vm/100')).not.toContain(ids[0]!.split('/')[2]);
    await expect(repo.removeBackup(ids[0]!)).rejects.toMatchObject({ code: 'CBT_REPO_BACKUP_NOT_FOUND' });

    const marks = await repo.prune({ keepLast: 1 });
    expect(marks.filter((m) => !m.keep).map((m) => m.id)).toEqual([ids[1]]);
    expect((await repo.listBackups()).map((b) => b.id)).toEqual([ids[2]]);

    expect(await repo.cleanupPartials()).toEqual(['vm/100/2026-12-01T04_00_00Z']);
    expect(await storage.list('vm/100')).toEqual([ids[2]!.split('/')[2]]);
  });
});
