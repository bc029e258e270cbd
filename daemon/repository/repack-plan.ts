/**
 * What GC does with each pack (format 2): keep it, delete it, or repack it. Pure: no I/O, table-
 * tested (test/daemon/repository/repack-plan.test.ts); garbage-collect.ts gathers the inputs and
 * carries the decisions out (pack-repack.ts copies, the sweep deletes under the grace rule).
 *
 * Inputs per pack: its .idx entries (digest, offset, stored length, kind), the size of its .pack
 * file (bytes the .idx does not list are dead too: a speculative duplicate, a crash tail) and the
 * .idx mtime (the per-pack touch of the GC rule: a writer relying on a blob of the pack touched it).
 * Plus the marked digests (what the manifests reach) and the cutoff of this GC run.
 *
 * Rules:
 * - A pack whose .idx mtime is >= cutoff is kept ('young'): a live writer may rely on any of its
 *   blobs, marked or not.
 * - Live entries: a marked digest is live in exactly one pack, its canonical pack, chosen
 *   deterministically: a young pack first (it is kept whatever happens), then the pack with the
 *   larger share of marked bytes, then the smaller packId. A second pass moves a digest whose
 *   canonical pack is not kept (deleted or repacked) to a kept pack that holds it too (the smallest
 *   packId of those), so no blob is copied that a kept pack already serves.
 * - A pack (old enough) with no live entry is deleted ('dead').
 * - A pack (old enough) whose live bytes are below `threshold` (default 0.5) of its file size is
 *   repacked ('sparse'): its live entries, in offset order, are copied into new packs; the rest
 *   go with it. Otherwise it is kept ('dense').
 * Totals (live bytes, bytes freed) let the report say what a run reclaims.
 */
import type { BlobKind } from './file-formats';

export const DEFAULT_REPACK_THRESHOLD = 0.5;

export interface PackEntryRef {
  /** Lowercase hex SHA-256 of the plain content. */
  digest: string;
  offset: number;
  /** Header + payload, as in the .idx. */
  storedLength: number;
  kind: BlobKind;
}

export interface PackFacts {
  packId: string;
  entries: readonly PackEntryRef[];
  /** Size of the .pack file (header and dead bytes included). */
  packBytes: number;
  idxMtimeMs: number;
}

export type PackAction = 'keep' | 'delete' | 'repack';
export type PackReason = 'young' | 'dense' | 'dead' | 'sparse';

export interface PackDecision {
  packId: string;
  action: PackAction;
  reason: PackReason;
  /** Entries live in this pack (canonical here), in offset order; what a repack copies. */
  live: PackEntryRef[];
  liveBytes: number;
  packBytes: number;
}

export interface RepackPlan {
  /** One per input pack, in packId order. */
  decisions: PackDecision[];
  /** Digest → packId of the pack it is live in (marked digests found in some pack). */
  canonical: Map<string, string>;
  /** Bytes freed once every delete and repack is done (a repack's copies subtracted). */
  bytesReclaimed: number;
}

export interface RepackPlanInput {
  packs: readonly PackFacts[];
  /** Whether the mark reached this entry's digest (as a chunk or a page, after its kind). */
  isMarked(entry: PackEntryRef): boolean;
  cutoffMs: number;
  /** Live share (bytes) below which an old pack is repacked; 0 disables repacking. */
  threshold?: number;
}

export function planRepack(input: RepackPlanInput): RepackPlan {
  const threshold = input.threshold ?? DEFAULT_REPACK_THRESHOLD;
  const packs = [...input.packs].sort((a, b) => cmp(a.packId, b.packId));
  const young = (p: PackFacts): boolean => p.idxMtimeMs >= input.cutoffMs;

  // Pass 1: the share of marked bytes each pack would have if it were canonical for all of them.
  const potential = new Map<string, number>();
  for (const p of packs) {
    let marked = 0;
    for (const e of p.entries) if (input.isMarked(e)) marked += e.storedLength;
    potential.set(p.packId, share(marked, p.packBytes));
  }
  const rank = (a: PackFacts, b: PackFacts): number =>
    Number(young(b)) - Number(young(a)) || potential.get(b.packId)! - potential.get(a.packId)! || cmp(a.packId, b.packId);
  const holders = new Map<string, PackFacts[]>();
  for (const p of packs) {
    for (const e of p.entries) {
      if (!input.isMarked(e)) continue;
      const list = holders.get(e.digest);
      if (!list) holders.set(e.digest, [p]);
      else if (!list.includes(p)) list.push(p);
    }
  }
  const canonical = new Map<string, string>();
  for (const [digest, list] of holders) canonical.set(digest, list.reduce((best, p) => (rank(p, best) < 0 ? p : best)).packId);

  let actions = decide(packs, canonical, threshold, young);
  // Pass 2: prefer a kept pack for a digest whose canonical pack goes (deleted or repacked).
  let moved = false;
  for (const [digest, list] of holders) {
    if (actions.get(canonical.get(digest)!) === 'keep') continue;
    const kept = list.filter((p) => actions.get(p.packId) === 'keep');
    if (kept.length) {
      canonical.set(digest, kept[0].packId);
      moved = true;
    }
  }
  // Moving digests only takes live bytes from packs that go and gives them to kept packs, so a
  // kept pack stays kept; a repacked one may become dead (then it is simply deleted).
  if (moved) actions = decide(packs, canonical, threshold, young);

  const decisions: PackDecision[] = [];
  let bytesReclaimed = 0;
  for (const p of packs) {
    const live = liveEntries(p, canonical);
    const liveBytes = live.reduce((s, e) => s + e.storedLength, 0);
    const action = actions.get(p.packId)!;
    const reason: PackReason = young(p) ? 'young' : action === 'delete' ? 'dead' : action === 'repack' ? 'sparse' : 'dense';
    if (action === 'delete') bytesReclaimed += p.packBytes;
    if (action === 'repack') bytesReclaimed += p.packBytes - liveBytes;
    decisions.push({ packId: p.packId, action, reason, live: action === 'delete' ? [] : live, liveBytes, packBytes: p.packBytes });
  }
  return { decisions, canonical, bytesReclaimed };
}

function decide(packs: PackFacts[], canonical: Map<string, string>, threshold: number, young: (p: PackFacts) => boolean): Map<string, PackAction> {
  const out = new Map<string, PackAction>();
  for (const p of packs) {
    if (young(p)) {
      out.set(p.packId, 'keep');
      continue;
    }
    const live = liveEntries(p, canonical);
    const liveBytes = live.reduce((s, e) => s + e.storedLength, 0);
    if (live.length === 0) out.set(p.packId, 'delete');
    else if (share(liveBytes, p.packBytes) < threshold) out.set(p.packId, 'repack');
    else out.set(p.packId, 'keep');
  }
  return out;
}

/** The pack's entries canonical in it, each digest once, in offset order. */
function liveEntries(p: PackFacts, canonical: Map<string, string>): PackEntryRef[] {
  const seen = new Set<string>();
  const out: PackEntryRef[] = [];
  for (const e of p.entries) {
    if (canonical.get(e.digest) !== p.packId || seen.has(e.digest)) continue;
    seen.add(e.digest);
    out.push(e);
  }
  return out.sort((a, b) => a.offset - b.offset);
}

function share(bytes: number, total: number): number {
  return total > 0 ? bytes / total : 0;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
