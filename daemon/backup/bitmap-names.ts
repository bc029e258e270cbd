/**
 * Names pve-cbt gives to what it creates inside QEMU: dirty bitmaps and the scratch objects of a
 * point-in-time read (fleecing node, backup job, NBD export, scratch file).
 *
 * Bitmaps are `pve-cbt-<drive>-g<N>`: the generation N increases with every backup that starts a
 * new bitmap, and the manifest of a committed backup records the name and generation it started,
 * so the next backup knows exactly which bitmap it may trust. Everything carries BITMAP_PREFIX so
 * that pve-cbt never touches PVE's own bitmaps (`pbs-incremental-dirty-bitmap`, `repl_<drive>`) and
 * so that leftovers of a crashed daemon can be recognised and cleaned at start.
 * QEMU node names and job ids must start with a letter, use [A-Za-z0-9._-] and stay under 32 bytes.
 */
import { BITMAP_PREFIX } from '../../shared/config/defaults';

export interface BitmapId {
  readonly drive: string;
  readonly generation: number;
}

export function bitmapName(drive: string, generation: number): string {
  return `${BITMAP_PREFIX}${drive}-g${generation}`;
}

/** Parses a pve-cbt bitmap name; undefined for anything pve-cbt did not create. */
export function parseBitmapName(name: string): BitmapId | undefined {
  if (!name.startsWith(BITMAP_PREFIX)) return undefined;
  const m = /^(.+)-g(\d+)$/.exec(name.slice(BITMAP_PREFIX.length));
  if (!m) return undefined;
  return { drive: m[1], generation: Number(m[2]) };
}

export function isOwnName(name: string): boolean {
  return name.startsWith(BITMAP_PREFIX);
}

/** pve-cbt bitmaps of one drive among all bitmaps QEMU lists on its node. */
export function ownBitmapsOf<T extends { name: string }>(bitmaps: readonly T[], drive: string): T[] {
  return bitmaps.filter((b) => parseBitmapName(b.name)?.drive === drive);
}

/** Names of the scratch objects for one drive's point-in-time read. */
export interface FleeceNames {
  readonly node: string;
  readonly job: string;
  readonly exportName: string;
  readonly exportId: string;
  readonly scratchFile: string;
}

/** What every scratch file name of one VM starts with, so that recovery finds them all. */
export function scratchFilePrefix(vmid: number): string {
  return `${BITMAP_PREFIX}scratch-${vmid}-`;
}

export function fleeceNames(vmid: number, drive: string): FleeceNames {
  return {
    node: `${BITMAP_PREFIX}fl-${drive}`,
    job: `${BITMAP_PREFIX}job-${drive}`,
    exportName: `${BITMAP_PREFIX}${drive}`,
    exportId: `${BITMAP_PREFIX}exp-${drive}`,
    scratchFile: `${scratchFilePrefix(vmid)}${drive}.qcow2`,
  };
}
