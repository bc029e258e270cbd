/**
 * Format 2's GC decision per pack, pure (garbage-collect.ts does the I/O): which packs to delete,
 * which are candidates for a repack, which to keep.
 *
 * - A pack with no live entry (no entry whose digest the mark reached) whose .idx mtime is older
 *   than the cutoff is deleted (.idx first, then .pack, under the rename-aside + re-stat rule).
 * - A pack with live entries whose live share (bytes) is below `repackBelow`, and whose .idx is
 *   older than the cutoff, is a repack candidate: its live blobs are to be copied into new packs
 *   and the old pack deleted under the same rule. This module only names them; the repack itself
 *   is the repack step's (it calls this same function).
 * - Everything else is kept, in particular every pack touched or sealed since the cutoff.
 * A digest in two packs counts as live in both (a duplicate may be the good copy of a damaged
 * one, and this function does not know which).
 */
export interface PackSweepInput {
  packId: string;
  idxMtimeMs: number;
  /** Bytes of all entries / of the live ones (stored lengths). */
  bytes: number;
  liveBytes: number;
  liveEntries: number;
}

export interface PackSweepPlan {
  remove: string[];
  repack: string[];
  keep: string[];
}

export const DEFAULT_REPACK_BELOW = 0.5;

export function planPackSweep(packs: readonly PackSweepInput[], cutoffMs: number, opts: { repackBelow?: number } = {}): PackSweepPlan {
  const below = opts.repackBelow ?? DEFAULT_REPACK_BELOW;
  const plan: PackSweepPlan = { remove: [], repack: [], keep: [] };
  for (const p of packs) {
    const old = p.idxMtimeMs < cutoffMs;
    if (old && p.liveEntries === 0) plan.remove.push(p.packId);
    else if (old && p.bytes > 0 && p.liveBytes / p.bytes < below) plan.repack.push(p.packId);
    else plan.keep.push(p.packId);
  }
  return plan;
}
