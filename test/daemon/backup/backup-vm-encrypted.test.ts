/**
 * The engine on a running VM (real QEMU through the simulator) into an encrypted repository whose
 * key comes from a scrypt key file: full → guest writes → incremental → stop/start full-compare,
 * each restore byte-exact with the reference taken at backup time; the stored blobs hold no
 * plaintext of a known pattern; the repository refuses to open without its key or with another.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { deriveKeys, generateMasterKey, loadRepositoryKeys, sealKeyFile, writeNewKeyFile } from '../../../daemon/repository/key-file';
import { Repository } from '../../../daemon/repository/repository';
import { createEngineEnv, dirtyBytes, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;
let repoDir: string;
const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-key-'));
const keyFile = path.join(keyDir, 'repo.key');
/** A text the guest writes; no stored blob may contain a piece of it. */
const TEXT = Buffer.from('CONFIDENTIAL guest data that must not be readable on the backup disk. '.repeat(4000)).subarray(0, 256 * KiB);

beforeAll(async () => {
  writeNewKeyFile(keyFile, sealKeyFile(generateMasterKey(), { kdf: 'scrypt', passphrase: 'engine test', scrypt: { n: 4096, r: 8, p: 1 } }));
  const keys = loadRepositoryKeys(keyFile, 'engine test');
  const base = fs.mkdtempSync(path.join(keyDir, 'env-'));
  repoDir = path.join(base, 'repo');
  env = await createEngineEnv(sim.node, { repoDir, keys });
  vm = await sim.node.addVm({
    vmid: 100,
    disks: [
      { key: 'scsi0', format: 'qcow2', sizeMiB: 16 },
      { key: 'scsi1', format: 'raw', sizeMiB: 8 },
    ],
  });
  await vm.writeData('scsi0', 2 * MiB, TEXT);
  await vm.writeData('scsi1', 1 * MiB + 64 * KiB, TEXT);
  await vm.start();
});
afterAll(() => {
  env?.close();
  fs.rmSync(keyDir, { recursive: true, force: true });
});

const byDisk = (r: { disks: { disk: string }[] }, d: string) => r.disks.find((x) => x.disk === d) as never as { mode: string; bytesRead: number; bytesStored: number };

function blobFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

test('full → incremental → full-compare of a running VM restore byte-exact; no blob holds the plaintext', async () => {
  await vm.write('scsi0', { pattern: 0x11, offset: 5 * MiB, length: 1 * MiB });
  const ref0 = await vm.snapshotReference('scsi0');
  const ref1 = await vm.snapshotReference('scsi1');
  const full = await env.backup(100);
  expect(byDisk(full, 'scsi0').mode).toBe('full');
  expect(byDisk(full, 'scsi1').mode).toBe('full');

  const w0 = [{ offset: 2 * MiB + 100 * KiB, length: 4 * KiB }, { offset: 12 * MiB, length: 200 * KiB }];
  const w1 = [{ offset: 0, length: 512 }, { offset: 7 * MiB, length: 64 * KiB }];
  for (const w of w0) await vm.write('scsi0', { pattern: 0xa0, ...w });
  for (const w of w1) await vm.write('scsi1', { pattern: 0xb1, ...w });
  const ref0b = await vm.snapshotReference('scsi0');
  const ref1b = await vm.snapshotReference('scsi1');
  const inc = await env.backup(100);
  expect(byDisk(inc, 'scsi0')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w0) });
  expect(byDisk(inc, 'scsi1')).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(w1) });

  await vm.stop();
  await vm.writeData('scsi1', 3 * MiB, TEXT.subarray(0, 8 * KiB));
  await vm.start();
  const ref1c = await vm.snapshotReference('scsi1');
  const cmp = await env.backup(100);
  expect(byDisk(cmp, 'scsi1').mode).toBe('full-compare');

  await env.expectRestoreEquals(full.id, 'scsi0', ref0);
  await env.expectRestoreEquals(full.id, 'scsi1', ref1);
  await env.expectRestoreEquals(inc.id, 'scsi0', ref0b);
  await env.expectRestoreEquals(inc.id, 'scsi1', ref1b);
  await env.expectRestoreEquals(cmp.id, 'scsi1', ref1c);
  expect((await env.repo.verify()).ok).toBe(true);

  // Format 2: pack files and their indexes; (format 1: one file per blob).
  expect(JSON.parse(fs.readFileSync(path.join(repoDir, '.pve-cbt-repository'), 'utf8'))).toMatchObject({ format: 'pve-cbt-repository-2', encryption: { cipher: 'aes-256-gcm' } });
  const blobs = ['.packs', '.chunks', '.pages'].flatMap((d) => blobFiles(path.join(repoDir, d)));
  expect(blobs.filter((f) => f.endsWith('.pack')).length).toBeGreaterThan(0);
  const probes = [TEXT.subarray(0, 24), TEXT.subarray(1000, 1024), Buffer.alloc(24, 0x11)];
  for (const f of blobs) {
    const stored = fs.readFileSync(f);
    for (const p of probes) expect(stored.includes(p)).toBe(false);
  }
  for (const m of [full, inc, cmp]) {
    const text = fs.readFileSync(path.join(repoDir, m.id, 'manifest.json'), 'utf8');
    expect(JSON.parse(text).auth).toMatch(/^[0-9a-f]{64}$/);
  }
});

test('without the key, with another key, or with a wrong passphrase the repository says so by code', async () => {
  await expect(Repository.open(repoDir)).rejects.toMatchObject({ code: 'CBT_REPO_KEY_MISSING' });
  await expect(Repository.open(repoDir, { keys: deriveKeys(generateMasterKey()) })).rejects.toMatchObject({ code: 'CBT_REPO_KEY_WRONG' });
  expect(() => loadRepositoryKeys(keyFile, 'engine tests')).toThrow(expect.objectContaining({ code: 'CBT_KEY_PASSPHRASE_WRONG' }));
  // With the right key another process reads the same backups.
  const again = await Repository.open(repoDir, { keys: loadRepositoryKeys(keyFile, 'engine test') });
  expect((await again.listBackups(100)).length).toBe(3);
});
