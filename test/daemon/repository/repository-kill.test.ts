import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type Database from 'better-sqlite3';
import { Repository } from '../../../daemon/repository/repository';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { BackupCatalog } from '../../../daemon/catalog/backup-catalog';
import { backupImage, seededBytes, sha256File } from './repo-test-helpers';
import { killHard, killRig } from './kill-child-helpers';

/**
 * kill -9 of a process writing a backup, at named points and at random moments: no partial
 * backup is listed, the repository verifies, the catalog rebuilt from it matches the repository,
 * and the VM can be backed up again. The child runs the repository compiled to a temp folder.
 */
const ROOT = path.resolve(__dirname, '../../..');
const CHUNK = 128 * 1024;


describe('kill -9 of a backup writer', () => {
  const rig = killRig([
    'daemon/catalog/backup-catalog.ts',
    'daemon/catalog/open-catalog.ts',
    ...fs
      .readdirSync(path.join(ROOT, 'daemon/catalog/migrations'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => `daemon/catalog/migrations/${f}`),
  ]);

  function runChild(repoDir: string, catalogFile: string, point: string, base: string | null): { child: ChildProcess; reached: Promise<string> } {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures/kill-writer-child.js'), rig.build, repoDir, catalogFile, '100', point, base ?? '-'], {
      env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    rig.children.push(child);
    let out = '';
    let err = '';
    const reached = new Promise<string>((resolve, reject) => {
      child.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /^(AT \S+|DONE)$/m.exec(out);
        if (m) resolve(m[1]);
      });
      child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
      child.on('exit', (code) => reject(new Error(`child exited (${code}) before reaching ${point}: ${err}`)));
    });
    return { child, reached };
  }

  async function checkAfterKill(repoDir: string, catalogFile: string, committedBefore: string[], base: { id: string; sha: string }): Promise<void> {
    const repo = await Repository.open(repoDir);
    const listed = (await repo.listBackups()).map((b) => b.id);
    for (const id of committedBefore) expect(listed).toContain(id);
    for (const d of await repo.listBackupDirs()) if (!d.hasManifest) expect(listed).not.toContain(d.id);
    const report = await repo.verify();
    expect(report.backups.filter((b) => !b.ok)).toEqual([]);

    const db: Database.Database = openCatalog(catalogFile);
    try {
      const catalog = new BackupCatalog(db);
      for (const b of catalog.listBackups()) expect(listed).toContain(b.id);
      await catalog.rebuildFromRepository(repo);
      expect(catalog.listBackups().map((b) => b.id)).toEqual(listed);
    } finally {
      db.close();
    }

    const gc = await repo.gc({ graceMs: 0 });
    expect((await repo.listBackupDirs()).every((d) => d.hasManifest)).toBe(true);
    expect(gc.partialsRemoved.every((id) => !listed.includes(id))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
    const out = path.join(rig.dir, 'restored.raw');
    await repo.restoreDisk(base.id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(base.sha);
    fs.rmSync(out);
    const w = await repo.startBackup({ vmid: 100 });
    await w.abort();
  }

  async function freshRepo(name: string, format: 1 | 2 = 2): Promise<{ repoDir: string; catalogFile: string; base: { id: string; sha: string } }> {
    const repoDir = path.join(rig.dir, name);
    const catalogFile = path.join(rig.dir, `${name}.db`);
    const db = openCatalog(catalogFile);
    const repo = await Repository.open(repoDir, { create: true, chunkSize: CHUNK, catalog: new BackupCatalog(db), format });
    const img = path.join(rig.dir, `${name}.img`);
    fs.writeFileSync(img, seededBytes(name, 48 * CHUNK));
    const m = await backupImage(repo, img, { vmid: 100 });
    db.close();
    return { repoDir, catalogFile, base: { id: m.id, sha: sha256File(img) } };
  }

  // Format 2 (packs sealed every 4 chunks by the child: kills land between seals) and format 1.
  it.each<[1 | 2, string]>(
    ([2, 1] as const).flatMap((f) => ['started', 'opened', 'mid-chunks', 'finished', 'committed'].map((p): [1 | 2, string] => [f, p])),
  )('format %d: killed at %s', async (format, point) => {
    const { repoDir, catalogFile, base } = await freshRepo(`at-${point}-f${format}`, format);
    const { child, reached } = runChild(repoDir, catalogFile, point, base.id);
    expect(await reached).toBe(`AT ${point}`);
    await killHard(child);
    const repo = await Repository.open(repoDir);
    const listed = (await repo.listBackups()).map((b) => b.id);
    expect(listed.length).toBe(point === 'committed' ? 2 : 1);
    await checkAfterKill(repoDir, catalogFile, [base.id], base);
  });

  it('killed at random moments while writing backup after backup', async () => {
    const { repoDir, catalogFile, base } = await freshRepo('loop');
    for (const delayMs of [150, 400, 700, 1100]) {
      const before = (await (await Repository.open(repoDir)).listBackups()).map((b) => b.id);
      const latest = before[before.length - 1];
      const { child, reached } = runChild(repoDir, catalogFile, 'loop', latest);
      await reached;
      await new Promise((r) => setTimeout(r, delayMs));
      await killHard(child);
      await checkAfterKill(repoDir, catalogFile, before, base);
    }
    // The child did get backups committed between the kills (so kills hit a busy writer).
    expect((await (await Repository.open(repoDir)).listBackups()).length).toBeGreaterThan(1);
  });
});
