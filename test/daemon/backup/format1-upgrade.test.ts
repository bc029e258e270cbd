/**
 * The format 1 → 2 upgrade on backups the engine wrote (real QEMU, real qemu-nbd): a format-1
 * repository gets a full and an incremental of a running VM (qcow2 + raw) and an offline full;
 * after `upgrade` every one of them restores byte for byte against the simulator's reference twins,
 * to raw and to qcow2 (qemu-img compare), and verifies; then the engine backs up into the
 * upgraded (format 2) repository and that restores too.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let repoDir: string;
let env1: EngineEnv;
let env2: EngineEnv | undefined;
let vm: SimVm;
const VMID = 230;

beforeAll(async () => {
  repoDir = fs.mkdtempSync('/tmp/cbt-upgrade-');
  await Repository.open(repoDir, { create: true, format: 1 });
  env1 = await createEngineEnv(sim.node, { repoDir });
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }, { key: 'scsi1', format: 'raw', sizeMiB: 4 }] });
});
afterAll(() => {
  env1?.close();
  env2?.close();
  fs.rmSync(repoDir, { recursive: true, force: true });
});

test('backups of format 1 restore and verify byte-exact after the upgrade; new backups go into packs', async () => {
  await vm.writeData('scsi0', 0, Buffer.alloc(2 * MiB, 0x11));
  await vm.writeData('scsi1', 1 * MiB, Buffer.alloc(300 * KiB, 0x12));
  const refs: { id: string; disk: string; ref: string }[] = [];
  const offline = await env1.backup(VMID);
  refs.push({ id: offline.id, disk: 'scsi0', ref: await vm.snapshotReference('scsi0') }, { id: offline.id, disk: 'scsi1', ref: await vm.snapshotReference('scsi1') });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x21, offset: 3 * MiB, length: 192 * KiB });
  await vm.write('scsi1', { pattern: 0x22, offset: 0, length: 64 * KiB });
  const inc = await env1.backup(VMID);
  expect(inc.disks.find((d) => d.disk === 'scsi0')?.mode).toBe('incremental');
  refs.push({ id: inc.id, disk: 'scsi0', ref: await vm.snapshotReference('scsi0') }, { id: inc.id, disk: 'scsi1', ref: await vm.snapshotReference('scsi1') });
  await vm.stop();
  expect(fs.existsSync(path.join(repoDir, '.chunks'))).toBe(true);

  const report = await env1.repo.upgrade();
  expect(report).toMatchObject({ from: 'pve-cbt-repository-1', to: 'pve-cbt-repository-2', blobsSkipped: [] });
  expect(report.blobsCopied).toBeGreaterThan(0);
  expect(fs.existsSync(path.join(repoDir, '.chunks'))).toBe(false);

  env2 = await createEngineEnv(sim.node, { repoDir });
  expect(env2.repo.format).toBe(2);
  for (const r of refs) await env2.expectRestoreEquals(r.id, r.disk, r.ref);
  const q = path.join(env2.dir, 'inc.qcow2');
  await env2.repo.restoreDisk(inc.id, 'scsi0', { path: q, format: 'qcow2' });
  execFileSync('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', q, refs[2].ref]);
  expect((await env2.repo.verify()).ok).toBe(true);

  await vm.writeData('scsi0', 5 * MiB, Buffer.alloc(128 * KiB, 0x31));
  const after = await env2.backup(VMID);
  await env2.expectRestoreEquals(after.id, 'scsi0', await vm.snapshotReference('scsi0'));
  await env2.expectRestoreEquals(after.id, 'scsi1', await vm.snapshotReference('scsi1'));
  expect((await env2.repo.verify()).ok).toBe(true);
});
