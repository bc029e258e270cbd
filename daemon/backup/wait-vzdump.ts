/**
 * vzdump owns a VM while it backs it up (the ledger knows from the vzdump hook): a pve-cbt backup
 * waits a bounded time (`vzdumpWaitMs`, default 0) for it to end, then fails CBT_BACKUP_VZDUMP_BUSY.
 */
import { BackupVzdumpBusyError } from './backup-errors';
import type { BackupVmOptions } from './backup-options';

/** vzdump owns the VM while it runs (ledger, fed by the vzdump hook): wait a bounded time, then fail. */
export async function waitVzdumpDone(opts: BackupVmOptions): Promise<void> {
  const limit = opts.config.vzdumpWaitMs ?? 0;
  const t0 = Date.now();
  while (opts.ledger.isVzdumpBusy(opts.vmid)) {
    if (Date.now() - t0 >= limit) throw BackupVzdumpBusyError({ vmid: opts.vmid, waitedMs: Date.now() - t0, hint: `run it again once vzdump's backup of VM ${opts.vmid} has ended ('pvenode task list' shows it)` });
    opts.logger?.info('vzdump is backing up the VM, waiting', { vmid: opts.vmid });
    await new Promise((r) => setTimeout(r, Math.min(1000, limit)));
    opts.signal?.throwIfAborted();
  }
}
