/**
 * Takes pve-cbt's bitmaps of a disk key out of a qcow2 volume that key no longer uses (detached to
 * `unusedN`, or the source kept by `qm disk move`; named by ledger/ledger-reconcile.ts). A running
 * mirror or a hot-unplug closes the old image with the bitmap stored in it, and while it is there
 * `qemu-img snapshot -a` refuses that image: a `qm rollback` to a snapshot from before the move or
 * detach would fail. Nothing else reads those bitmaps (the disk's next backup is a full-compare).
 *
 * Only when the volume is a regular file that no process has open (no QEMU, no qemu-nbd: checked
 * through /proc, and qemu-img's own image lock refuses a writer that appears meanwhile); only bitmaps
 * named `pve-cbt-KEY-g*` of that key. Fail-open: a failure is logged and changes nothing else.
 */
import fs from 'node:fs';
import type { Logger } from 'winston';
import { ownBitmapsOf } from '../backup/bitmap-names';
import { imageInfo, removeImageBitmap } from '../backup/image-export';
import type { ReconcileAction } from '../ledger/ledger-reconcile';
import { fileIdentity, processesHolding } from '../pve/open-files';

export async function releaseVolumeBitmaps(actions: readonly ReconcileAction[], logger: Logger, procDir = '/proc'): Promise<string[]> {
  const removed: string[] = [];
  for (const a of actions) {
    if (a.kind === 'forget-vm' || !a.left || a.left.format !== 'qcow2') continue;
    const { path: file } = a.left;
    const meta = { vmid: a.vmid, disk: a.disk, path: file };
    try {
      const st = fs.statSync(file, { throwIfNoEntry: false });
      if (!st || !st.isFile()) continue;
      const holders = processesHolding(fileIdentity(st), procDir);
      if (holders.length > 0) {
        logger.info('volume left by the disk is open; its pve-cbt bitmaps stay', { ...meta, holders: holders.map((h) => `${h.command}[${h.pid}]`) });
        continue;
      }
      for (const b of ownBitmapsOf((await imageInfo(file, 'qcow2')).bitmaps, a.disk)) {
        await removeImageBitmap(file, b.name);
        removed.push(`${file}:${b.name}`);
        logger.info(`removed bitmap ${b.name} from the volume ${a.disk} no longer uses`, meta);
      }
    } catch (err) {
      logger.warn('could not remove pve-cbt bitmaps from a volume the disk no longer uses', { ...meta, error: (err as Error).message });
    }
  }
  return removed;
}
