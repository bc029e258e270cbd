import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import type Database from 'better-sqlite3';
import { Repository } from '../../../daemon/repository/repository';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { BackupCatalog } from '../../../daemon/catalog/backup-catalog';
import { backupImage, seededBytes, sha256File } from './repo-test-helpers';
import { killHard, killRig } from './kill-child-helpers';
import { packFiles } from './repack-fixture';
import { KILL_POINT_ENV } from '../../../daemon/service/test-kill-point';

/**
 * kill -9 of a process writing a backup, at named points and at random moments: no partial
 * backup is listed, the repository verifies, the catalog rebuilt from it matches the repository,
 * and the VM can be backed up again. The child runs the repository compiled to a temp folder.
 */
const ROOT = path.resolve(__dirname, '../../..');
const CHUNK = 128 * 1024;

/** A chunk as fixtures/kill-writer-child.js writes it (its `chunkData`). */
function childChunk(seed: string, i: number): Buffer {
  const key = crypto.createHash('sha256').update(`${seed}:${i}`).digest();
  return crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(CHUNK));
}

describe('kill -9 of a backup writer', () => {
  const rig = killRig([
    'daemon/catalog/backup-catalog.ts',
    'daemon/catalog/open-catalog.ts',
    ...fs
      .readdirSync(path.join(ROOT, 'daemon/catalog/migrations'))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => `daemon/catalog/migrations/${f}`),
  ]);

  function runChild(repoDir: string, catalogFile: string, point: string, base: string | null, env: Record<string, string> = {}): { child: ChildProcess; reached: Promise<string> } {
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures/kill-writer-child.js'), rig.build, repoDir, catalogFile, '100', point, base ?? '-'], {
      env: { ...process.env, NODE_PATH: path.join(ROOT, 'node_modules'), ...env },
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

  // Issue 15, "a crash mid-pack leaves nothing that a later backup trusts": the child kills itself
  // (SIGKILL) in sealPack with its first pack durable and no .idx written for it.
  it('format 2: killed between a pack\'s fsync and the write of its .idx', async () => {
    const { repoDir, catalogFile, base } = await freshRepo('at-pack-synced');
    const { child, reached } = runChild(repoDir, catalogFile, 'none', base.id, { [KILL_POINT_ENV]: 'pack-synced-before-idx' });
    reached.catch(() => undefined); // it never says AT or DONE: it dies at the kill point
    let stdout = '';
    child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once('exit', (_code, sig) => resolve(sig)));
    expect([signal, stdout]).toEqual(['SIGKILL', '']);
    const orphans = packFiles(repoDir).unsealed;
    expect(orphans.length).toBeGreaterThan(0);

    // The next backup: the killed backup is not listed, verify passes, and a backup of the very
    // data the child was writing stores it anew (the orphan's blobs are in no .idx, so no lookup).
    const repo = await Repository.open(repoDir);
    expect((await repo.listBackups()).map((b) => b.id)).toEqual([base.id]);
    expect((await repo.verify()).ok).toBe(true);
    const img = path.join(rig.dir, 'at-pack-synced-again.img');
    const data = Buffer.alloc(48 * CHUNK);
    for (let i = 0; i < 48; i++) if (i % 5 !== 0) childChunk('seed-none', i).copy(data, i * CHUNK);
    fs.writeFileSync(img, data);
    const next = await backupImage(repo, img, { vmid: 100, chunkSize: CHUNK });

    // GC removes the orphan; both backups still restore byte for byte and verify.
    await repo.gc({ graceMs: 0 });
    const after = packFiles(repoDir);
    for (const id of orphans) expect(after.unsealed).not.toContain(id);
    expect(after.unsealed).toEqual([]);
    expect((await repo.verify()).ok).toBe(true);
    for (const [id, sha] of [[base.id, base.sha], [next.id, sha256File(img)]]) {
      const out = path.join(rig.dir, 'restored.raw');
      await repo.restoreDisk(id, 'scsi0', { path: out, format: 'raw' });
      expect(sha256File(out)).toBe(sha);
      fs.rmSync(out);
    }
    await checkAfterKill(repoDir, catalogFile, [base.id, next.id], base);
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
