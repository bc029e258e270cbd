/**
 * Identity of a VM's QEMU process from qemu-server's pid file (`<runDir>/VMID.pid`) and
 * `/proc/PID/stat`. The start time (clock ticks since boot, field 22) distinguishes a new QEMU
 * that happens to reuse a pid, so transient bitmaps are only trusted in the process that made them.
 */
import fs from 'node:fs';
import path from 'node:path';

export interface QemuProcess {
  readonly pid: number;
  readonly startTime: number;
}

export function qmpSocketPath(runDir: string, vmid: number): string {
  return path.join(runDir, `${vmid}.qmp`);
}

export function qgaSocketPath(runDir: string, vmid: number): string {
  return path.join(runDir, `${vmid}.qga`);
}

/** Start time of a live (not zombie) process; undefined when it is gone. */
export function processStartTime(pid: number): number | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // comm (field 2) may contain spaces and parentheses: fields after it start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return Number(fields[19]);
  } catch {
    return undefined;
  }
}

/** The running QEMU of a VM, or undefined when there is no pid file or the process is gone. */
export function readQemuProcess(runDir: string, vmid: number): QemuProcess | undefined {
  let pid: number;
  try {
    pid = Number(fs.readFileSync(path.join(runDir, `${vmid}.pid`), 'utf8').trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const startTime = processStartTime(pid);
  if (startTime === undefined) return undefined;
  return { pid, startTime };
}
