/**
 * The order in which `pve-cbt repository upgrade` copies format-1 blobs into packs, and where it
 * resumes after a crash. Pure: no I/O, table-tested (test/daemon/repository/upgrade-plan.test.ts);
 * upgrade-repository.ts lists the folders and copies, upgrade-state.ts keeps the records.
 *
 * Every format-1 blob has a cursor `<kind>:<digest>` ("chunk:ab12…", "page:07ff…"). Cursors sort
 * as strings, and that order is the copy order: all chunks by digest (shard folders 00..ff in
 * turn, names in each sorted), then all pages. A sealed pack covers one contiguous range of that
 * order: every blob after the previous record's `last` up to and including its own `last`, except
 * the ones it lists as skipped (damaged; see upgrade-repository.ts). So the records, in sequence,
 * say exactly what is done; a resumed run starts after the last recorded cursor whose pack is
 * still sealed (its .idx present) and copies the rest. A pack sealed but not yet recorded when the
 * process died is copied again into a new pack: its blobs then exist twice, which readers allow
 * and format-2 GC cleans up (repack-plan.ts: one canonical pack per digest).
 */
import type { BlobKind } from './file-formats';
import { isDigest } from './digest';

/** The copy order of the kinds: chunks, then pages (string order of the cursors). */
export const UPGRADE_KINDS: readonly BlobKind[] = ['chunk', 'page'];

/** Format-1 shard folders, in order. */
export const SHARDS: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function cursorOf(kind: BlobKind, digest: string): string {
  return `${kind}:${digest}`;
}

export function parseCursor(cursor: string): { kind: BlobKind; digest: string } | null {
  const [kind, digest, extra] = cursor.split(':');
  if (extra !== undefined || (kind !== 'chunk' && kind !== 'page') || !isDigest(digest)) return null;
  return { kind, digest };
}

/** The shard folders still to visit from `after` on (that cursor's own shard included), in order. */
export function shardsToVisit(after: string | null): { kind: BlobKind; shard: string }[] {
  const out: { kind: BlobKind; shard: string }[] = [];
  const from = after ? parseCursor(after) : null;
  for (const kind of UPGRADE_KINDS) {
    for (const shard of SHARDS) {
      if (from && cursorOf(kind, shard.padEnd(64, 'f')) < cursorOf(from.kind, from.digest)) continue;
      out.push({ kind, shard });
    }
  }
  return out;
}

/**
 * The blobs of one shard folder still to copy: names that are digests of this shard (not a
 * temporary `.tmp-` file, not a GC's `.gc-` leftover), after `after`, sorted.
 */
export function shardBlobsToCopy(kind: BlobKind, shard: string, names: readonly string[], after: string | null): string[] {
  return names
    .filter((n) => isDigest(n) && n.startsWith(shard) && (after === null || cursorOf(kind, n) > after))
    .sort();
}

/** Seal the pack being filled before appending a blob of `nextBytes`? (at `target`, never above `max` unless empty). */
export function sealBefore(packBytes: number, nextBytes: number, headerBytes: number, target: number, max: number): boolean {
  if (packBytes <= headerBytes) return false;
  return packBytes >= target || packBytes + nextBytes > max;
}

/** One sealed pack of the upgrade, as recorded (upgrade-state.ts writes and reads it). */
export interface SealedRecord {
  seq: number;
  packId: string;
  /** Cursor of the first and last blob the range covers (copied or skipped). */
  first: string;
  last: string;
  blobs: number;
  bytes: number;
  /** Blobs of the range not copied because they were damaged (cursor and reason). */
  skipped: { cursor: string; reason: string }[];
}

export type RecordProblem = { seq: number; reason: string };

/** Where the records contradict each other (a gap in seq, ranges out of order), or null. */
export function recordsProblem(records: readonly SealedRecord[]): RecordProblem | null {
  let prevLast: string | null = null;
  for (let i = 0; i < records.length; i++) {
    const r = records[i];
    if (r.seq !== i) return { seq: r.seq, reason: `expected record ${i}, found ${r.seq}` };
    if (r.first > r.last) return { seq: r.seq, reason: `range ${r.first}..${r.last} is reversed` };
    if (prevLast !== null && r.first <= prevLast) return { seq: r.seq, reason: `range starts at ${r.first}, not after ${prevLast}` };
    prevLast = r.last;
  }
  return null;
}

export interface ResumePoint {
  /** Copy blobs after this cursor (null: from the start). */
  after: string | null;
  /** The records still valid (their packs are sealed), in order. */
  done: SealedRecord[];
  /** Records to drop: from the first whose pack is no longer sealed on (redone). */
  redo: SealedRecord[];
  nextSeq: number;
}

/** Where to resume, given consistent records and which packs are sealed (their .idx exists). */
export function resumePoint(records: readonly SealedRecord[], isSealed: (packId: string) => boolean): ResumePoint {
  const firstGone = records.findIndex((r) => !isSealed(r.packId));
  const done = firstGone === -1 ? [...records] : records.slice(0, firstGone);
  const redo = firstGone === -1 ? [] : records.slice(firstGone);
  return { after: done.length ? done[done.length - 1].last : null, done, redo, nextSeq: done.length };
}
