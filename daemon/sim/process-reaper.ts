/**
 * Makes sure no simulated QEMU outlives the simulator, on a 2-core machine shared by many tests:
 *
 * - node cleanup and process `exit` SIGKILL every QEMU still recorded;
 * - SIGINT/SIGTERM do the same, then re-raise the signal when nobody else handles it;
 * - a detached bash watchdog polls the Node process once a second and, when it is gone (SIGKILL,
 *   OOM), kills the QEMUs named by the node's pid files and removes the node directory.
 *
 * QEMU daemonizes, so these are not our children. A pid is only killed while its command line still
 * contains the node's root directory (pids get reused), and liveness is probed with kill(pid, 0)
 * plus /proc state, because an unreaped zombie still answers kill(0).
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const WATCHDOG = `
parent=$1 root=$2 rundir=$3
while kill -0 "$parent" 2>/dev/null; do sleep 1; done
for f in "$rundir"/*.pid; do
  [ -f "$f" ] || continue
  pid=$(< "$f")
  if [ -r "/proc/$pid/cmdline" ] && grep -qF -- "$root/" "/proc/$pid/cmdline"; then kill -9 "$pid"; fi
done
rm -rf -- "$root"
`;

export class ProcessReaper {
  private readonly pids = new Set<number>();
  private readonly marker: string;
  private readonly watchdogPid: number | undefined;
  private readonly onExit = (): void => this.killAll();
  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.killAll();
    if (process.listenerCount(signal) === 1) {
      this.detach();
      process.kill(process.pid, signal);
    }
  };

  /**
   * `root`: the node directory every QEMU command line mentions; `runDir`: where the pid files are;
   * `watchPid`: the process whose death triggers the watchdog (this one by default).
   */
  constructor(root: string, runDir: string, watchPid: number = process.pid) {
    this.marker = `${root}/`;
    process.on('exit', this.onExit);
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    const watchdog = spawn('/bin/bash', ['-c', WATCHDOG, 'pve-sim-watchdog', String(watchPid), root, runDir], {
      detached: true,
      stdio: 'ignore',
    });
    watchdog.unref();
    this.watchdogPid = watchdog.pid;
  }

  add(pid: number): void {
    this.pids.add(pid);
  }

  remove(pid: number): void {
    this.pids.delete(pid);
  }

  killAll(): void {
    for (const pid of this.pids) {
      if (ownsProcess(pid, this.marker)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
    }
    this.pids.clear();
  }

  dispose(): void {
    this.killAll();
    this.detach();
    if (this.watchdogPid !== undefined) {
      try {
        process.kill(this.watchdogPid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }

  private detach(): void {
    process.off('exit', this.onExit);
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
  }
}

function ownsProcess(pid: number, marker: string): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker);
  } catch {
    return false;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.charAt(stat.lastIndexOf(')') + 2);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Polls until `pid` is gone; false on timeout. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}
