import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';

/**
 * Restore onto a file system that fills up (a real tmpfs, real ENOSPC): the restore fails with
 * CBT_REPO_NO_SPACE, the target name never appears, and once there is room the same restore is exact.
 */
const CHUNK = 256 * 1024;
const SIZE = 64 * CHUNK;

describe('restore onto a full file system', () => {
  let dir: string;
  let mountDir: string;

  beforeAll(() => {
    dir = tempDir();
    mountDir = path.join(dir, 'small');
    fs.mkdirSync(mountDir);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'cbt-test-restore-full', mountDir]);
  });
  afterAll(() => {
    execFileSync('umount', ['-l', mountDir]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('fails with CBT_REPO_NO_SPACE, leaves no target, and succeeds once there is room', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK });
    const img = path.join(dir, 'disk.img');
    fs.writeFileSync(img, seededBytes('restore-full', SIZE));
    const m = await backupImage(repo, img, { vmid: 100 });
    const target = path.join(mountDir, 'restored.raw');

    await expect(repo.restoreDisk(m.id, 'scsi0', { path: target, format: 'raw' })).rejects.toMatchObject({ code: 'CBT_REPO_NO_SPACE' });
    expect(fs.readdirSync(mountDir)).toEqual([]);

    execFileSync('mount', ['-o', 'remount,size=32m', mountDir]);
    await repo.restoreDisk(m.id, 'scsi0', { path: target, format: 'raw' });
    expect(sha256File(target)).toBe(sha256File(img));
  });
});
