/**
 * What the planner (plan-disks.ts) is told about each disk of a VM: QEMU's view of its drives
 * (running VM, one short QMP session), or qemu-img's view of the image (stopped VM, and a running
 * VM's volumes that QEMU does not hold), plus the last committed backup and the ledger's record.
 * A stopped VM's image is only looked at after checking no QEMU holds it.
 */
import type { QemuProcess } from '../pve/qemu-process';
import type { VmDisk } from '../pve/vm-disks';
import { withQmp } from '../qmp/qmp-session';
import { queryDisks, type QemuDisk } from '../qmp/query-disks';
import type { BackupVmOptions } from './backup-options';
import { assertVmStopped, imageInfo } from './image-export';
import type { LastDiskBackup } from './last-backups';
import { readFromVolume, type DiskFacts } from './plan-disks';

export async function gatherDiskFacts(
  opts: BackupVmOptions,
  disks: readonly VmDisk[],
  lastByDisk: ReadonlyMap<string, LastDiskBackup>,
  qemu: QemuProcess | undefined,
  qmpSocket: string,
  /** QEMU's drives when the caller has just asked for them (recover-fleece.ts `onDisks`). */
  known?: readonly QemuDisk[],
): Promise<DiskFacts[]> {
  const { vmid, config } = opts;
  const qemuImg = config.qemuImg ?? 'qemu-img';
  const qdisks = qemu ? (known ?? (await withQmp(qmpSocket, (q) => queryDisks(q)))) : [];
  const facts: DiskFacts[] = [];
  for (const disk of disks) {
    const base = { disk, last: lastByDisk.get(disk.key), ledger: opts.ledger.get(vmid, disk.key) };
    const qemuDisk = qdisks.find((x) => x.drive === disk.key);
    if (qemuDisk) {
      facts.push({ ...base, qemuDisk });
    } else if (!qemu) {
      assertVmStopped(config.qemuServerRunDir, vmid, disk.key, disk.path);
      facts.push({ ...base, image: await imageInfo(disk.path, disk.format, qemuImg) });
    } else if (readFromVolume(disk)) {
      facts.push({ ...base, image: await imageInfo(disk.path, disk.format, qemuImg) });
    } else {
      facts.push(base);
    }
  }
  return facts;
}
