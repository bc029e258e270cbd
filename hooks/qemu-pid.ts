/**
 * The pid of the VM's running QEMU, from qemu-server's pid file `<runDir>/VMID.pid`. A stale file
 * (QEMU crashed, pid reused) must not yield a wrong identity, so the pid counts only if that process
 * is alive and its command line names this very pid file (qemu-server starts QEMU with -pidfile).
 */
import path from 'node:path';
import { readRegularFile } from './trusted-file';

/** Never blocks: a pid file that is not a regular file (a FIFO, say) is no pid. */
export async function readQemuPid(runDir: string, vmid: number): Promise<number | undefined> {
  const pidFile = path.join(runDir, `${vmid}.pid`);
  try {
    const pid = Number((await readRegularFile(pidFile, 64))?.trim());
    if (!Number.isInteger(pid) || pid < 1) return undefined;
    const argv = ((await readRegularFile(`/proc/${pid}/cmdline`, 256 * 1024)) ?? '').split('\0');
    const i = argv.indexOf('-pidfile');
    return i >= 0 && argv[i + 1] === pidFile ? pid : undefined;
  } catch {
    return undefined;
  }
}
