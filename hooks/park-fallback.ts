/**
 * What the post-stop hook does when the daemon is not reachable at all (CBT_IPC_UNAVAILABLE: no
 * daemon is listening, so nobody will park the bitmaps): it removes pve-cbt's bitmaps from the VM's
 * qcow2 images itself, so that `qm rollback` (`qemu-img snapshot -a`) and the other offline
 * operations still work, and leaves a marker per disk in `<stateDir>/parked/<vmid>/` so that the
 * daemon, when it is back, marks those disks invalid: their next backup is a full-compare naming
 * why. The bitmaps are not kept (a full-compare reads every byte anyway; keeping them would need
 * the identity bookkeeping the daemon does).
 *
 * Which images: `images.json`, which the daemon writes for every VM with a qcow2 disk (daemon/parking/
 * park-store.ts); trusted only as trusted-file.ts says. `qm cleanup` holds Proxmox's VM lock around
 * the hook, so nothing else touches the images meanwhile. Bounded: every qemu-img call is killed
 * at the deadline, and the hook's watchdog bounds the whole part anyway. Never throws.
 */
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { BITMAP_PREFIX } from '../shared/config/defaults';
import { programPath } from '../daemon/proc/external-programs';
import { readTrustedFile } from './trusted-file';

const MAX_LIST_BYTES = 64 * 1024;

function qemuImg(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(programPath('qemu-img'), args, { timeout: Math.max(1, Math.round(timeoutMs)), encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`qemu-img ${args[0]}: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Removes the bitmaps; returns one line per problem (empty when all went well or nothing was there). */
export async function removeBitmapsWithoutDaemon(stateDir: string, vmid: number, deadlineMs: number): Promise<string[]> {
  const dir = path.join(stateDir, 'parked', String(vmid));
  const problems: string[] = [];
  let images: { disk: string; path: string }[];
  try {
    const text = await readTrustedFile(path.join(dir, 'images.json'), { follow: false, maxBytes: MAX_LIST_BYTES });
    if (text === undefined) return [];
    images = (JSON.parse(text) as { disk: string; path: string }[]).filter((i) => typeof i.disk === 'string' && /^[a-z]+\d+$/.test(i.disk) && typeof i.path === 'string' && path.isAbsolute(i.path));
  } catch (err) {
    return [`image list unusable: ${(err as Error).message}`];
  }
  const left = (): number => deadlineMs - process.uptime() * 1000;
  for (const img of images) {
    try {
      const info = JSON.parse(await qemuImg(['info', '--output=json', '-f', 'qcow2', '--', img.path], left())) as {
        'format-specific'?: { data?: { bitmaps?: { name: string }[] } };
      };
      const own = (info['format-specific']?.data?.bitmaps ?? []).map((b) => b.name).filter((n) => n.startsWith(BITMAP_PREFIX));
      if (own.length === 0) continue;
      const removed: string[] = [];
      for (const name of own) {
        await qemuImg(['bitmap', '--remove', '-f', 'qcow2', '--', img.path, name], left());
        removed.push(name);
      }
      const marker = {
        disk: img.disk,
        path: img.path,
        bitmaps: removed,
        time: new Date().toISOString(),
        reason: `pve-cbt's post-stop hook removed ${removed.join(', ')} from the image itself because the daemon was not running`,
      };
      await fsp.writeFile(path.join(dir, `hook-dropped-${img.disk}.json`), `${JSON.stringify(marker)}\n`, { mode: 0o600 });
    } catch (err) {
      problems.push(`${img.disk}: ${(err as Error).message}`);
    }
  }
  return problems;
}
