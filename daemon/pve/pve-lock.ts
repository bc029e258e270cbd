/**
 * Proxmox VE's own per-VM lock: qemu-server serialises `qm start`, `qm rollback`, `qm disk move`,
 * vzdump and `qm cleanup` (which runs the post-stop hook) with `flock(2)` on
 * `/var/lock/qemu-server/lock-VMID.conf` (PVE/QemuConfig.pm `config_file_lock`, taken by
 * PVE::Tools::lock_file_full). pve-cbt takes the same lock for its own work on a stopped VM's images
 * (offline backups, moving bitmaps in or out) so that the two never touch one image at once.
 *
 * Node has no flock(2), so the lock is held by util-linux `flock(1)`: `flock -w SECS FILE cat` opens
 * the file, takes LOCK_EX, then runs `cat` holding the locked descriptor. pve-cbt writes one line to
 * cat's stdin and waits for it to come back: its echo proves the lock is held. Releasing closes
 * stdin, cat exits and the kernel drops the lock; so does pve-cbt's death (stdin closes with it),
 * so a killed daemon never leaves the VM locked.
 *
 * Work done inside a hook call (pre-start, post-stop) does NOT take this lock: Proxmox's caller
 * (`qm start`, `qm cleanup`) holds it already and waits for the hook, so taking it there would only
 * wait for ourselves until the timeout.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { programPath } from '../proc/external-programs';
import { PveLockFailedError, PveLockTimeoutError } from './pve-errors';

/** PVE::AbstractConfig::lock_config waits 10 s; pve-cbt waits as long by default. */
export const PVE_LOCK_TIMEOUT_MS = 10_000;

/** flock(1)'s exit status when -w expires (`-E`), distinct from cat's and flock's own failures. */
const CONFLICT_EXIT = 75;

export function pveLockPath(lockDir: string, vmid: number): string {
  return path.join(lockDir, `lock-${vmid}.conf`);
}

export interface PveLock {
  readonly file: string;
  release(): Promise<void>;
}

/** Takes the VM's lock, waiting at most `timeoutMs` (CBT_PVE_LOCK_TIMEOUT), and returns its handle. */
export async function acquirePveLock(lockDir: string, vmid: number, timeoutMs = PVE_LOCK_TIMEOUT_MS): Promise<PveLock> {
  const file = pveLockPath(lockDir, vmid);
  fs.mkdirSync(lockDir, { recursive: true });
  const secs = Math.max(0, timeoutMs / 1000).toFixed(3);
  const child = spawn(programPath('flock'), ['-E', String(CONFLICT_EXIT), '-w', secs, file, 'cat'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString('utf8')).slice(-2000)));
  const token = `pve-cbt ${process.pid} ${Date.now()}\n`;
  const held = await new Promise<boolean>((resolve) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      if (out.includes(token)) resolve(true);
    });
    child.once('error', () => resolve(false));
    void exited.then(() => resolve(false));
    child.stdin.on('error', () => undefined);
    child.stdin.write(token);
  });
  if (!held) {
    const { code, signal } = await exited;
    if (code === CONFLICT_EXIT) throw PveLockTimeoutError({ vmid, file, timeoutMs });
    throw PveLockFailedError({ vmid, file, reason: stderr.trim() || `flock exited with ${code ?? signal}` });
  }
  child.stdout.resume();
  let released: Promise<void> | undefined;
  return {
    file,
    release: () => {
      released ??= (async () => {
        child.stdin.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      })();
      return released;
    },
  };
}

/** Runs `fn` holding the VM's lock; the lock is released however `fn` ends. */
export async function withPveLock<T>(lockDir: string, vmid: number, fn: () => Promise<T>, timeoutMs = PVE_LOCK_TIMEOUT_MS): Promise<T> {
  const lock = await acquirePveLock(lockDir, vmid, timeoutMs);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
