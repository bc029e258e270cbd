/**
 * Whether the target node's daemon may take over, after a live migration, the bitmap records the
 * source node's daemon handed over (handoff-format.ts). Pure, so that every rule is table-tested.
 *
 * The records are adopted only when all of this holds (otherwise the disks' next backup is the
 * full-compare any unknown bitmap gets):
 * - the VM's latest hookscript pre-start on this node came with PVE_MIGRATED_FROM, and a handoff
 *   exists whose claim id is that event's seq, from that node, to this one: it describes exactly
 *   the migration that started this QEMU;
 * - the QEMU running now is the one that received the migration: its pid is the one the post-start
 *   after that pre-start reported (events after it are applied by Ledger.markValid, as for a bitmap
 *   created at that moment);
 * - per disk: the VM config still has it with the same format, this node's ledger has no record of
 *   it yet (or only the `unknown` the migrated pre-start leaves), and the last committed backup of
 *   the disk started exactly the handed-over bitmap name and generation.
 * QEMU's own view (bitmap present, recording, consistent, same process) is checked by the mode
 * decision as for any incremental, so a handoff alone never makes a disk incremental.
 */
import type { BitmapHandoff, HandoffDisk } from './handoff-format';

export interface MigratedStart {
  /** Ledger id of the pre-start event. */
  readonly eventId: number;
  readonly seq: string | null;
  readonly migratedFrom: string | null;
  /** QEMU pid the first post-start after it carried, if any. */
  readonly postStartPid: number | null;
}

export interface AdoptionInput {
  readonly vmid: number;
  readonly thisNode: string;
  readonly start: MigratedStart | undefined;
  readonly handoff: BitmapHandoff | undefined;
  readonly qemuPid: number | undefined;
  readonly configDisks: ReadonlyArray<{ readonly key: string; readonly format: string }>;
  readonly ledgerStates: ReadonlyMap<string, string>;
  readonly lastBitmaps: ReadonlyMap<string, { readonly name: string; readonly generation: number } | undefined>;
}

export type AdoptionVerdict =
  /** Adopt `disks` (maybe none of them qualified) and consume the handoff. */
  | { readonly kind: 'adopt'; readonly disks: readonly HandoffDisk[]; readonly skipped: ReadonlyArray<{ disk: string; reason: string }> }
  /** The handoff for this migration may still come: keep looking. */
  | { readonly kind: 'wait'; readonly reason: string }
  /** Nothing to adopt; `consume` when the handoff was meant for this migration and is useless now. */
  | { readonly kind: 'none'; readonly reason: string; readonly consume: boolean };

export function decideAdoption(i: AdoptionInput): AdoptionVerdict {
  const s = i.start;
  if (!s || s.migratedFrom === null) return { kind: 'none', reason: 'the VM was not started here by a migration', consume: false };
  if (s.seq === null) return { kind: 'none', reason: 'the migrated pre-start carries no seq to claim with', consume: false };
  const h = i.handoff;
  if (!h) return { kind: 'wait', reason: `no handoff from ${s.migratedFrom} yet` };
  if (h.claimId !== s.seq) {
    if (h.claimId === null && h.from === s.migratedFrom && h.to === i.thisNode) {
      return { kind: 'none', reason: `${h.from} handed over without a claim (this node's daemon did not see the pre-start live)`, consume: true };
    }
    return { kind: 'wait', reason: `the handoff present is for another migration (${h.from} -> ${h.to})` };
  }
  if (h.from !== s.migratedFrom || h.to !== i.thisNode) {
    return { kind: 'none', reason: `handoff names ${h.from} -> ${h.to}, but the VM came from ${s.migratedFrom} to ${i.thisNode}`, consume: true };
  }
  if (i.qemuPid === undefined) return { kind: 'none', reason: 'QEMU no longer runs', consume: true };
  if (s.postStartPid === null || s.postStartPid !== i.qemuPid) {
    return { kind: 'none', reason: `QEMU pid ${i.qemuPid} is not the migrated one (${s.postStartPid ?? 'no post-start seen'})`, consume: true };
  }
  const disks: HandoffDisk[] = [];
  const skipped: Array<{ disk: string; reason: string }> = [];
  for (const d of h.disks) {
    const conf = i.configDisks.find((c) => c.key === d.disk);
    const state = i.ledgerStates.get(d.disk);
    const last = i.lastBitmaps.get(d.disk);
    if (!conf) skipped.push({ disk: d.disk, reason: 'no longer in the VM config' });
    else if (conf.format !== d.format) skipped.push({ disk: d.disk, reason: `format is ${conf.format} now, was ${d.format}` });
    else if (state !== undefined && state !== 'unknown') skipped.push({ disk: d.disk, reason: `this node's ledger already says ${state}` });
    else if (!last || last.name !== d.bitmapName || last.generation !== d.generation) {
      skipped.push({ disk: d.disk, reason: `last backup started ${last ? `${last.name} generation ${last.generation}` : 'no bitmap'}, handoff has ${d.bitmapName} generation ${d.generation}` });
    } else disks.push(d);
  }
  return { kind: 'adopt', disks, skipped };
}
