/**
 * Restore of one disk onto an existing RBD image (a volume `pvesm alloc` made on an RBD storage, or
 * a VM's image with --force): the disk is restored and checked into a private temporary raw file
 * first (restore.ts, every chunk verified), then `beforeCommit` runs, then `qemu-img convert -n`
 * writes the whole image through librbd (zeroes included: the image is not assumed empty). The
 * convert is bounded (librbd blocks forever while the cluster is down): at least 60 s, plus one
 * second per 8 MiB; its expiry is CBT_CEPH_TIMEOUT. The image must be at least the disk's size.
 */
import { execFile } from 'node:child_process';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CephTimeoutError } from '../proc/ceph-errors';
import { RepoQemuImgFailedError } from './repository-errors';

export interface RbdRestoreSteps {
  readonly qemuImg: string;
  /** Writes the verified disk to this raw file (restore.ts's file restore). */
  restoreToFile(file: string): Promise<{ bytes: number }>;
  readonly beforeCommit?: () => Promise<void>;
  readonly tmpDir?: string;
}

export function rbdConvertTimeoutMs(bytes: number): number {
  return 60_000 + Math.ceil(bytes / (8 * 1024 * 1024)) * 1000;
}

export async function restoreToRbd(target: string, steps: RbdRestoreSteps): Promise<{ bytes: number }> {
  const dir = await fsp.mkdtemp(path.join(steps.tmpDir ?? os.tmpdir(), 'pve-cbt-rbd-restore-'));
  try {
    await fsp.chmod(dir, 0o700);
    const file = path.join(dir, 'disk.raw');
    const { bytes } = await steps.restoreToFile(file);
    await steps.beforeCommit?.();
    const args = ['convert', '-n', '-f', 'raw', '-O', 'raw', file, target];
    const timeoutMs = rbdConvertTimeoutMs(bytes);
    await new Promise<void>((resolve, reject) => {
      execFile(steps.qemuImg, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (err, _stdout, stderr) => {
        if (!err) return resolve();
        const command = `${path.basename(steps.qemuImg)} ${args.join(' ')}`;
        if ((err as { killed?: boolean }).killed) return reject(CephTimeoutError({ command, timeoutMs }, err));
        const code = typeof err.code === 'number' ? err.code : null;
        reject(RepoQemuImgFailedError({ command, exitCode: code, stderr: String(stderr || err.message) }, err));
      });
    });
    return { bytes };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}
