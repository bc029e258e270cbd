/**
 * qemu-server marks a VM's config `lock: NAME` for as long as an operation runs on it (`snapshot`,
 * `snapshot-delete`, `rollback`, `migrate`, `clone`, `create`, vzdump's `backup`). pve-cbt does not
 * begin a backup meanwhile: its point-in-time view puts a block job on each drive, and QEMU refuses
 * `blockdev-snapshot-internal-sync` and `blockdev-snapshot-delete-internal-sync` on a drive a job
 * holds ("Need a root block node", verified on QEMU 7.2 and 10.0), so a backup starting while a
 * `qm snapshot --vmstate` saves the RAM would make that snapshot fail. The wait is bounded
 * (`configLockWaitMs`, default 30 s, polled every second at most), then CBT_BACKUP_CONFIG_LOCKED.
 * `suspended` (a VM hibernated to disk) is a state, not an operation in progress: no wait.
 * Pure rule (`blockingLock`) apart from the polling.
 */
import { readVmConfig } from '../pve/vm-disks';
import type { BackupVmOptions } from './backup-options';
import { BackupConfigLockedError } from './config-lock-errors';

export const DEFAULT_CONFIG_LOCK_WAIT_MS = 30_000;

/** The lock that keeps pve-cbt from starting, or undefined. */
export function blockingLock(entries: Readonly<Record<string, string>>): string | undefined {
  const lock = entries.lock?.trim();
  if (!lock || lock === 'suspended') return undefined;
  return lock;
}

export async function waitConfigUnlocked(opts: BackupVmOptions): Promise<void> {
  const limit = opts.config.configLockWaitMs ?? DEFAULT_CONFIG_LOCK_WAIT_MS;
  const t0 = Date.now();
  for (;;) {
    const lock = blockingLock(readVmConfig(opts.config.qemuServerConfigDir, opts.vmid).entries);
    if (lock === undefined) return;
    const waited = Date.now() - t0;
    if (waited >= limit) throw BackupConfigLockedError({ vmid: opts.vmid, lock, waitedMs: waited });
    opts.logger?.info(`VM config is locked (${lock}), waiting`, { vmid: opts.vmid, lock });
    await new Promise((r) => setTimeout(r, Math.max(10, Math.min(1000, limit - waited))));
    opts.signal?.throwIfAborted();
  }
}
