/**
 * What an RBD image says before a backup (storage-delta.ts has the rules): its snapshots (`rbd snap
 * ls`), which of them are pve-cbt's, and whether the one the last backup recorded is still there.
 * Every call is bounded (ceph-command.ts).
 */
import { rbdJson, type CephCallOptions } from '../proc/ceph-command';
import { atSnapshot, rbdImageSpec, type RbdImage } from '../pve/rbd-volume';
import { diffRanges, isOwnStorageSnapshot, type RbdDiffExtent, type StorageFacts } from './storage-delta';
import type { ByteRange } from './read-plan';

export interface RbdSnapshotInfo {
  readonly id: number;
  readonly name: string;
}

export function rbdSnapshots(img: RbdImage, opts: CephCallOptions = {}): Promise<RbdSnapshotInfo[]> {
  return rbdJson<RbdSnapshotInfo[] | null>(img, ['snap', 'ls', rbdImageSpec(atSnapshot(img, undefined))], opts).then((l) => l ?? []);
}

/** `rbd diff --from-snap FROM IMAGE[@TO]` as byte ranges. */
export async function rbdDiff(img: RbdImage, from: string, to: string | undefined, opts: CephCallOptions = {}): Promise<ByteRange[]> {
  const extents = await rbdJson<RbdDiffExtent[] | null>(img, ['diff', '--from-snap', from, rbdImageSpec(atSnapshot(img, to))], opts);
  return diffRanges(extents ?? []);
}

export async function readStorageFacts(
  img: RbdImage,
  recorded: string | undefined,
  generation: StorageFacts['generation'],
  opts: CephCallOptions = {},
): Promise<StorageFacts> {
  const snaps = await rbdSnapshots(img, opts);
  const own = snaps.filter((s) => isOwnStorageSnapshot(s.name)).map((s) => s.name);
  const previous = recorded === undefined ? undefined : snaps.find((s) => s.name === recorded)?.name;
  return { recorded, own, previous, ...(generation ? { generation } : {}) };
}
