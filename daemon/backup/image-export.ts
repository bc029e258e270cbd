/**
 * Reading disk images with qemu-nbd, and their bitmap bookkeeping with `qemu-img`: a stopped VM's
 * disks, and a running VM's volumes that QEMU does not hold (tpmstate0, which swtpm holds, opened
 * without image locking). `qemu-nbd -r` serves the image on a private unix socket, with `-B BITMAP`
 * to export a qcow2 persistent bitmap for an incremental.
 *
 * An image that a running QEMU holds is never opened: the VM's pid file and process are checked
 * first (CBT_BACKUP_IMAGE_IN_USE), and qemu-nbd's own image locking is the second line.
 * Bitmaps: qemu-img reports a qcow2 bitmap's flags; `in-use` means QEMU did not close the image
 * cleanly (the bitmap is inconsistent), `auto` means it records writes. The next bitmap is added
 * before the read (the image does not change while the VM is stopped); the old one is removed only
 * after the manifest is committed, and on failure the new one is removed again (image-source.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { isListening } from '../nbd/is-listening';
import { programPath } from '../proc/external-programs';
import { readQemuProcess } from '../pve/qemu-process';
import type { DiskFormat } from '../pve/vm-config';
import { BackupImageInUseError, BackupToolError } from './backup-errors';
import { run } from '../proc/run-process';
import type { BitmapView } from './mode-decision';

export interface ImageInfo {
  readonly virtualSize: number;
  readonly bitmaps: BitmapView[];
}

interface QemuImgInfo {
  'virtual-size': number;
  'format-specific'?: { type: string; data?: { bitmaps?: { name: string; granularity: number; flags: string[] }[] } };
}

export async function imageInfo(file: string, format: DiskFormat, qemuImg = programPath('qemu-img')): Promise<ImageInfo> {
  const info = JSON.parse(await run(qemuImg, ['info', '--output=json', '-f', format, '--', file])) as QemuImgInfo;
  const bitmaps = (info['format-specific']?.data?.bitmaps ?? []).map((b) => ({
    name: b.name,
    granularity: b.granularity,
    recording: b.flags.includes('auto'),
    busy: false,
    persistent: true,
    inconsistent: b.flags.includes('in-use'),
  }));
  return { virtualSize: info['virtual-size'], bitmaps };
}

export async function addImageBitmap(file: string, name: string, granularity: number, qemuImg = programPath('qemu-img')): Promise<void> {
  await run(qemuImg, ['bitmap', '--add', '-g', String(granularity), '-f', 'qcow2', '--', file, name]);
}

export async function removeImageBitmap(file: string, name: string, qemuImg = programPath('qemu-img')): Promise<void> {
  await run(qemuImg, ['bitmap', '--remove', '-f', 'qcow2', '--', file, name]);
}

/** Refuses when the VM's QEMU is alive: its images must only be read through QEMU itself. */
export function assertVmStopped(runDir: string, vmid: number, disk: string, file: string): void {
  const qemu = readQemuProcess(runDir, vmid);
  if (qemu) throw BackupImageInUseError({ vmid, disk, path: file, pid: qemu.pid });
}

export interface ImageExportOptions {
  readonly vmid: number;
  readonly drive: string;
  readonly file: string;
  readonly format: DiskFormat;
  readonly workDir: string;
  /** Open without image locking: for volumes another program (swtpm) holds. */
  readonly forceShare?: boolean;
  /** Persistent qcow2 bitmap to export as `qemu:dirty-bitmap:NAME`. */
  readonly bitmap?: string;
  readonly connections?: number;
  readonly qemuNbd?: string;
  readonly startTimeoutMs?: number;
  readonly logger?: Logger;
}

export class ImageExport {
  readonly exportName: string;
  private exited: Promise<void>;

  private constructor(
    readonly socketPath: string,
    private readonly child: ChildProcess,
    drive: string,
    private stderr: () => string,
  ) {
    this.exportName = drive;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  static async open(o: ImageExportOptions): Promise<ImageExport> {
    fs.mkdirSync(o.workDir, { recursive: true, mode: 0o700 });
    const socketPath = path.join(o.workDir, `pve-cbt-${o.vmid}-${o.drive}.qemu-nbd`);
    fs.rmSync(socketPath, { force: true });
    const args = ['-r', '-k', socketPath, '-x', o.drive, '-t', '-e', String(o.connections ?? 4), '--cache=none'];
    if (o.bitmap) args.push('-B', o.bitmap);
    if (o.forceShare) {
      // qemu-nbd has no --force-share: open through image options with file locking off.
      args.push('--image-opts', `driver=${o.format},file.driver=file,file.locking=off,file.filename=${o.file.replace(/,/g, ',,')}`);
    } else {
      args.push('-f', o.format, '--', o.file);
    }
    const child = spawn(o.qemuNbd ?? programPath('qemu-nbd'), args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-4000)));
    const exp = new ImageExport(socketPath, child, o.drive, () => err);
    try {
      await exp.waitReady(o.startTimeoutMs ?? 10_000);
    } catch (e) {
      await exp.close();
      throw e;
    }
    o.logger?.debug('qemu-nbd started', { vmid: o.vmid, disk: o.drive, socketPath, bitmap: o.bitmap });
    return exp;
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const t0 = Date.now();
    for (;;) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw BackupToolError({ command: 'qemu-nbd', reason: this.stderr().trim() || `exited with ${this.child.exitCode}` });
      }
      if (fs.existsSync(this.socketPath) && (await isListening({ path: this.socketPath }))) return;
      if (Date.now() - t0 > timeoutMs) throw BackupToolError({ command: 'qemu-nbd', reason: `socket not ready after ${timeoutMs} ms` });
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.socketPath, { force: true });
  }
}

/**
 * qemu-nbd processes an engine that died left running for this VM: recognised by their private
 * socket (`-k <workDir>/pve-cbt-<vmid>-...`), so nothing else is ever touched. A leftover would hold
 * the image and keep the VM from starting. Returns the pids that were stopped.
 */
export async function stopLeftoverExports(workDir: string, vmid: number): Promise<number[]> {
  const prefix = path.join(workDir, `pve-cbt-${vmid}-`);
  const stopped: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (path.basename(argv[0] ?? '') !== 'qemu-nbd') continue;
    const k = argv.indexOf('-k');
    if (k < 0 || !(argv[k + 1] ?? '').startsWith(prefix)) continue;
    const pid = Number(entry);
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      continue;
    }
    // Read-only export: when it does not go within the grace time (seen on a loaded host), SIGKILL loses nothing.
    if (!(await vanished(pid, 5000))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      await vanished(pid, 5000);
    }
    stopped.push(pid);
    fs.rmSync(argv[k + 1], { force: true });
  }
  return stopped;
}

async function vanished(pid: number, withinMs: number): Promise<boolean> {
  for (const t0 = Date.now(); Date.now() - t0 < withinMs; await new Promise((r) => setTimeout(r, 50))) {
    if (!fs.existsSync(`/proc/${pid}`) || isZombie(pid)) return true;
  }
  return false;
}

function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}
