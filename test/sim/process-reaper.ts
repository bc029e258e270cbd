/**
 * Remembers every daemonized QEMU the simulator started and SIGKILLs the survivors when the node is
 * cleaned up or the Node process exits (a failing or timed-out test must not leave QEMUs behind on a
 * 2-core machine). QEMU daemonizes, so these are not our children: liveness is probed with
 * kill(pid, 0) plus /proc state, because an unreaped zombie still answers kill(0).
 */
import fs from 'node:fs';

export class ProcessReaper {
  private readonly pids = new Set<number>();
  private readonly onExit = (): void => this.killAll();

  constructor() {
    process.on('exit', this.onExit);
  }

  add(pid: number): void {
    this.pids.add(pid);
  }

  remove(pid: number): void {
    this.pids.delete(pid);
  }

  killAll(): void {
    for (const pid of this.pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    this.pids.clear();
  }

  dispose(): void {
    this.killAll();
    process.off('exit', this.onExit);
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
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
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
