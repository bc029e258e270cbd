/**
 * Keeping the ledger in step with the VM configs: what happens to a disk's bitmap record when the
 * disk is no longer what the record was made for. No Proxmox hook fires for any of these
 * (pve-qemu-facts.md), so the daemon compares the configs with the ledger before every job:
 *
 *   VM config gone from this node (`qm destroy`, or migrated away)  → drop every record of the VM
 *   disk key no longer backed up (detached to `unusedN`, removed,
 *     `backup=0`, turned into a cd-rom)                             → drop the disk's record
 *   disk key names another volume than recorded (`qm disk move`,
 *     another volume attached under the key)                        → invalid, reason naming both
 *
 * The volume a detached or moved-away disk leaves behind is named (`left`), so that the daemon can
 * take pve-cbt's bitmaps out of it (service/release-volume-bitmaps.ts).
 * Dropped records make the disk's next backup (if it comes back) a full-compare against its previous
 * backups (`ledger-no-record`); the backups themselves are never touched. A config that cannot be
 * read for another reason changes nothing. Pure, so every row is table-tested
 * (test/daemon/ledger/ledger-reconcile.test.ts); the I/O is service/reconcile-ledger.ts.
 */
import type { DiskBitmapRecord } from './ledger-rules';

/** What the VM's config says now: gone, or its current section's entries and backed-up disks. */
export type ConfigView =
  | { readonly kind: 'gone' }
  | { readonly kind: 'present'; readonly entries: Readonly<Record<string, string>>; readonly disks: ReadonlyArray<{ readonly key: string; readonly volid: string }> };

/**
 * A qcow2 volume the disk key no longer uses (detached, or moved away from), by its recorded path:
 * pve-cbt's bitmaps of that key in it serve nothing any more, and while they are in it qemu-img
 * refuses to apply a snapshot to it (`qm rollback` to a snapshot from before the change).
 */
export interface LeftVolume {
  readonly path: string;
  readonly format: string;
}

export type ReconcileAction =
  | { readonly kind: 'forget-vm'; readonly vmid: number; readonly reason: string }
  | { readonly kind: 'forget-disk'; readonly vmid: number; readonly disk: string; readonly reason: string; readonly left?: LeftVolume }
  | { readonly kind: 'invalidate'; readonly vmid: number; readonly disk: string; readonly reason: string; readonly left?: LeftVolume };

/** Actions for the records of the VMs in `configs` (records of other VMs are left alone). */
export function reconcileLedger(records: readonly DiskBitmapRecord[], configs: ReadonlyMap<number, ConfigView>): ReconcileAction[] {
  const actions: ReconcileAction[] = [];
  const vmids = [...new Set(records.map((r) => r.vmid))].filter((v) => configs.has(v)).sort((a, b) => a - b);
  for (const vmid of vmids) {
    const conf = configs.get(vmid) as ConfigView;
    if (conf.kind === 'gone') {
      actions.push({ kind: 'forget-vm', vmid, reason: `VM ${vmid} has no config on this node any more (qm destroy, or migrated away)` });
      continue;
    }
    for (const r of records.filter((x) => x.vmid === vmid)) {
      const disk = conf.disks.find((d) => d.key === r.disk);
      // A volume another node may hold now (the VM migrated away) is never named: only these two.
      const left = r.path && r.format === 'qcow2' ? { left: { path: r.path, format: r.format } } : {};
      if (!disk) {
        actions.push({ kind: 'forget-disk', vmid, disk: r.disk, reason: goneReason(r, conf.entries), ...left });
      } else if (r.volid && r.volid !== disk.volid && r.state !== 'invalid') {
        actions.push({
          kind: 'invalidate',
          vmid,
          disk: r.disk,
          reason: `${r.disk} is now volume ${disk.volid}, the bitmap was made for ${r.volid} (qm disk move, or another volume attached)`,
          ...left,
        });
      }
    }
  }
  return actions;
}

function goneReason(r: DiskBitmapRecord, entries: Readonly<Record<string, string>>): string {
  const volid = r.volid ?? undefined;
  const unused = volid === undefined ? undefined : Object.keys(entries).find((k) => /^unused\d+$/.test(k) && entries[k].split(',')[0] === volid);
  if (unused) return `${r.disk} was detached: its volume ${volid} is ${unused} now`;
  if (entries[r.disk] !== undefined) return `${r.disk} is no longer backed up (backup=0, a cd-rom or no volume)`;
  return `${r.disk} was removed from the VM config`;
}
