/**
 * The fleecing scratch image of one disk (fleece-session.ts): an empty qcow2 of the disk's size.
 * `qemu-img create` is a process start on every backup's path (20–50 ms here); an empty qcow2 of a
 * given size is always the same file, so it is made once per size, as a template in the work dir
 * (`pve-cbt-template-SIZE.qcow2`, written under a temporary name and renamed into place, so that two
 * backups never see half of one), and each backup gets a copy of it. QEMU only ever opens the
 * copies, so the template stays empty. A template that is not a file of the expected kind is made again.
 */
import fs from 'node:fs';
import path from 'node:path';
import { run } from '../proc/run-process';

const QCOW2_MAGIC = Buffer.from('QFI\xfb', 'latin1');

export function scratchTemplatePath(workDir: string, size: number): string {
  return path.join(workDir, `pve-cbt-template-${size}.qcow2`);
}

function isQcow2(file: string): boolean {
  let fd: number | undefined;
  try {
    fd = fs.openSync(file, 'r');
    const head = Buffer.alloc(4);
    return fs.readSync(fd, head, 0, 4, 0) === 4 && head.equals(QCOW2_MAGIC);
  } catch {
    return false;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** Writes an empty qcow2 of `size` bytes at `file` (which must not be in use). */
export async function createScratchImage(file: string, size: number, workDir: string, qemuImg = 'qemu-img'): Promise<void> {
  const template = scratchTemplatePath(workDir, size);
  if (!isQcow2(template)) {
    const tmp = `${template}.${process.pid}.tmp`;
    try {
      await run(qemuImg, ['create', '-q', '-f', 'qcow2', tmp, String(size)]);
      fs.renameSync(tmp, template);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  fs.copyFileSync(template, file);
}
