import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { LocalDirStorage } from '../../../daemon/repository/storage';
import { RepositoryLocks } from '../../../daemon/repository/repository-lock';
import { upgradeRepository, type UpgradeOptions } from '../../../daemon/repository/upgrade-repository';
import { REPOSITORY_FORMAT_2 as FORMAT_2 } from '../../../daemon/repository/repository';
import { readUpgradeState } from '../../../daemon/repository/upgrade-state';
import { decodePackIndex, entryAt } from '../../../daemon/repository/pack-index-file';
import { isPackHeader } from '../../../daemon/repository/pack-format';
import { backupImage, seededBytes, tempDir } from './repo-test-helpers';

/**
 * The format 1 → 2 upgrade on real format-1 repositories (written by the format-1 code): every
 * intact blob ends up, byte for byte, in a sealed pack; damaged ones are skipped and listed; an
 * interrupted run resumes without redoing what it recorded; backups wait while it runs.
 */
const CHUNK = 64 * 1024;

function blobFiles(repoDir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const dir of ['.chunks', '.pages']) {
    const root = path.join(repoDir, dir);
    if (!fs.existsSync(root)) continue;
    for (const shard of fs.readdirSync(root)) {
      for (const name of fs.readdirSync(path.join(root, shard))) {
        if (/^[0-9a-f]{64}$/.test(name)) out.set(`${dir === '.chunks' ? 'chunk' : 'page'}:${name}`, fs.readFileSync(path.join(root, shard, name)));
      }
    }
  }
  return out;
}

/** Every blob in every sealed pack, as "kind:digest" → stored bytes read from the pack at its offset. */
function packedBlobs(repoDir: string): { blobs: Map<string, Buffer[]>; packs: number; unsealed: number } {
  const blobs = new Map<string, Buffer[]>();
  let packs = 0;
  let unsealed = 0;
  const root = path.join(repoDir, '.packs');
  for (const shard of fs.existsSync(root) ? fs.readdirSync(root) : []) {
    for (const name of fs.readdirSync(path.join(root, shard))) {
      const file = path.join(root, shard, name);
      if (name.endsWith('.pack') && !fs.existsSync(file.replace(/\.pack$/, '.idx'))) unsealed++;
      if (!name.endsWith('.idx')) continue;
      packs++;
      const idx = decodePackIndex(fs.readFileSync(file));
      if ('corrupt' in idx) throw new Error(`${name}: ${idx.corrupt}`);
      const pack = fs.readFileSync(file.replace(/\.idx$/, '.pack'));
      expect(isPackHeader(pack)).toBe(true);
      for (let i = 0; i < idx.count; i++) {
        const e = entryAt(idx.entries, i);
        const key = `${e.kind}:${e.digest.toString('hex')}`;
        blobs.set(key, [...(blobs.get(key) ?? []), pack.subarray(e.offset, e.offset + e.storedLength)]);
      }
    }
  }
  return { blobs, packs, unsealed };
}

/** Each blob of `expected` is in exactly one pack, byte for byte (Buffer.equals: jest's deep equality is slow on buffers). */
function expectSameBlobs(packed: Map<string, Buffer[]>, expected: Map<string, Buffer>): void {
  const wrong = [...expected].filter(([k, b]) => packed.get(k)?.length !== 1 || !packed.get(k)![0].equals(b)).map(([k]) => k);
  expect(wrong).toEqual([]);
}

async function format1Repo(dir: string, name: string): Promise<string> {
  const repoDir = path.join(dir, name);
  const repo = await Repository.open(repoDir, { create: true, format: 1, chunkSize: CHUNK });
  const img = path.join(dir, `${name}.img`);
  const data = seededBytes(name, 40 * CHUNK);
  data.fill(0, 8 * CHUNK, 12 * CHUNK); // zero chunks are not stored
  data.fill(7, 20 * CHUNK, 24 * CHUNK); // compressible chunks are stored lz4
  fs.writeFileSync(img, data);
  const full = await backupImage(repo, img, { vmid: 100 });
  seededBytes(`${name}-2`, 3 * CHUNK).copy(data, 30 * CHUNK);
  fs.writeFileSync(img, data);
  await backupImage(repo, img, { vmid: 100, parent: full.id, base: { backupId: full.id, disk: 'scsi0' }, dirty: [30, 31, 32] });
  await backupImage(repo, img, { vmid: 101, disk: 'virtio0' });
  return repoDir;
}

function deps(repoDir: string) {
  const storage = new LocalDirStorage(repoDir);
  return { dir: repoDir, storage, locks: new RepositoryLocks(storage), tool: 'pve-cbt test' };
}

