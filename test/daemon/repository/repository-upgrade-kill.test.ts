import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File } from './repo-test-helpers';
import { killHard, killRig, startMaintenanceChild } from './kill-child-helpers';

/**
 * kill -9 of `repository upgrade` (format 1 → 2) at four points: with an unsealed pack open in the
 * middle of the copy, right after a pack was sealed and recorded, with every pack sealed but the
 * marker not switched yet, and after the switch before the format-1 folders are removed. Each time,
 * before and after running the upgrade again: every backup is listed, restores byte for byte and
 * verifies; backups wait while the upgrade is unfinished; the finished repository is format 2
 * without `.chunks/`, `.pages/` or `.upgrade/`, and takes new backups.
 */
const CHUNK = 64 * 1024;
const SEAL = 256 * 1024;

describe('kill -9 of the format 1 → 2 upgrade', () => {
  const rig = killRig();

  /** A format-1 repository: a full and an incremental of VM 100, a full of VM 101; the images' SHA-256 at backup time. */
  async function format1Repo(name: string): Promise<{ repoDir: string; backups: { id: string; disk: string; sha: string }[] }> {
    const repoDir = path.join(rig.dir, name);
    const repo = await Repository.open(repoDir, { create: true, format: 1, chunkSize: CHUNK });
    const img = path.join(rig.dir, `${name}.img`);
    const data = seededBytes(name, 48 * CHUNK);
    data.fill(0, 10 * CHUNK, 14 * CHUNK);
    data.fill(9, 20 * CHUNK, 22 * CHUNK);
    fs.writeFileSync(img, data);
    const backups: { id: string; disk: string; sha: string }[] = [];
    const full = await backupImage(repo, img, { vmid: 100 });
    backups.push({ id: full.id, disk: 'scsi0', sha: sha256File(img) });
    seededBytes(`${name}-inc`, 5 * CHUNK).copy(data, 30 * CHUNK);
    fs.writeFileSync(img, data);
    const inc = await backupImage(repo, img, { vmid: 100, parent: full.id, base: { backupId: full.id, disk: 'scsi0' }, dirty: [30, 31, 32, 33, 34] });
    backups.push({ id: inc.id, disk: 'scsi0', sha: sha256File(img) });
    const other = path.join(rig.dir, `${name}-b.img`);
    fs.writeFileSync(other, seededBytes(`${name}-b`, 20 * CHUNK));
    const b = await backupImage(repo, other, { vmid: 101, disk: 'virtio0' });
    backups.push({ id: b.id, disk: 'virtio0', sha: sha256File(other) });
    return { repoDir, backups };
  }

  async function expectAllRestore(repoDir: string, backups: { id: string; disk: string; sha: string }[]): Promise<Repository> {
    const repo = await Repository.open(repoDir);
    expect((await repo.listBackups()).map((b) => b.id).sort()).toEqual(backups.map((b) => b.id).sort());
    const report = await repo.verify();
    expect(report.backups.filter((b) => !b.ok)).toEqual([]);
    expect(report.ok).toBe(true);
    for (const b of backups) {
      const out = path.join(rig.dir, 'restored.raw');
      await repo.restoreDisk(b.id, b.disk, { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(b.sha);
      fs.rmSync(out);
    }
    return repo;
  }

  const marker = (repoDir: string): string => JSON.parse(fs.readFileSync(path.join(repoDir, '.pve-cbt-repository'), 'utf8')).format;

  it.each([
    ['copy#200', 'pve-cbt-repository-1'],
    ['sealed#2', 'pve-cbt-repository-1'],
    ['copied', 'pve-cbt-repository-1'],
    ['switched', 'pve-cbt-repository-2'],
  ])('killed at %s', async (point, formatAfterKill) => {
    const { repoDir, backups } = await format1Repo(`at-${point.replace('#', '-')}`);
    const { child, reached } = startMaintenanceChild(rig, repoDir, 'upgrade', point, SEAL);
    expect(await reached).toBe(`AT ${point}`);
    await killHard(child);

    // Killed: still whole in the format the marker says; backups wait.
    expect(marker(repoDir)).toBe(formatAfterKill);
    const killed = await expectAllRestore(repoDir, backups);
    await expect(killed.startBackup({ vmid: 102 })).rejects.toMatchObject({ code: 'CBT_REPO_UPGRADE_IN_PROGRESS' });

    // Run again (the dead child's gc.lock is stale and taken over): finished.
    const report = await killed.upgrade({ sealBytes: SEAL });
    expect(report.resumed).toBe(true);
    expect(report.blobsSkipped).toEqual([]);
    expect(marker(repoDir)).toBe('pve-cbt-repository-2');
    for (const gone of ['.chunks', '.pages', '.upgrade']) expect(fs.existsSync(path.join(repoDir, gone))).toBe(false);
    const leftovers = fs.readdirSync(path.join(repoDir, '.packs')).flatMap((s) => fs.readdirSync(path.join(repoDir, '.packs', s)));
    expect(leftovers.filter((n) => n.endsWith('.pack')).every((n) => leftovers.includes(n.replace(/\.pack$/, '.idx')))).toBe(true);

    const repo = await expectAllRestore(repoDir, backups);
    await repo.gc({ graceMs: 0 });
    await expectAllRestore(repoDir, backups);
    const img = path.join(rig.dir, 'after.img');
    fs.writeFileSync(img, seededBytes(`after-${point}`, 12 * CHUNK));
    const m = await backupImage(repo, img, { vmid: 102 });
    await expectAllRestore(repoDir, [...backups, { id: m.id, disk: 'scsi0', sha: sha256File(img) }]);
  });
});
