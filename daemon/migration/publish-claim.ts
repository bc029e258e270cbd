/**
 * The target node's half, first step: a hookscript pre-start with PVE_MIGRATED_FROM has just been
 * stored in this node's ledger, so a QEMU is being started here to receive VM state from that node.
 * The claim (handoff-format.ts) tells the source node's daemon which migration its handoff is for.
 * It is written in the background: the hook's answer never waits for the shared file system, and a
 * claim that fails to land only costs the disks' next backup an incremental (it is a full-compare).
 */
import type { LifecycleEvent } from '../../shared/ipc/messages';
import { clusterViewOf } from './cluster-view';
import { CLAIM_FORMAT } from './handoff-format';
import { writeClaim } from './handoff-store';
import type { MigrationDeps } from './migration-deps';

export function isMigratedStart(ev: LifecycleEvent): ev is LifecycleEvent & { vmid: number; migratedFrom: string; seq: string } {
  return ev.source === 'hookscript' && ev.phase === 'pre-start' && ev.vmid !== undefined && ev.migratedFrom !== undefined && ev.seq !== undefined;
}

/** Starts writing the claim for a migrated pre-start; resolves when written (callers need not wait). */
export function publishClaim(deps: MigrationDeps, ev: LifecycleEvent): Promise<void> {
  if (!isMigratedStart(ev)) return Promise.resolve();
  const view = clusterViewOf(deps.config.qemuServerConfigDir);
  if (!view) return Promise.resolve();
  const claim = { format: CLAIM_FORMAT, vmid: ev.vmid, from: ev.migratedFrom, to: view.nodeName, claimId: ev.seq, claimedAt: new Date().toISOString() } as const;
  return writeClaim(deps.repo.storage, claim).then(
    () => {
      deps.logger?.info(`VM migrating in from ${claim.from}: claim for its bitmap records written`, { vmid: claim.vmid, claimId: claim.claimId });
    },
    (err: Error) => {
      deps.logger?.warn(`could not write the migration claim; the VM's next backup is a full-compare: ${err.message}`, { vmid: claim.vmid });
    },
  );
}
