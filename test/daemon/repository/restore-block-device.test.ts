import { deleteBlob } from './blob-files';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';

/** Restore onto a real block device (a loop device over a file): checked first, then written in place, zeros included. */
const CHUNK = 128 * 1024;
const SIZE = 32 * CHUNK;

describe('restore to a block device', () => {
  let dir: string;
  let device: string | null = null;
  let backing: string;

  beforeAll(() => {
    dir = tempDir();
    backing = path.join(dir, 'backing.img');
    fs.writeFileSync(backing, Buffer.alloc(SIZE, 0xee));
    device = execFileSync('losetup', ['--find', '--show', backing]).toString().trim();
  });
  afterAll(() => {
    if (device) execFileSync('losetup', ['-d', device]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes the disk in place, zero chunks as zeros, and writes nothing when a chunk is bad', async () => {
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK });
    const img = path.join(dir, 'src.img');
    const data = seededBytes('blk', SIZE);
    data.fill(0, 4 * CHUNK, 9 * CHUNK);
    fs.writeFileSync(img, data);
    const m = await backupImage(repo, img, { vmid: 100 });
    await repo.restoreDisk(m.id, 'scsi0', { path: device as string, format: 'raw' });
    expect(sha256File(backing)).toBe(sha256File(img));
    // Without overwrite (the CLI without --force) an existing device is refused and not written.
    fs.writeFileSync(backing, Buffer.alloc(SIZE, 0xee));
    const untouched = sha256File(backing);
    await expect(repo.restoreDisk(m.id, 'scsi0', { path: device as string, format: 'raw', overwrite: false })).rejects.toMatchObject({
      code: 'CBT_RESTORE_TARGET_EXISTS',
      details: { kind: 'block device' },
    });
    expect(sha256File(backing)).toBe(untouched);

    fs.writeFileSync(backing, Buffer.alloc(SIZE, 0xee));
    const before = sha256File(backing);
    const d = crypto.createHash('sha256').update(data.subarray(20 * CHUNK, 21 * CHUNK)).digest('hex');
    await deleteBlob(repo, 'chunk', d);
    await expect(repo.restoreDisk(m.id, 'scsi0', { path: device as string, format: 'raw' })).rejects.toMatchObject({
      code: 'CBT_REPO_RESTORE_FAILED',
      details: { offsets: [20 * CHUNK] },
    });
    expect(sha256File(backing)).toBe(before);
    await expect(repo.restoreDisk(m.id, 'scsi0', { path: device as string, format: 'qcow2' })).rejects.toMatchObject({ code: 'CBT_REPO_RESTORE_FAILED' });
  });
});
