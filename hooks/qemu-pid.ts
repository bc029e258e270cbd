/**
 * The pid of the VM's running QEMU, from qemu-server's pid file `<runDir>/VMID.pid`. A stale file
 * (QEMU crashed, pid reused) must not yield a wrong identity, so the pid counts only if that process
 * is alive and its command line names this very pid file (qemu-server starts QEMU with -pidfile).
 */
import fs from 'node:fs';
import path from 'node:path';

export function readQemuPid(runDir: string, vmid: number): number | undefined {
  const pidFile = path.join(runDir, `${vmid}.pid`);
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(pid) || pid < 1) return undefined;
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = argv.indexOf('-pidfile');
    return i >= 0 && argv[i + 1] === pidFile ? pid : undefined;
  } catch {
    return undefined;
  }
}
