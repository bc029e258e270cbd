/**
 * Applies ledger/ledger-reconcile.ts before a job: reads the configs of the VMs the ledger has
 * records of (or of the given VMs), drops the records of disks and VMs that are gone and invalidates
 * those whose disk key names another volume, logging each with its reason; then pve-cbt's bitmaps
 * leave the volumes those disks no longer use (release-volume-bitmaps.ts). Fail-open: a config that
 * cannot be read (other than missing from a readable config folder) changes nothing, and an error
 * here is logged and never fails the job.
 */
import fs from 'node:fs';
import { reconcileLedger, type ConfigView, type ReconcileAction } from '../ledger/ledger-reconcile';
import { PveConfigMissingError } from '../pve/pve-errors';
import { readVmConfig } from '../pve/vm-disks';
import { releaseVolumeBitmaps } from './release-volume-bitmaps';
import type { Services } from './services';

export async function reconcileLedgerWithConfigs(s: Pick<Services, 'ledger' | 'config' | 'logger'>, vmids?: readonly number[]): Promise<ReconcileAction[]> {
  try {
    const records = s.ledger.list().filter((r) => vmids === undefined || vmids.includes(r.vmid));
    const configs = new Map<number, ConfigView>();
    for (const vmid of new Set(records.map((r) => r.vmid))) {
      const view = configView(s.config.qemuServerConfigDir, vmid);
      if (view) configs.set(vmid, view);
    }
    const actions = reconcileLedger(records, configs);
    for (const a of actions) {
      if (a.kind === 'forget-vm') s.ledger.forget(a.vmid, null);
      else if (a.kind === 'forget-disk') s.ledger.forget(a.vmid, a.disk);
      else s.ledger.markInvalid(a.vmid, a.disk, a.reason);
      s.logger.info(`ledger: ${a.kind}: ${a.reason}`, { vmid: a.vmid, ...(a.kind === 'forget-vm' ? {} : { disk: a.disk }) });
    }
    await releaseVolumeBitmaps(actions, s.logger);
    return actions;
  } catch (err) {
    s.logger.warn('ledger reconciliation with the VM configs failed; the mode decision still checks each disk', { error: (err as Error).message });
    return [];
  }
}

/** The VM's config as the reconciliation needs it; undefined when it cannot be known now. */
function configView(configDir: string, vmid: number): ConfigView | undefined {
  try {
    const c = readVmConfig(configDir, vmid);
    return { kind: 'present', entries: c.entries, disks: c.disks };
  } catch (err) {
    // Only a readable folder without VMID.conf means the VM is gone (not an unmounted /etc/pve).
    const missing = PveConfigMissingError.is(err) && (err.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
    if (missing && fs.existsSync(configDir)) return { kind: 'gone' };
    return undefined;
  }
}