describe('upgradeRepository (format 1 → 2)', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('copies every blob raw into sealed packs, switches the marker, removes the format-1 folders', async () => {
    const repoDir = await format1Repo(dir, 'plain');
    const before = blobFiles(repoDir);
    expect(before.size).toBeGreaterThan(20);
    const openedBefore = await Repository.open(repoDir);
    const report = await upgradeRepository(deps(repoDir), { sealBytes: 256 * 1024 });
    // A repository object (a running daemon) opened as format 1 refuses to back up into format 2.
    await expect(openedBefore.startBackup({ vmid: 100 })).rejects.toMatchObject({ code: 'CBT_REPO_FORMAT_CHANGED' });
    expect(report).toMatchObject({ from: 'pve-cbt-repository-1', to: FORMAT_2, alreadyUpgraded: false, resumed: false, blobsSkipped: [] });
    expect(report.blobsCopied).toBe(before.size);
    const after = packedBlobs(repoDir);
    expect(after.unsealed).toBe(0);
    expect(after.packs).toBe(report.packsSealed);
    expect(after.packs).toBeGreaterThan(3);
    expect([...after.blobs.keys()].sort()).toEqual([...before.keys()].sort());
    expectSameBlobs(after.blobs, before);
    const marker = JSON.parse(fs.readFileSync(path.join(repoDir, '.pve-cbt-repository'), 'utf8'));
    expect(marker).toMatchObject({ format: FORMAT_2, chunkSize: 64 * 1024, encryption: null });
    for (const gone of ['.chunks', '.pages', '.upgrade']) expect(fs.existsSync(path.join(repoDir, gone))).toBe(false);
    expect(fs.readdirSync(path.join(repoDir, 'vm/100')).length).toBe(2);

    const again = await upgradeRepository(deps(repoDir));
    expect(again).toMatchObject({ alreadyUpgraded: true, packsSealed: 0, blobsCopied: 0 });
  });

  it('skips damaged blobs (truncated, flipped, empty) and lists them', async () => {
    const repoDir = await format1Repo(dir, 'damaged');
    const before = blobFiles(repoDir);
    const keys = [...before.keys()].filter((k) => k.startsWith('chunk:'));
    const file = (key: string) => path.join(repoDir, '.chunks', key.slice(6, 8), key.slice(6));
    fs.truncateSync(file(keys[0]), 30);
    const flipped = Buffer.from(before.get(keys[1])!);
    flipped[flipped.length - 1] ^= 1;
    fs.writeFileSync(file(keys[1]), flipped);
    fs.writeFileSync(file(keys[2]), '');
    const report = await upgradeRepository(deps(repoDir), { sealBytes: 256 * 1024 });
    expect(report.blobsSkipped.map((s) => s.cursor).sort()).toEqual(keys.slice(0, 3).sort());
    expect(report.blobsCopied).toBe(before.size - 3);
    const after = packedBlobs(repoDir);
    for (const k of keys.slice(0, 3)) expect(after.blobs.has(k)).toBe(false);
    expectSameBlobs(after.blobs, new Map(keys.slice(3).map((k) => [k, before.get(k)!])));
  });

  it('resumes after an interruption without copying recorded packs again', async () => {
    const repoDir = await format1Repo(dir, 'resume');
    const before = blobFiles(repoDir);
    const stopAt: UpgradeOptions['onProgress'] = (done, _t, phase) => {
      if (phase === 'sealed' && done === 2) throw new Error('stop here');
    };
    await expect(upgradeRepository(deps(repoDir), { sealBytes: 256 * 1024, onProgress: stopAt })).rejects.toThrow('stop here');
    const state = await readUpgradeState(new LocalDirStorage(repoDir));
    expect(state.start).not.toBeNull();
    expect(state.records.length).toBe(2);
    const firstPacks = state.records.map((r) => r.packId);
    // Still format 1, and backups wait.
    const repo = await Repository.open(repoDir);
    await expect(repo.startBackup({ vmid: 102 })).rejects.toMatchObject({ code: 'CBT_REPO_UPGRADE_IN_PROGRESS' });
    expect(JSON.parse(fs.readFileSync(path.join(repoDir, '.pve-cbt-repository'), 'utf8')).format).toBe('pve-cbt-repository-1');

    const report = await upgradeRepository(deps(repoDir), { sealBytes: 256 * 1024 });
    expect(report.resumed).toBe(true);
    expect(report.blobsCopied).toBe(before.size - state.records.reduce((n, r) => n + r.blobs, 0));
    const after = packedBlobs(repoDir);
    expectSameBlobs(after.blobs, before);
    for (const id of firstPacks) expect(fs.existsSync(path.join(repoDir, '.packs', id.slice(0, 2), `${id}.idx`))).toBe(true);
  });

  it('refuses while a backup runs, leaving nothing behind', async () => {
    const repoDir = await format1Repo(dir, 'busy');
    const repo = await Repository.open(repoDir);
    const w = await repo.startBackup({ vmid: 105 });
    try {
      await expect(upgradeRepository(deps(repoDir))).rejects.toMatchObject({ code: 'CBT_REPO_UPGRADE_BUSY' });
      expect(fs.existsSync(path.join(repoDir, '.upgrade'))).toBe(false);
      expect(fs.existsSync(path.join(repoDir, '.packs'))).toBe(false);
    } finally {
      await w.abort();
    }
    expect((await upgradeRepository(deps(repoDir))).blobsCopied).toBeGreaterThan(0);
  });

  it('refuses a corrupt state record and changes nothing', async () => {
    const repoDir = await format1Repo(dir, 'corrupt-state');
    await expect(
      upgradeRepository(deps(repoDir), {
        sealBytes: 256 * 1024,
        onProgress: (done, _t, phase) => {
          if (phase === 'sealed' && done === 1) throw new Error('stop');
        },
      }),
    ).rejects.toThrow('stop');
    fs.writeFileSync(path.join(repoDir, '.upgrade/sealed/00000000.json'), '{"seq":0');
    await expect(upgradeRepository(deps(repoDir))).rejects.toMatchObject({ code: 'CBT_REPO_UPGRADE_STATE_CORRUPT' });
    expect(fs.existsSync(path.join(repoDir, '.chunks'))).toBe(true);
  });
});
