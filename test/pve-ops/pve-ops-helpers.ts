/**
 * Shared by the "living with Proxmox VE operations" acceptance tests: a backup result's disk by key,
 * the reference copy of every disk right after a backup (restored again at the end of a test, so
 * that later operations are shown not to have touched earlier backups), and `qemu-img` listings.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { BackupResult, DiskResult } from '../../daemon/backup/backup-vm';
import type { SimVm } from '../../daemon/sim/pve-node';
import type { EngineEnv } from '../daemon/backup/backup-helpers';

const execFileP = promisify(execFile);

export function diskOf(r: BackupResult, key: string): DiskResult {
  const d = r.disks.find((x) => x.disk === key);
  if (!d) throw new Error(`backup ${r.id} has no disk ${key} (has ${r.disks.map((x) => x.disk).join(', ')})`);
  return d;
}

/** Backups taken so far with a copy of each disk's expected bytes at backup time. */
export class BackupLog {
  private readonly taken: { id: string; disk: string; reference: string }[] = [];

  /** Restores every disk of `r` now (compared with the references) and keeps copies for `recheck`. */
  async record(env: EngineEnv, vm: SimVm, r: BackupResult): Promise<void> {
    for (const d of r.disks) {
      const disk = vm.disks.find((x) => x.key === d.disk);
      if (!disk) throw new Error(`VM ${vm.vmid} has no disk ${d.disk}`);
      await env.expectRestoreEquals(r.id, d.disk, disk.reference);
      this.taken.push({ id: r.id, disk: d.disk, reference: await vm.snapshotReference(d.disk) });
    }
  }

  /** Every recorded backup still restores byte for byte. */
  async recheck(env: EngineEnv): Promise<void> {
    for (const t of this.taken) await env.expectRestoreEquals(t.id, t.disk, t.reference);
  }
}

/** `qemu-img snapshot -l` of a stopped VM's image: name and VM state size column per snapshot. */
export async function imageSnapshots(file: string): Promise<{ name: string; vmStateSize: number }[]> {
  const { stdout } = await execFileP('qemu-img', ['info', '--output=json', '-U', file]);
  const info = JSON.parse(stdout) as { snapshots?: { name: string; 'vm-state-size': number }[] };
  return (info.snapshots ?? []).map((s) => ({ name: s.name, vmStateSize: s['vm-state-size'] }));
}

/** The bitmaps `qemu-img info` lists in an image. */
export async function imageBitmaps(file: string): Promise<string[]> {
  const { stdout } = await execFileP('qemu-img', ['info', '--output=json', '-U', file]);
  const info = JSON.parse(stdout) as { 'format-specific'?: { data?: { bitmaps?: { name: string }[] } } };
  return (info['format-specific']?.data?.bitmaps ?? []).map((b) => b.name);
}

/** A snapshot's bytes, read from a stopped VM's image into a raw file. */
export async function exportSnapshot(file: string, name: string, out: string): Promise<void> {
  await execFileP('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', '-l', `snapshot.name=${name}`, file, out]);
}
