/**
 * One read of each manifest per backup (issue 15): the engine reads the VM's manifests newest first
 * until every disk of its config is known and hands them to the writer, which takes the parent's and
 * the bases' from there. Real QEMU, two disks; every backup restores byte for byte.
 */
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { createEngineEnv, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;
const VMID = 310;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 16 }, { key: 'scsi1', format: 'raw', sizeMiB: 8 }] });
  await vm.start();
});
afterAll(() => env?.close());

async function backupCountingReads(): Promise<{ id: string; modes: string[]; reads: string[] }> {
  const refs = { scsi0: await vm.snapshotReference('scsi0'), scsi1: await vm.snapshotReference('scsi1') };
  const spy = jest.spyOn(env.repo, 'readManifest');
  let r;
  let reads: string[];
  try {
    r = await env.backup(VMID);
  } finally {
    reads = spy.mock.calls.map((c) => c[0]);
    spy.mockRestore();
  }
  await env.expectRestoreEquals(r.id, 'scsi0', refs.scsi0);
  await env.expectRestoreEquals(r.id, 'scsi1', refs.scsi1);
  return { id: r.id, modes: r.disks.map((d) => d.mode), reads };
}

test('a full reads no manifest; each incremental reads only the newest one, once', async () => {
  await vm.write('scsi0', { pattern: 0x11, offset: 0, length: 2 * MiB });
  await vm.write('scsi1', { pattern: 0x12, offset: MiB, length: 512 * KiB });
  const full = await backupCountingReads();
  expect(full.modes).toEqual(['full', 'full']);
  expect(full.reads).toEqual([]);
  let previous = full.id;
  for (let i = 0; i < 3; i++) {
    await vm.write('scsi0', { pattern: 0x20 + i, offset: (3 + i) * MiB, length: 64 * KiB });
    await vm.write('scsi1', { pattern: 0x30 + i, offset: i * MiB, length: 64 * KiB });
    const inc = await backupCountingReads();
    expect(inc.modes).toEqual(['incremental', 'incremental']);
    expect(inc.reads).toEqual([previous]);
    previous = inc.id;
  }
});
