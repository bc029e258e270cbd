/**
 * The repository is private whatever the umask (issue 13, point 10): every folder it creates is
 * 0700 and every file 0600, on the real file system, under umask 000.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, tempDir } from './repo-test-helpers';

function walk(dir: string): string[] {
  return fs.readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return fs.lstatSync(p).isDirectory() ? [p, ...walk(p)] : [p];
  });
}

test.each<[1 | 2, string[]]>([
  [1, ['.chunks', '.pages']],
  [2, ['.packs']],
])('format %d: under umask 000 repository folders are 0700 and blob, manifest, index and marker files 0600', async (format, blobDirs) => {
  const dir = tempDir();
  const before = process.umask(0);
  try {
    const root = path.join(dir, 'repo');
    const repo = await Repository.open(root, { create: true, chunkSize: 65536, format });
    const img = path.join(dir, 'disk.img');
    fs.writeFileSync(img, seededBytes('modes', 6 * 65536 + 100));
    const m1 = await backupImage(repo, img, { vmid: 100 });
    await backupImage(repo, img, { vmid: 100, base: { backupId: m1.id, disk: 'scsi0' }, parent: m1.id, dirty: [2] });
    await repo.verify();
    const entries = walk(root);
    const kinds = new Set(entries.map((p) => path.relative(root, p).split(path.sep)[0]));
    expect([...kinds].sort()).toEqual(['.bad', ...blobDirs, '.locks', '.pve-cbt-repository', 'verify-last.json', 'vm'].sort());
    expect(entries.some((p) => p.endsWith('manifest.json'))).toBe(true);
    expect(entries.some((p) => p.endsWith('verify.json'))).toBe(true);
    if (format === 2) expect(entries.filter((p) => p.endsWith('.pack')).length).toBe(entries.filter((p) => p.endsWith('.idx')).length);
    const wrong = [root, ...entries]
      .map((p) => ({ p: path.relative(dir, p), mode: fs.lstatSync(p).mode & 0o777, want: fs.lstatSync(p).isDirectory() ? 0o700 : 0o600 }))
      .filter((e) => e.mode !== e.want)
      .map((e) => `${e.p} ${e.mode.toString(8)}`);
    expect(wrong).toEqual([]);
  } finally {
    process.umask(before);
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
