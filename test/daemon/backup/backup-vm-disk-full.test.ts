/**
 * A repository that runs out of space in the middle of a backup (a real file system: a small
 * tmpfs, real ENOSPC): the backup fails with CBT_REPO_NO_SPACE, leaves no manifest and no partial
 * backup, the bitmap keeps every change, and once there is room the next incremental reads exactly
 * those changes and restores byte-exact.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { queryDisks } from '../../../daemon/qmp/query-disks';
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { createEngineEnv, dirtyBytes, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
const VMID = 310;
let mountDir: string;
let env: EngineEnv;
let vm: SimVm;

beforeAll(() => {
  mountDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m,mode=0700', 'cbt-test-full', mountDir]);
});
afterAll(() => {
  env?.close();
  execFileSync('umount', ['-l', mountDir]);
  fs.rmSync(mountDir, { recursive: true, force: true });
});

test('repository full mid-backup: CBT_REPO_NO_SPACE, nothing committed, bitmap keeps every change, next incremental exact', async () => {
  env = await createEngineEnv(sim.node, { repoDir: path.join(mountDir, 'repo') });
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 32 }] });
  await vm.writeData('scsi0', 0, crypto.randomBytes(4 * MiB));
  await vm.start();
  expect((await env.backup(VMID)).disks[0].mode).toBe('full');

  // 16 MiB of incompressible data cannot fit in what is left of the 12 MiB file system.
  await vm.stop();
  const change = { offset: 8 * MiB, length: 16 * MiB };
  await vm.writeData('scsi0', change.offset, crypto.randomBytes(change.length));
  await vm.start();
  await expect(env.backup(VMID)).rejects.toMatchObject({ code: 'CBT_REPO_NO_SPACE' });

  expect((await env.repo.listBackups(VMID)).length).toBe(1);
  expect((await env.repo.listBackupDirs(VMID)).filter((d) => !d.hasManifest)).toEqual([]);
  const own = (await vm.qmp((q) => queryDisks(q)))[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-'));
  expect(own).toHaveLength(1);
  expect(own[0]).toMatchObject({ recording: true, busy: false });
  expect(own[0].count).toBeGreaterThanOrEqual(change.length);

  execFileSync('mount', ['-o', 'remount,size=64m', mountDir]);
  const ref = await vm.snapshotReference('scsi0');
  const next = await env.backup(VMID);
  expect(next.disks[0]).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes([change]) });
  await env.expectRestoreEquals(next.id, 'scsi0', ref);
});
