/**
 * Which processes have a file or block device open, from `/proc/PID/fd/*`.
 *
 * Each fd link is stat'ed (stat follows it to the open file itself, also when that file was
 * deleted or opened through a symlink), and compared by identity: device and inode for files,
 * the device number (rdev) for block devices, so `/dev/vg/lv`, `/dev/dm-3` and a copy of the
 * device node all match. Processes whose fds cannot be read (another user's, when not root) or
 * that exit during the scan are skipped.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
  /** Set for block devices: they are matched by device number. */
  readonly rdev: number | undefined;
}

export interface OpenFileHolder {
  readonly pid: number;
  readonly command: string;
}

export function fileIdentity(st: fs.Stats): FileIdentity {
  return { dev: st.dev, ino: st.ino, rdev: st.isBlockDevice() ? st.rdev : undefined };
}

export function sameFile(a: FileIdentity, b: FileIdentity): boolean {
  if (a.rdev !== undefined || b.rdev !== undefined) return a.rdev === b.rdev;
  return a.dev === b.dev && a.ino === b.ino;
}

function readDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

function commandOf(procDir: string, pid: number): string {
  try {
    return fs.readFileSync(path.join(procDir, String(pid), 'comm'), 'utf8').trim();
  } catch {
    return '?';
  }
}

/** Every process with an fd on the file, in pid order. */
export function processesHolding(target: FileIdentity, procDir = '/proc'): OpenFileHolder[] {
  const out: OpenFileHolder[] = [];
  const pids = readDir(procDir).filter((n) => /^\d+$/.test(n)).map(Number).sort((a, b) => a - b);
  for (const pid of pids) {
    const fdDir = path.join(procDir, String(pid), 'fd');
    for (const fd of readDir(fdDir)) {
      let st: fs.Stats;
      try {
        st = fs.statSync(path.join(fdDir, fd));
      } catch {
        continue;
      }
      if (sameFile(fileIdentity(st), target)) {
        out.push({ pid, command: commandOf(procDir, pid) });
        break;
      }
    }
  }
  return out;
}
