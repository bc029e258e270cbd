/**
 * Starting and stopping the VM of a live restore. The command line is qemu-server's, as the
 * simulator builds it (daemon/sim/qemu-command.ts: daemonized, QMP on RUN/VMID.qmp, pid file
 * RUN/VMID.pid, the disk layout of the backup's `machine:`), with each disk a qcow2 overlay whose
 * backing is the NBD export: qemu-server's live restore (`pbs_live_restore`) starts the VM the same
 * way, its drives on the PBS block driver instead of NBD.
 *
 * The launcher is a parameter: the default runs qemu-system-x86_64 (from PATH) daemonized and waits
 * for the parent to exit (QEMU daemonizes once its devices and disks are open); tests pass one that
 * keeps QEMU in the foreground to read HMP `qemu-io` output.
 *
 * Stopping: QMP `quit`, then SIGTERM, then SIGKILL, each waited for up to `graceMs`; the pid is
 * the one of the pid file (checked against /proc's start time so a reused pid is never signalled).
 */
import { execFile } from 'node:child_process';
import { programPath } from '../proc/external-programs';
import { withQmp } from '../qmp/qmp-session';
import { readQemuProcess, type QemuProcess } from '../pve/qemu-process';
import { layoutOfMachine } from '../sim/adopted-vm';
import { qemuArgs, type DiskLayout, type QemuDiskArg } from '../sim/qemu-command';

export { layoutOfMachine };

export interface LiveLaunch {
  readonly vmid: number;
  readonly name: string;
  readonly layout: DiskLayout;
  readonly qmpPath: string;
  readonly pidPath: string;
  readonly disks: QemuDiskArg[];
}

/** Starts QEMU with `args`; resolves once the QMP socket and the pid file exist. */
export type QemuLauncher = (args: string[], launch: LiveLaunch) => Promise<void>;

export function liveQemuArgs(l: LiveLaunch): string[] {
  return qemuArgs({ vmid: l.vmid, name: l.name, qmpPath: l.qmpPath, pidPath: l.pidPath, disks: l.disks, paused: false, layout: l.layout, directIo: false });
}

export const daemonizedLauncher: QemuLauncher = (args) =>
  new Promise((resolve, reject) => {
    execFile(programPath('qemu-system-x86_64'), args, { timeout: 60_000, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (err) reject(new Error(stderr.trim() || err.message));
      else resolve();
    });
  });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function alive(p: QemuProcess, runDir: string, vmid: number): boolean {
  const now = readQemuProcess(runDir, vmid);
  return now !== undefined && now.pid === p.pid && now.startTime === p.startTime;
}

async function waitGone(p: QemuProcess, runDir: string, vmid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (!alive(p, runDir, vmid)) return true;
  return !alive(p, runDir, vmid);
}

/** Stops the VM's QEMU; true when it is gone (or was not running). */
export async function stopLiveVm(runDir: string, vmid: number, qmpPath: string, graceMs = 10_000): Promise<boolean> {
  const p = readQemuProcess(runDir, vmid);
  if (!p) return true;
  await withQmp(qmpPath, (q) => q.execute('quit'), { connectAttempts: 3, retryBaseDelayMs: 50, maxRetryDelayMs: 200 }).catch(() => undefined);
  if (await waitGone(p, runDir, vmid, graceMs)) return true;
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    try {
      process.kill(p.pid, sig);
    } catch {
      return !alive(p, runDir, vmid);
    }
    if (await waitGone(p, runDir, vmid, graceMs)) return true;
  }
  return false;
}
