/**
 * The "qemu-10" jest project really runs QEMU 10 (PVE 9's major), the default project the system's
 * QEMU (7.2 on Debian 12): the simulator's QEMU and the qemu-img on PATH both report it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { usePveNode } from './jest-cleanup';

const execFileP = promisify(execFile);
const expectedMajor = process.env.PVE_CBT_TEST_QEMU === '10' ? 10 : 7;
const sim = usePveNode();

test(`the simulator's QEMU answers query-version with major ${expectedMajor}`, async () => {
  const vm = await sim.node.addVm({ vmid: 190, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 4 }] });
  await vm.start();
  const version = (await vm.qmp((q) => q.execute('query-version'))) as { qemu: { major: number } };
  expect(version.qemu.major).toBe(expectedMajor);
  await vm.stop();
});

test(`qemu-img and qemu-nbd on PATH are QEMU ${expectedMajor}`, async () => {
  for (const bin of ['qemu-img', 'qemu-nbd']) {
    const { stdout } = await execFileP(bin, ['--version']);
    expect(stdout.split('\n')[0]).toMatch(new RegExp(`\\s${expectedMajor}\\.\\d+\\.\\d+`));
  }
});
