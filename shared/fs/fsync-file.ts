import fs from 'node:fs';

/** fsync of a file, a device or a directory opened read-only: a file's dirty pages (e.g. writes of a QEMU that has it open) reach the disk. */
export function fsyncFile(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
