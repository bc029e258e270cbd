/**
 * The source node's half: a live migration fires no hook on the source (pve-qemu-facts.md), so the
 * daemon finds out by looking. A VM its ledger knows whose config is no longer in this node's folder
 * but in node X's has left for X, with one exception: while this node is the TARGET of a migration
 * from X (the VM's last pre-start here came with PVE_MIGRATED_FROM=X), the config is still in X's
 * folder until the migration completes, and such a VM is left alone unless X's daemon claimed it
 * from this node (then it went back). For each VM that left (not while a job of it is queued or
 * running), after the spool has been replayed so that every event from before the migration counts:
 *   1. if X's daemon claimed it (claim.json from this node to X) and the VM was running here, the
 *      bitmap records the ledger holds `valid` are written as the handoff (handoff-format.ts) with
 *      that claim's id; without a claim (X's daemon was down at the pre-start, an offline
 *      migration) nothing is handed over and the disks' next backup on X is a full-compare;
 *   2. the ledger rows of the VM are dropped: it is not this node's any more, and its QEMU's end
 *      here (no pre-stop, no post-stop) is neither a crash nor anything else to record.
 * Only the node a claim names as source writes the handoff, so two nodes never race for it. A crash
 * between 1 and 2 repeats both at the next look.
 */
import { replaySpool } from '../ipc/spool-replay';
import { lastStartOf } from './adopt-migrated';
import { clusterViewOf, otherNodeOf } from './cluster-view';
import { HANDOFF_FORMAT, type BitmapHandoff } from './handoff-format';
import { readClaim, writeHandoff } from './handoff-store';
import type { MigrationDeps } from './migration-deps';

export interface Released {
  vmid: number;
  to: string;
  handedOver: number;
  claimId: string | null;
}

export async function releaseMigratedVms(deps: MigrationDeps): Promise<Released[]> {
  const view = clusterViewOf(deps.config.qemuServerConfigDir);
  if (!view) return [];
  const busy = deps.busyVmids?.() ?? new Set<number>();
  const gone = deps.ledger
    .knownVmids()
    .filter((vmid) => !busy.has(vmid))
    .map((vmid) => ({ vmid, to: otherNodeOf(view, vmid) }))
    .filter((x): x is { vmid: number; to: string } => x.to !== undefined);
  if (gone.length === 0) return [];
  replaySpool(deps.config.stateDir, (ev) => void deps.ledger.recordEvent(ev), deps.logger);
  const out: Released[] = [];
  for (const { vmid, to } of gone) {
    const claim = await readClaim(deps.repo.storage, vmid);
    const claimId = claim && claim.from === view.nodeName && claim.to === to ? claim.claimId : null;
    // Arriving from `to` (or an arrival that failed): the config moves here only at the end.
    if (claimId === null && lastStartOf(deps, vmid)?.migratedFrom === to) continue;
    const running = deps.ledger.activity(vmid)?.running ?? false;
    let handedOver = 0;
    if (running && claimId !== null) {
      const disks = deps.ledger
        .list(vmid)
        .filter((r) => r.state === 'valid' && r.bitmapName !== null && r.generation !== null)
        .map((r) => ({ disk: r.disk, format: r.format, bitmapName: r.bitmapName as string, generation: r.generation as number }));
      const handoff: BitmapHandoff = { format: HANDOFF_FORMAT, vmid, from: view.nodeName, to, claimId, writtenAt: new Date().toISOString(), disks };
      await writeHandoff(deps.repo.storage, handoff);
      handedOver = disks.length;
    }
    deps.ledger.forgetVm(vmid, `VM ${vmid} runs on node ${to} now (${claimId === null ? 'no claim from its daemon: nothing handed over' : running ? `live-migrated, ${handedOver} bitmap record(s) handed over` : 'moved while stopped'})`);
    out.push({ vmid, to, handedOver, claimId });
  }
  return out;
}
