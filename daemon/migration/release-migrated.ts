/**
 * The source node's half: a live migration fires no hook on the source (pve-qemu-facts.md), so the
 * daemon finds out by looking. Every VM its ledger knows whose config is no longer in this node's
 * folder but in another node's has migrated there. For each such VM (not while a job of it is queued
 * or running), after the spool has been replayed so that every event from before the migration
 * counts:
 *   1. if the VM was running here (a live migration), the bitmap records the ledger holds `valid`
 *      are written as the handoff (handoff-format.ts), with the target's claim id when its claim is
 *      there (from this node to that one), else with none (the target then adopts nothing);
 *   2. the ledger rows of the VM are dropped: it is not this node's any more, and its QEMU's end
 *      here (no pre-stop, no post-stop) is neither a crash nor anything else to record.
 * A crash between 1 and 2 repeats both at the next look. A VM that was stopped here (an offline
 * migration) hands nothing over: its next start on the target is a plain start.
 */
import { replaySpool } from '../ipc/spool-replay';
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
    const running = deps.ledger.activity(vmid)?.running ?? false;
    let handedOver = 0;
    let claimId: string | null = null;
    if (running) {
      const claim = await readClaim(deps.repo.storage, vmid);
      claimId = claim && claim.from === view.nodeName && claim.to === to ? claim.claimId : null;
      const disks = deps.ledger
        .list(vmid)
        .filter((r) => r.state === 'valid' && r.bitmapName !== null && r.generation !== null)
        .map((r) => ({ disk: r.disk, format: r.format, bitmapName: r.bitmapName as string, generation: r.generation as number }));
      const handoff: BitmapHandoff = { format: HANDOFF_FORMAT, vmid, from: view.nodeName, to, claimId, writtenAt: new Date().toISOString(), disks };
      await writeHandoff(deps.repo.storage, handoff);
      handedOver = disks.length;
    }
    deps.ledger.forgetVm(vmid, `VM ${vmid} runs on node ${to} now (${running ? `live-migrated, ${handedOver} bitmap record(s) handed over${claimId ? '' : ' without a claim'}` : 'moved while stopped'})`);
    out.push({ vmid, to, handedOver, claimId });
  }
  return out;
}
