/**
 * `qm snapshot` and `qm rollback` of a VM whose disks are on the RBD storage, as pve-storage's
 * RBDPlugin runs them (krbd off): `rbd snap create POOL/NS/IMAGE@SNAP` per RBD disk (also while the
 * VM runs: qemu-server takes storage snapshots of RBD volumes from outside QEMU), and for a rollback
 * the VM is stopped first (pre-stop, quit, post-stop), then `rbd snap rollback` per disk, and the
 * config gets a new `vmgenid` (qemu-server's QemuConfig.pm `__snapshot_rollback_hook` does that, so
 * the guest learns it is another generation). The raw
 * reference twins are copied aside at the snapshot and back at the rollback. No vmstate, and, as
 * everywhere in the simulator, no `[SNAP]` section in the config. Every rbd call is bounded.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { rbd } from '../proc/ceph-command';
import { atSnapshot, parseRbdName, rbdImageSpec } from '../pve/rbd-volume';
import type { SimDisk, SimVm } from './pve-node';
import { SimStateError } from './sim-errors';

function rbdDisks(vm: SimVm): { disk: SimDisk; image: NonNullable<ReturnType<typeof parseRbdName>> }[] {
  const out = vm.disks.flatMap((disk) => {
    const image = parseRbdName(disk.path);
    return image ? [{ disk, image }] : [];
  });
  if (out.length === 0) throw SimStateError({ vmid: vm.vmid, op: 'RBD snapshot', reason: 'the VM has no RBD disk' });
  return out;
}

const twin = (d: SimDisk, snap: string): string => `${d.reference}.rbdsnap-${snap}`;

export async function qmRbdSnapshot(vm: SimVm, snap: string): Promise<void> {
  for (const { disk, image } of rbdDisks(vm)) {
    await rbd(image, ['snap', 'create', '--no-progress', rbdImageSpec(atSnapshot(image, snap))]);
    fs.copyFileSync(disk.reference, twin(disk, snap));
  }
}

export async function qmRbdRollback(vm: SimVm, snap: string): Promise<void> {
  if (vm.running()) await vm.stop();
  for (const { disk, image } of rbdDisks(vm)) {
    await rbd(image, ['snap', 'rollback', '--no-progress', rbdImageSpec(atSnapshot(image, snap))]);
    fs.copyFileSync(twin(disk, snap), disk.reference);
  }
  newVmgenid(vm.confPath);
}

/** A new `vmgenid:` in the config's current section (snapshot sections keep theirs). */
function newVmgenid(confPath: string): void {
  const text = fs.readFileSync(confPath, 'utf8');
  const cut = text.search(/^\[/m);
  const head = cut < 0 ? text : text.slice(0, cut);
  if (!/^vmgenid:/m.test(head)) return;
  fs.writeFileSync(confPath, head.replace(/^vmgenid:.*$/m, `vmgenid: ${crypto.randomUUID()}`) + (cut < 0 ? '' : text.slice(cut)));
}

/** The snapshot names of a disk's image, in creation order. */
export async function rbdSnapshotNames(disk: SimDisk): Promise<string[]> {
  const image = parseRbdName(disk.path);
  if (!image) return [];
  const out = await rbd(image, ['snap', 'ls', '--format', 'json', rbdImageSpec(image)]);
  return ((JSON.parse(out || '[]') as { id: number; name: string }[]) ?? []).sort((a, b) => a.id - b.id).map((s) => s.name);
}
