import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { installLoggingHook } from '../../daemon/sim/logging-hook';
import { isAlive } from '../../daemon/sim/process-reaper';
import type { DiskLayout, SimVm } from '../../daemon/sim/pve-node';
import { blockdevNodeName } from '../../daemon/sim/qemu-command';
import { SimStateError } from '../../daemon/sim/sim-errors';
import { vmBitmaps } from '../../daemon/sim/vm-bitmaps';
import { usePveCluster } from './cluster-cleanup';

const execFileP = promisify(execFile);
const sim = usePveCluster();
const KiB = 1024;

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (err) {
    return (err as { code?: string }).code;
  }
}

/** Where a bitmap belongs: the drive (PVE 7/8) or the format node (PVE 9 -blockdev). */
function bitmapNode(vm: SimVm, key: string): string {
  const d = vm.disks.find((x) => x.key === key)!;
  return vm.layout === 'blockdev' ? blockdevNodeName('fmt', d.key, d.volid) : `drive-${key}`;
}

describe.each<[DiskLayout, number]>([
  ['drive', 600],
  ['blockdev', 610],
])('live migration between two simulated nodes (%s layout)', (layout, vmid) => {
  it('moves the config as pmxcfs does, fires only the target hooks, and carries persistent and transient bitmaps', async () => {
    const [pve1, pve2] = sim.cluster.nodes;
    const h1 = installLoggingHook(pve1, `mig-${layout}.sh`);
    const h2 = installLoggingHook(pve2, `mig-${layout}.sh`);
    const vm = await pve1.addVm({
      vmid,
      layout,
      disks: [
        { key: 'scsi0', format: 'qcow2', sizeMiB: 8 },
        { key: 'scsi1', format: 'raw', sizeMiB: 8 },
      ],
    });
    vm.setHookscript(h1.volid);
    await vm.start();
    await vm.qmp(async (q) => {
      await q.execute('block-dirty-bitmap-add', { node: bitmapNode(vm, 'scsi0'), name: 'pve-cbt-scsi0-g1', persistent: true });
      await q.execute('block-dirty-bitmap-add', { node: bitmapNode(vm, 'scsi1'), name: 'pve-cbt-scsi1-g1', persistent: false });
    });
    await vm.write('scsi0', { pattern: 0x11, offset: 1 << 20, length: 64 * KiB });
    await vm.write('scsi1', { pattern: 0x22, offset: 2 << 20, length: 128 * KiB });
    const sourcePid = vm.pid()!;
    const hooks1Before = h1.lines().length;
    const conf1 = path.join(sim.cluster.pmxcfsDir, 'nodes/pve1/qemu-server', `${vmid}.conf`);
    const conf2 = path.join(sim.cluster.pmxcfsDir, 'nodes/pve2/qemu-server', `${vmid}.conf`);
    const confText = fs.readFileSync(conf1, 'utf8');
    const runsBefore = pve2.hookLog.length;

    const moved = await sim.cluster.migrate(vmid, 'pve2');

    expect(fs.existsSync(conf1)).toBe(false);
    expect(fs.readFileSync(conf2, 'utf8')).toBe(confText);
    expect(fs.existsSync(path.join(pve2.configDir, `${vmid}.conf`))).toBe(true);
    expect(sim.cluster.nodeOf(vmid)).toBe(pve2);
    expect(codeOf(() => pve1.vm(vmid))).toBe(SimStateError.code);
    expect(moved.running()).toBe(true);
    expect(moved.pid()).not.toBe(sourcePid);
    expect(isAlive(sourcePid)).toBe(false);
    expect(fs.readFileSync(moved.pidPath, 'utf8').trim()).toBe(String(moved.pid()));
    expect(moved.pidPath.startsWith(pve2.runDir)).toBe(true);
    // The source fires nothing; the target pre-start (with PVE_MIGRATED_FROM) and post-start.
    expect(h1.lines().length).toBe(hooks1Before);
    expect(h2.lines()).toEqual([`${vmid} pre-start`, `${vmid} post-start`]);
    const runs = pve2.hookLog.slice(runsBefore);
    expect(runs.map((r) => [r.argv[1], r.env.PVE_MIGRATED_FROM])).toEqual([
      ['pre-start', 'pve1'],
      ['post-start', 'pve1'],
    ]);
    const status = await moved.qmp((q) => q.execute<{ status: string; running: boolean }>('query-status'));
    expect(status).toMatchObject({ status: 'running', running: true });
    const caps = await moved.qmp((q) => q.execute<Array<{ capability: string; state: boolean }>>('query-migrate-capabilities'));
    expect(caps.find((c) => c.capability === 'dirty-bitmaps')?.state).toBe(true);

    const b0 = (await vmBitmaps(moved, 'scsi0')).find((b) => b.name === 'pve-cbt-scsi0-g1');
    const b1 = (await vmBitmaps(moved, 'scsi1')).find((b) => b.name === 'pve-cbt-scsi1-g1');
    expect(b0).toMatchObject({ persistent: true, recording: true, count: 64 * KiB });
    expect(b0?.inconsistent ?? false).toBe(false);
    expect(b1).toMatchObject({ persistent: false, recording: true, count: 128 * KiB });
    // The bitmaps go on recording on the target.
    await moved.write('scsi1', { pattern: 0x33, offset: 4 << 20, length: 64 * KiB });
    expect((await vmBitmaps(moved, 'scsi1')).find((b) => b.name === 'pve-cbt-scsi1-g1')?.count).toBe(192 * KiB);

    await moved.stop();
    expect(h2.lines().slice(2)).toEqual([`${vmid} pre-stop`, `${vmid} post-stop`]);
    for (const d of moved.disks) {
      await expect(execFileP('qemu-img', ['compare', '-f', d.format, '-F', 'raw', d.path, d.reference])).resolves.toBeDefined();
    }
  });
});

describe('live migration refusals', () => {
  it('QEMU refuses to live-migrate a vmdk disk: the target QEMU goes, the VM runs on at the source with its config unlocked', async () => {
    const [pve1, pve2] = sim.cluster.nodes;
    const vm = await pve1.addVm({ vmid: 630, disks: [{ key: 'scsi0', format: 'vmdk', sizeMiB: 4 }] });
    await vm.start();
    const conf = fs.readFileSync(vm.confPath, 'utf8');
    await expect(sim.cluster.migrate(630, 'pve2')).rejects.toThrow(/vmdk format .* does not support live migration/);
    expect(vm.running()).toBe(true);
    expect(sim.cluster.nodeOf(630)).toBe(pve1);
    expect(fs.readFileSync(vm.confPath, 'utf8')).toBe(conf);
    expect(fs.existsSync(path.join(pve2.runDir, '630.pid')) && isAlive(Number(fs.readFileSync(path.join(pve2.runDir, '630.pid'), 'utf8')))).toBe(false);
    await vm.stop();
  });

  it('refuses a stopped VM and a VM that is not on the source node', async () => {
    const [pve1] = sim.cluster.nodes;
    await pve1.addVm({ vmid: 620, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 4 }] });
    await expect(sim.cluster.migrate(620, 'pve2')).rejects.toMatchObject({ code: SimStateError.code });
    await expect(sim.cluster.migrate(621, 'pve2')).rejects.toMatchObject({ code: SimStateError.code });
  });
});
