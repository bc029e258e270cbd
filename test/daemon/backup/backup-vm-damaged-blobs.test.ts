/**
 * Damaged stored blobs on real QEMU (issue 13, points 1-3): a backup that holds a chunk's true
 * bytes repairs a damaged stored copy, a damaged base page is rewritten rather than referenced,
 * and a damaged base chunk under a partly changed chunk is read whole from the VM. Damage is
 * bytes flipped in place, same size (what the cheap completeness check cannot see). Every restore
 * is compared byte for byte with the disk at backup time; verify proves the repair.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { flipBlobByte } from '../repository/blob-files';
import { diskPages } from '../../../daemon/repository/manifest';
import { usePveNode } from '../../sim/jest-cleanup';
import { createEngineEnv, MiB, KiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let env: EngineEnv;
const CHUNK = 1 * MiB;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
});
afterAll(() => env?.close());

/** Flips bytes of the stored blob in place, same size (format 2: inside its pack). */
function flipInPlace(kind: 'chunk' | 'page', digest: string): Promise<Buffer> {
  return flipBlobByte(env.repo, kind, digest, 100, 0xff, [30]);
}

function chunkDigestOf(reference: string, index: number): string {
  const data = fs.readFileSync(reference).subarray(index * CHUNK, (index + 1) * CHUNK);
  return crypto.createHash('sha256').update(data).digest('hex');
}

async function expectVerifyClean(backupId?: string): Promise<void> {
  const report = await env.repo.verify(backupId ? { backupId } : {});
  expect(report.backups.flatMap((b) => b.problems)).toEqual([]);
  expect(report.ok).toBe(true);
}

test('raw VM restarted: the full-compare finds a damaged stored chunk "present", rewrites it, restores byte-exact', async () => {
  const vm = await sim.node.addVm({ vmid: 310, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 8 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x31, offset: 0, length: 3 * MiB });
  await vm.write('scsi0', { pattern: 0x32, offset: 5 * MiB, length: 512 * KiB });
  const ref1 = await vm.snapshotReference('scsi0');
  const full = await env.backup(310, {}, { chunkSize: CHUNK });
  expect(full.disks[0].mode).toBe('full');
  const damaged = chunkDigestOf(ref1, 5);
  await flipInPlace('chunk', damaged);

  await vm.stop();
  await vm.start();
  const ref2 = await vm.snapshotReference('scsi0');
  const fc = await env.backup(310);
  expect(fc.disks[0].mode).toBe('full-compare');
  await env.expectRestoreEquals(fc.id, 'scsi0', ref2);
  // Repaired: a good copy now serves (format 1 rewrote the file, format 2 wrote a new copy in a pack).
  expect(await env.repo.blobs.chunks.check(damaged)).toBe('ok');
  // The repair also heals the first backup, which references the same copy.
  await env.expectRestoreEquals(full.id, 'scsi0', ref1);
  await expectVerifyClean();
  await vm.stop();
});

test('damaged base index page: the incremental writes the page anew instead of referencing the damaged one', async () => {
  const vm = await sim.node.addVm({ vmid: 311, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x41, offset: 1 * MiB, length: 2 * MiB });
  const full = await env.backup(311, {}, { chunkSize: CHUNK });
  const fullEntry = (await env.repo.readManifest(full.id)).disks[0];
  const [page] = diskPages(fullEntry);
  await flipInPlace('page', page);
  expect(await env.repo.blobs.pages.check(page)).toBe('corrupt');

  // Dirty, same content: the re-read chunks give the same table, hence the same page digest.
  await vm.write('scsi0', { pattern: 0x41, offset: 1 * MiB, length: 64 * KiB });
  const ref = await vm.snapshotReference('scsi0');
  const inc = await env.backup(311);
  expect(inc.disks[0].mode).toBe('incremental');
  const incEntry = (await env.repo.readManifest(inc.id)).disks[0];
  expect(diskPages(incEntry)).toEqual([page]);
  expect(await env.repo.blobs.pages.check(page)).toBe('ok');
  await env.expectRestoreEquals(inc.id, 'scsi0', ref);
  await expectVerifyClean(inc.id);
  await vm.stop();
});

test('damaged base chunk under a partly changed chunk: read whole from the VM, the incremental succeeds byte-exact', async () => {
  const vm = await sim.node.addVm({ vmid: 312, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x51, offset: 2 * MiB, length: 1 * MiB });
  await vm.write('scsi0', { pattern: 0x52, offset: 6 * MiB, length: 1 * MiB });
  const ref1 = await vm.snapshotReference('scsi0');
  await env.backup(312, {}, { chunkSize: CHUNK });
  await flipInPlace('chunk', chunkDigestOf(ref1, 2));

  for (const [i, pattern] of [0x53, 0x54].entries()) {
    await vm.write('scsi0', { pattern, offset: 2 * MiB + 64 * KiB * (i + 1), length: 64 * KiB });
    const ref = await vm.snapshotReference('scsi0');
    const inc = await env.backup(312);
    expect(inc.disks[0].mode).toBe('incremental');
    await env.expectRestoreEquals(inc.id, 'scsi0', ref);
    await expectVerifyClean(inc.id);
  }
  await vm.stop();
});
