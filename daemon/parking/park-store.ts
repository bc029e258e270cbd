/**
 * Where parked bitmaps live while their VM is stopped, under `<stateDir>/parked/<vmid>/`:
 *
 *   <disk>.qcow2          sidecar: an empty qcow2 of the disk's virtual size holding the bitmaps
 *   <disk>.json           record: image path, bitmaps (name, granularity, enabled) and the image's
 *                         identity right after the bitmaps left it (image-identity.ts)
 *   images.json           the VM's qcow2 images ({disk, path}), for the hooks when the daemon is down
 *   hook-dropped-<disk>.json  written by a hook that removed the bitmaps itself (daemon down)
 *
 * Records are written to a temporary file, fsync'd and renamed, so a crash leaves the old record
 * or the new one. The sidecar is written before its record; a sidecar without a record is garbage.
 * Everything here is private to root (0700 directories, 0600 files).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../../shared/fs/fsync-dir';
import type { ImageIdentity } from './image-identity';

export interface ParkedBitmap {
  readonly name: string;
  readonly granularity: number;
  readonly enabled: boolean;
}

export interface ParkedRecord {
  readonly version: 1;
  readonly vmid: number;
  readonly disk: string;
  readonly path: string;
  readonly parkedAt: string;
  readonly bitmaps: readonly ParkedBitmap[];
  readonly identity: ImageIdentity;
}

export interface VmImage {
  readonly disk: string;
  readonly path: string;
}

/** What a hook that removed bitmaps itself leaves for the daemon (hooks/park-fallback.ts writes it). */
export interface HookDropMarker {
  readonly disk: string;
  readonly path: string;
  readonly bitmaps: readonly string[];
  readonly time: string;
  readonly reason: string;
}

export function parkedDir(stateDir: string, vmid: number): string {
  return path.join(stateDir, 'parked', String(vmid));
}

export function sidecarPath(stateDir: string, vmid: number, disk: string): string {
  return path.join(parkedDir(stateDir, vmid), `${disk}.qcow2`);
}

function recordPath(stateDir: string, vmid: number, disk: string): string {
  return path.join(parkedDir(stateDir, vmid), `${disk}.json`);
}

export const IMAGE_LIST = 'images.json';
export const HOOK_DROP_PREFIX = 'hook-dropped-';

export function ensureParkedDir(stateDir: string, vmid: number): string {
  const dir = parkedDir(stateDir, vmid);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify(value, null, 1)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}

export function writeRecord(stateDir: string, r: ParkedRecord): void {
  ensureParkedDir(stateDir, r.vmid);
  writeJsonAtomic(recordPath(stateDir, r.vmid, r.disk), r);
}

/** Records of one VM; a record that cannot be parsed is reported through `bad` and removed. */
export function readRecords(stateDir: string, vmid: number, bad?: (disk: string, problem: string) => void): ParkedRecord[] {
  const dir = parkedDir(stateDir, vmid);
  const out: ParkedRecord[] = [];
  for (const n of parkedNames(dir)) {
    if (!n.endsWith('.json') || n === IMAGE_LIST || n.startsWith(HOOK_DROP_PREFIX)) continue;
    const disk = n.slice(0, -'.json'.length);
    try {
      const r = JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')) as ParkedRecord;
      if (r.version !== 1 || r.vmid !== vmid || r.disk !== disk || typeof r.path !== 'string' || !Array.isArray(r.bitmaps) || !r.identity) {
        throw new Error('fields missing or wrong');
      }
      out.push(r);
    } catch (err) {
      bad?.(disk, (err as Error).message);
      dropRecord(stateDir, vmid, disk);
    }
  }
  return out.sort((a, b) => a.disk.localeCompare(b.disk));
}

/** Removes a disk's record and sidecar (record first: a sidecar alone means nothing). */
export function dropRecord(stateDir: string, vmid: number, disk: string): void {
  fs.rmSync(recordPath(stateDir, vmid, disk), { force: true });
  fs.rmSync(sidecarPath(stateDir, vmid, disk), { force: true });
}

export function writeImageList(stateDir: string, vmid: number, images: readonly VmImage[]): void {
  ensureParkedDir(stateDir, vmid);
  writeJsonAtomic(path.join(parkedDir(stateDir, vmid), IMAGE_LIST), images);
}

/** Markers hooks left, each removed as it is read. */
export function takeHookDropMarkers(stateDir: string, vmid: number): HookDropMarker[] {
  const dir = parkedDir(stateDir, vmid);
  const out: HookDropMarker[] = [];
  for (const n of parkedNames(dir).filter((x) => x.startsWith(HOOK_DROP_PREFIX) && x.endsWith('.json'))) {
    const file = path.join(dir, n);
    try {
      out.push(JSON.parse(fs.readFileSync(file, 'utf8')) as HookDropMarker);
    } catch {
      out.push({ disk: n.slice(HOOK_DROP_PREFIX.length, -'.json'.length), path: '', bitmaps: [], time: '', reason: 'a hook removed the bitmaps (marker unreadable)' });
    }
    fs.rmSync(file, { force: true });
  }
  return out;
}

/** VMIDs that have anything parked. */
export function parkedVmids(stateDir: string): number[] {
  try {
    return fs
      .readdirSync(path.join(stateDir, 'parked'))
      .filter((n) => /^\d+$/.test(n))
      .map(Number);
  } catch {
    return [];
  }
}

/** The file names in a VM's parked folder; none when nothing was ever parked for it. */
function parkedNames(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
