import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';

const CHUNK = 128 * 1024;

describe('repository round trips', () => {
  let dir: string;
  let repo: Repository;

  beforeAll(async () => {
    dir = tempDir();
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const images: [string, (size: number) => Buffer][] = [
    ['random', (n) => seededBytes('random', n)],
    ['compressible', (n) => Buffer.from('pve-cbt compressible line of text 0123456789\n'.repeat(Math.ceil(n / 40))).subarray(0, n)],
    [
      'sparse',
      (n) => {
        const b = Buffer.alloc(n);
        seededBytes('s1', 5000).copy(b, 3 * CHUNK + 100);
        seededBytes('s2', 70000).copy(b, n - 70000);
        return b;
      },
    ],
    ['all-zero', (n) => Buffer.alloc(n)],
  ];

  it.each(images)('%s image of a size that is not a multiple of the chunk size restores byte-exact', async (name, make) => {
    const size = 7 * CHUNK + 12345;
    const img = path.join(dir, `${name}.img`);
    fs.writeFileSync(img, make(size));
    const m = await backupImage(repo, img, { vmid: 100 + images.findIndex((x) => x[0] === name) });
    expect(m.disks[0].size).toBe(size);
    const out = path.join(dir, `${name}.restored`);
    const r = await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
    expect(r.bytes).toBe(size);
    expect(sha256File(out)).toBe(sha256File(img));
  });

  it('restores lz4 chunks from a process whose working directory is / (as under systemd)', async () => {
    const img = path.join(dir, 'cwd.img');
    fs.writeFileSync(img, Buffer.from('compressible text for the worker threads\n'.repeat(20000)));
    const m = await backupImage(repo, img, { vmid: 150 });
    const out = path.join(dir, 'cwd.restored');
    const cwd = process.cwd();
    process.chdir('/');
    try {
      await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
    } finally {
      process.chdir(cwd);
    }
    expect(sha256File(out)).toBe(sha256File(img));
    expect(m.disks[0].bytesStored).toBeLessThan(fs.statSync(img).size / 4);
  });

  it('zero chunks are never stored and restore as holes', async () => {
    const size = 64 * CHUNK;
    const img = path.join(dir, 'holes.img');
    const b = Buffer.alloc(size);
    seededBytes('h', CHUNK).copy(b, 10 * CHUNK);
    fs.writeFileSync(img, b);
    const m = await backupImage(repo, img, { vmid: 200 });
    expect(m.disks[0].chunksStored).toBe(1);
    const out = path.join(dir, 'holes.restored');
    await repo.restoreDisk(m.id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(sha256File(img));
    expect(fs.statSync(out).blocks * 512).toBeLessThanOrEqual(2 * CHUNK);
  });

  it('an incremental through a cloned base index restores byte-exact and writes only changed pages', async () => {
    const size = 100 * CHUNK + 777;
    const img = path.join(dir, 'inc.img');
    const data = seededBytes('inc-base', size);
    fs.writeFileSync(img, data);
    const full = await backupImage(repo, img, { vmid: 300 });
    const dirty = [0, 17, 60, 100];
    for (const i of dirty) seededBytes(`change-${i}`, 1000).copy(data, i * CHUNK + 5);
    fs.writeFileSync(img, data);
    const inc = await backupImage(repo, img, { vmid: 300, base: { backupId: full.id, disk: 'scsi0' }, parent: full.id, dirty });
    expect(inc.disks[0].chunksStored).toBe(dirty.length);
    const pageBytes = 20 + inc.disks[0].pageEntries * 32;
    expect(inc.disks[0].pageBytesStored).toBeLessThanOrEqual(dirty.length * pageBytes);
    const out = path.join(dir, 'inc.restored');
    await repo.restoreDisk(inc.id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(sha256File(img));
    expect((await repo.listBackups(300)).map((b) => b.id)).toEqual([full.id, inc.id]);
  });
});
