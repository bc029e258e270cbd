/**
 * A format-2 repository with sparse packs, for the repack tests: full backups of two VMs, then
 * incrementals that rewrite most of their chunks, then the fulls forgotten, so the fulls' packs
 * hold mostly dead blobs. Returns the backups left with the SHA-256 of their images.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File } from './repo-test-helpers';
import { decodePackIndex } from '../../../daemon/repository/pack-index-file';

export const REPACK_CHUNK = 64 * 1024;
const CHUNKS = 40;

export interface KeptBackup {
  id: string;
  disk: string;
  sha: string;
}

export async function sparsePackRepo(dir: string, name: string): Promise<{ repoDir: string; kept: KeptBackup[] }> {
  const repoDir = path.join(dir, name);
  const repo = await Repository.open(repoDir, { create: true, chunkSize: REPACK_CHUNK });
  const kept: KeptBackup[] = [];
  for (const vmid of [100, 101]) {
    const img = path.join(dir, `${name}-${vmid}.img`);
    const data = seededBytes(`${name}-${vmid}`, CHUNKS * REPACK_CHUNK);
    fs.writeFileSync(img, data);
    const full = await backupImage(repo, img, { vmid });
    const dirty = Array.from({ length: 30 }, (_, i) => i + 5);
    seededBytes(`${name}-${vmid}-inc`, 30 * REPACK_CHUNK).copy(data, 5 * REPACK_CHUNK);
    fs.writeFileSync(img, data);
    const inc = await backupImage(repo, img, { vmid, parent: full.id, base: { backupId: full.id, disk: 'scsi0' }, dirty });
    await repo.removeBackup(full.id);
    kept.push({ id: inc.id, disk: 'scsi0', sha: sha256File(img) });
  }
  return { repoDir, kept };
}

/** Every kept backup is listed, verifies and restores byte for byte. */
export async function expectKeptRestore(repoDir: string, kept: KeptBackup[], scratch: string): Promise<Repository> {
  const repo = await Repository.open(repoDir);
  const listed = (await repo.listBackups()).map((b) => b.id);
  for (const k of kept) expect(listed).toContain(k.id);
  for (const d of await repo.listBackupDirs()) if (!d.hasManifest) expect(listed).not.toContain(d.id);
  const report = await repo.verify();
  expect(report.backups.filter((b) => !b.ok)).toEqual([]);
  for (const k of kept) {
    const out = path.join(scratch, 'restored.raw');
    await repo.restoreDisk(k.id, k.disk, { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(k.sha);
    fs.rmSync(out);
  }
  return repo;
}

/** Pack ids with an .idx, and .pack files without one. */
export function packFiles(repoDir: string): { sealed: string[]; unsealed: string[]; aside: string[] } {
  const root = path.join(repoDir, '.packs');
  const names = fs.existsSync(root) ? fs.readdirSync(root).flatMap((s) => fs.readdirSync(path.join(root, s))) : [];
  const sealed = names.filter((n) => /^[0-9a-f]{32}\.idx$/.test(n)).map((n) => n.slice(0, 32)).sort();
  const unsealed = names.filter((n) => /^[0-9a-f]{32}\.pack$/.test(n) && !sealed.includes(n.slice(0, 32))).map((n) => n.slice(0, 32));
  const aside = names.filter((n) => n.includes('.idx.gc-'));
  return { sealed, unsealed, aside };
}

/** Ids of the sealed packs whose .idx lists `digest` (hex). */
export function packsHolding(repoDir: string, digest: string): string[] {
  const want = Buffer.from(digest, 'hex');
  return packFiles(repoDir).sealed.filter((id) => {
    const idx = decodePackIndex(fs.readFileSync(path.join(repoDir, '.packs', id.slice(0, 2), `${id}.idx`)));
    if ('corrupt' in idx) return false;
    for (let i = 0; i < idx.count; i++) if (idx.entries.subarray(i * 52, i * 52 + 32).equals(want)) return true;
    return false;
  });
}
