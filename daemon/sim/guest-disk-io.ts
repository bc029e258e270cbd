/**
 * The simulator's disk I/O helpers: where the guest device of a disk sits in QEMU's qdev tree (for
 * HMP `qemu-io -d`), the range check every write makes first, qemu-io on a stopped VM's image, and
 * the writes into a disk's raw reference twin (the bytes tests compare restores with).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import type { SimDisk } from './pve-node';
import { SimIoError } from './sim-errors';

const execFileP = promisify(execFile);
const REF_CHUNK = 1024 * 1024;

/** efidisk0/tpmstate0 are drives without a guest device. */
export function hasDevice(key: string): boolean {
  return key !== 'efidisk0' && key !== 'tpmstate0';
}

/** virtio-blk-pci's id names the PCI proxy; the block backend sits on its virtio-backend child. */
export function qdevPath(key: string): string {
  return key.startsWith('virtio') ? `/machine/peripheral/${key}/virtio-backend` : key;
}

export function checkRange(vmid: number, disk: SimDisk, offset: number, length: number): void {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length <= 0 || offset + length > disk.sizeBytes) {
    throw SimIoError({ vmid, disk: disk.key, op: 'write', output: `range ${offset}+${length} outside 0..${disk.sizeBytes}` });
  }
}

export async function qemuIo(disk: SimDisk, cmd: string): Promise<string> {
  try {
    // bounded: librbd waits forever for a Ceph cluster that is down
    const { stdout, stderr } = await execFileP('qemu-io', ['-f', disk.format, '-c', cmd, disk.path], { timeout: 120_000 });
    return stdout + stderr;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return `${e.stdout ?? ''}${e.stderr ?? e.message}`;
  }
}

/** Writes `length` bytes at `offset` of the raw twin in chunks filled by `fill`. */
export function writeReference(file: string, offset: number, length: number, fill: (buf: Buffer, len: number) => void): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const buf = Buffer.alloc(Math.min(REF_CHUNK, length));
    for (let done = 0; done < length; ) {
      const len = Math.min(buf.length, length - done);
      fill(buf, len);
      fs.writeSync(fd, buf, 0, len, offset + done);
      done += len;
    }
  } finally {
    fs.closeSync(fd);
  }
}
