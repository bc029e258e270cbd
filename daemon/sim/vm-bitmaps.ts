/** Reads a simulated VM's dirty bitmaps through a short QMP session (helper for tests). */
import { queryDisks, type QemuBitmap } from '../qmp/query-disks';
import type { SimVm } from './pve-node';

export async function vmBitmaps(vm: SimVm, disk: string): Promise<QemuBitmap[]> {
  const disks = await vm.qmp(queryDisks);
  const found = disks.find((d) => d.drive === disk);
  if (!found) throw new Error(`VM ${vm.vmid} has no disk ${disk} in query-block`);
  return found.bitmaps;
}

export async function vmBitmap(vm: SimVm, disk: string, name: string): Promise<QemuBitmap | undefined> {
  return (await vmBitmaps(vm, disk)).find((b) => b.name === name);
}
