/**
 * What the planner (plan-disks.ts) is told about each disk of a VM: QEMU's view of its drives
 * (running VM, one short QMP session), or qemu-img's view of the image (stopped VM, and a running
 * VM's volumes that QEMU does not hold), plus the last committed backup and the ledger's record.
 * A stopped VM's image is only looked at after checking no QEMU holds it. An RBD disk also gets its
 * snapshots' facts (rbd-storage-facts.ts), and a running VM's RBD drive must be the config's image:
 * QEMU names it `json:{"driver":"raw","file":{"driver":"rbd",…}}`, the config `rbd:POOL/…` (both
 * parsed by rbd-volume.ts), anything else is CBT_BACKUP_DISK_MISMATCH.
 */
import { parseRbdName, rbdImageSpec, sameRbdImage } from '../pve/rbd-volume';
import { BackupDiskMismatchError } from './backup-errors';
import { readStorageFacts } from './rbd-storage-facts';
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
  /** The VM generation id of the config now (storage-delta.ts: a change since the last backup is a rollback). */
  vmgenid?: string,
  /** QEMU's drives when the caller has just asked for them (recover-fleece.ts `onDisks`). */
  known?: readonly QemuDisk[],
): Promise<DiskFacts[]> {
  const { vmid, config } = opts;
  const qemuImg = config.qemuImg ?? 'qemu-img';
  const qdisks = qemu ? (known ?? (await withQmp(qmpSocket, (q) => queryDisks(q)))) : [];
  const facts: DiskFacts[] = [];
  for (const disk of disks) {
    const last = lastByDisk.get(disk.key);
    const image = parseRbdName(disk.path);
    const generation = { last: last?.vmgenid, now: vmgenid };
    const storage = image ? { image, facts: await readStorageFacts(image, last?.storageSnapshot, generation) } : undefined;
    const base = { disk, last, ledger: opts.ledger.get(vmid, disk.key), ...(storage ? { storage } : {}) };
    const qemuDisk = qdisks.find((x) => x.drive === disk.key);
    if (qemuDisk && image) {
      const held = parseRbdName(qemuDisk.file);
      if (!held || !sameRbdImage(held, image)) {
        throw BackupDiskMismatchError({ vmid, disk: disk.key, reason: `QEMU holds ${qemuDisk.file}, not the RBD image ${rbdImageSpec(image)} of the config` });
      }
    }
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
