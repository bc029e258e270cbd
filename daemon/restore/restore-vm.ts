/**
 * Whole-VM restore, as `qmrestore` does it, and the replacement of one disk of a stopped VM:
 *
 *   1. refusals first, before anything exists: a backup without a kept config, a running target VM
 *      (never, not even with --force), an existing VMID without --force, an unknown --disk;
 *   2. per disk, in the backup's order: `pvesm alloc STORAGE VMID vm-VMID-disk-N.FMT SIZE` (the
 *      lowest N free in the old config and on the storage: a taken name is retried with the next),
 *      then the disk restore of daemon/repository/restore.ts onto the volume's path, behind the
 *      restore target guard (a volume some process holds, or of a running VM, is never written);
 *   3. the VM is checked again (not started, VMID still free), the firewall file is written, and
 *      `VMID.conf` LAST, atomically (temporary file + rename, as pmxcfs writers do): a VM whose
 *      config exists is complete;
 *   4. only then are the volumes of the config it replaced freed (whole VM with --force; a single
 *      disk's old volume stays as `unusedN`).
 * Any failure in 2–3 frees every volume this restore allocated (and puts back the firewall file)
 * and is CBT_RESTORE_VM_FAILED naming the cause, what was freed and what could not be.
 * The config text comes from restored-config.ts (pure rules); this file does the I/O.
 *
 * Not done here, unlike qmrestore: no `lock:` and no flock on the VMID while it runs. A second
 * restore or `qm create` of the same VMID meanwhile is caught by the re-check in phase 3 (the
 * config must still be what phase 1 saw), except in the moment between that check and the rename.
 * Volume names carry the format's extension (`vm-ID-disk-N.FMT`), as file storages name them.
 * Live restore (live-restore.ts) reuses the refusals, the allocation and the freeing from here.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { isCbtError } from '../../shared/errors/cbt-error';
import { pvesmPath } from '../pve/pvesm';
import { PvesmCommandFailedError } from '../pve/pve-errors';
import { pvesmAlloc, pvesmFree } from '../pve/pvesm-volumes';
import { readQemuProcess } from '../pve/qemu-process';
import { firewallFile } from '../pve/saved-vm-config';
import { parseVmConfig } from '../pve/vm-config';
import { vmConfigFile } from '../pve/vm-disks';
import type { Manifest } from '../repository/manifest';
import type { RestoreOptions, RestoreTarget } from '../repository/restore';
import { nextDiskName, ownedVolumes, replaceDisk, restoredConfig, usedDiskIndices, type DroppedLine, type RandomBytes } from './restored-config';
import { restoreTargetGuard } from './restore-target-guard';
import type { NodePaths } from './target-facts';
import {
  RestoreVmAllocFailedError,
  RestoreVmDiskUnknownError,
  RestoreVmExistsError,
  RestoreVmFailedError,
  RestoreVmMissingError,
  RestoreVmNoConfigError,
  RestoreVmRunningError,
} from './restore-vm-errors';

export interface RestoreVmRequest {
  readonly backupId: string;
  readonly vmid: number;
  readonly storage: string;
  /** Default: the disk's format at backup time (qcow2 stays qcow2, anything else becomes raw). */
  readonly format?: 'raw' | 'qcow2';
  readonly force: boolean;
  readonly unique: boolean;
  /** Replace only this disk of the existing VM `vmid`. */
  readonly disk?: string;
}

export interface RestoreVmRepository {
  readManifest(backupId: string): Promise<Manifest>;
  restoreDisk(backupId: string, disk: string, target: RestoreTarget, opts?: RestoreOptions): Promise<{ bytes: number }>;
}

export interface RestoreVmDeps {
  readonly repo: RestoreVmRepository;
  readonly node: NodePaths;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
  /** Called once per disk before it is written; `update(done, total)` follows, `finish()` at the end. */
  readonly progress?: (disk: string, size: number) => { update(done: number, total?: number): void; finish(): void };
  readonly random?: RandomBytes;
  readonly pvesmTimeoutMs?: number;
}

export interface RestoredDisk {
  readonly disk: string;
  readonly volid: string;
  readonly format: 'raw' | 'qcow2';
  readonly size: number;
}

export interface RestoreVmResult {
  readonly backup: string;
  readonly vmid: number;
  readonly conf: string;
  readonly disks: RestoredDisk[];
  /** Config lines of the backup not carried over (disks it lacks, unused volumes, snapshot parent). */
  readonly dropped: DroppedLine[];
  /** Volumes of the replaced config freed after the new config was written. */
  readonly freed: string[];
  /** Volumes that could not be freed (need `pvesm free` by hand). */
  readonly leftover: { volid: string; reason: string }[];
  /** Single-disk restore: the old volume, now `unusedN` of the VM. */
  readonly keptAsUnused?: { key: string; volid: string };
}

/** What allocating and freeing volumes needs. */
export type PvesmDeps = Pick<RestoreVmDeps, 'node' | 'pvesmTimeoutMs' | 'logger'>;

const MAX_NAME_TRIES = 64;

export function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Writes `file` through a temporary name beside it (fsynced), then renames it into place. */
export function writeFileAtomic(file: string, text: string): void {
  const tmp = `${file}.tmp.${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o640);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * After a failed restore: `VMID.fw` as it was before (`before`: its text, null for none, undefined
 * when the restore never touched it). A failure is logged, not thrown: the restore's own error wins.
 */
export function putBackFirewall(deps: Pick<RestoreVmDeps, 'node' | 'logger'>, vmid: number, before: string | null | undefined, what: string): void {
  if (before === undefined) return;
  const fwPath = firewallFile(deps.node.qemuServerConfigDir, vmid);
  try {
    if (before === null) fs.rmSync(fwPath, { force: true });
    else writeFileAtomic(fwPath, before);
  } catch (e) {
    deps.logger?.error(`${what}: putting back the firewall file failed`, { vmid, file: fwPath, error: reasonOf(e) });
  }
}

export function readOrUndefined(file: string): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

export function checkNotRunning(node: NodePaths, vmid: number): void {
  const qemu = readQemuProcess(node.qemuServerRunDir, vmid);
  if (qemu) throw RestoreVmRunningError({ vmid, pid: qemu.pid, hint: `stop VM ${vmid} first, or restore to another VMID` });
}

/** What phase 1 found: the kept config, the target's config (if any) and the disks to restore. */
export interface RestorePlan {
  readonly manifest: Manifest;
  readonly saved: NonNullable<Manifest['config']>;
  readonly confPath: string;
  readonly existing: string | undefined;
  readonly entries: Manifest['disks'];
}

/** What this restore created so far, for the undo. */
interface Undo {
  readonly allocated: string[];
  /** The firewall file as it was before this restore wrote it (null: there was none). */
  firewallBefore?: string | null;
  /** The disk being worked on, for the error. */
  disk: string | null;
}

export async function restoreVm(req: RestoreVmRequest, deps: RestoreVmDeps): Promise<RestoreVmResult> {
  const plan = await refuseOrPlan(req, deps);
  const undo: Undo = { allocated: [], disk: null };
  try {
    const disks = await writeDisks(req, deps, plan, undo);
    const written = commitConfig(req, deps, plan, disks, undo);
    // The new config is in place: the volumes of the one it replaced are garbage now.
    const replaced = req.disk === undefined && plan.existing !== undefined ? ownedVolumes(req.vmid, plan.existing).filter((v) => !undo.allocated.includes(v)) : [];
    const { freed, leftover } = await freeAll(deps, replaced);
    return { backup: req.backupId, vmid: req.vmid, conf: plan.confPath, disks, ...written, freed, leftover };
  } catch (err) {
    throw await undoRestore(req, deps, undo, err);
  }
}

/** Phase 1: every refusal before anything exists. */
export async function refuseOrPlan(req: RestoreVmRequest, deps: Pick<RestoreVmDeps, 'node'> & { repo: Pick<RestoreVmRepository, 'readManifest'> }): Promise<RestorePlan> {
  const { vmid, backupId } = req;
  const manifest = await deps.repo.readManifest(backupId);
  const saved = manifest.config;
  if (!saved) throw RestoreVmNoConfigError({ backupId, file: 'conf', hint: "restore its disks one by one with 'restore --disk DISK --to PATH'" });
  const confPath = vmConfigFile(deps.node.qemuServerConfigDir, vmid);
  checkNotRunning(deps.node, vmid);
  const existing = readOrUndefined(confPath);
  if (req.disk !== undefined && existing === undefined) {
    throw RestoreVmMissingError({ vmid, conf: confPath, hint: 'leave out --disk to restore the whole VM' });
  }
  if (existing !== undefined && !req.force) {
    throw RestoreVmExistsError({ vmid, conf: confPath, hint: req.disk ? `pass --force to replace ${req.disk} of VM ${vmid}` : 'pass --force to replace it, or choose a free VMID' });
  }
  const entries = req.disk === undefined ? manifest.disks : manifest.disks.filter((d) => d.name === req.disk);
  if (req.disk !== undefined && entries.length === 0) {
    throw RestoreVmDiskUnknownError({ backupId, vmid, disk: req.disk, where: 'backup', hint: `the backup has ${manifest.disks.map((d) => d.name).join(', ')}` });
  }
  return { manifest, saved, confPath, existing, entries };
}

/** Phase 2: allocate and write each disk, in the backup's order. */
async function writeDisks(req: RestoreVmRequest, deps: RestoreVmDeps, plan: RestorePlan, undo: Undo): Promise<RestoredDisk[]> {
  const used = usedDiskIndices(req.vmid, plan.existing ?? '');
  const disks: RestoredDisk[] = [];
  for (const entry of plan.entries) {
    deps.signal?.throwIfAborted();
    undo.disk = entry.name;
    const format = req.format ?? (entry.format === 'qcow2' ? 'qcow2' : 'raw');
    const volid = await allocate(req, deps, entry.name, entry.size, format, used);
    undo.allocated.push(volid);
    const target = await pvesmPath(deps.node.pvesmPath, volid, { vmid: req.vmid, timeoutMs: deps.pvesmTimeoutMs });
    // The volume is ours and exists (force), but one some process holds or a running VM's never is.
    const guard = restoreTargetGuard(target, deps.node, { force: true });
    await guard();
    const bar = deps.progress?.(entry.name, entry.size);
    try {
      await deps.repo.restoreDisk(req.backupId, entry.name, { path: target, format, overwrite: true }, { onProgress: (d, t) => bar?.update(d, t), beforeCommit: guard });
    } finally {
      bar?.finish();
    }
    disks.push({ disk: entry.name, volid, format, size: entry.size });
    deps.logger?.info('restore: disk written', { backupId: req.backupId, vmid: req.vmid, disk: entry.name, volid });
  }
  undo.disk = null;
  return disks;
}

/** Phase 3: check the VM again, then the firewall file and the config, last. */
function commitConfig(req: RestoreVmRequest, deps: RestoreVmDeps, plan: RestorePlan, disks: RestoredDisk[], undo: Undo): Pick<RestoreVmResult, 'dropped' | 'keptAsUnused'> {
  const { vmid } = req;
  deps.signal?.throwIfAborted();
  checkNotRunning(deps.node, vmid);
  if (readOrUndefined(plan.confPath) !== plan.existing) {
    // Someone created (or changed) the VM meanwhile: its config is not ours to replace.
    throw RestoreVmExistsError({ vmid, conf: plan.confPath, hint: 'the config appeared or changed during the restore; nothing of it was touched' });
  }
  const volumes = new Map(disks.map((d) => [d.disk, { volid: d.volid, sizeBytes: d.size }]));
  let text: string;
  let result: Pick<RestoreVmResult, 'dropped' | 'keptAsUnused'>;
  if (req.disk !== undefined) {
    const backupValue = parseVmConfig(plan.manifest.vmid, plan.saved.conf).entries[req.disk];
    const r = replaceDisk({ existingConf: plan.existing as string, vmid, key: req.disk, backupValue, volume: volumes.get(req.disk)! });
    text = r.text;
    result = { dropped: [], ...(r.unusedKey && r.oldVolid ? { keptAsUnused: { key: r.unusedKey, volid: r.oldVolid } } : {}) };
  } else {
    const random = deps.random ?? ((n: number) => crypto.randomBytes(n));
    const r = restoredConfig({ savedConf: plan.saved.conf, volumes, unique: req.unique, random });
    text = r.text;
    result = { dropped: r.dropped };
    if (plan.saved.firewall !== null) {
      const fwPath = firewallFile(deps.node.qemuServerConfigDir, vmid);
      undo.firewallBefore = readOrUndefined(fwPath) ?? null;
      fs.mkdirSync(path.dirname(fwPath), { recursive: true });
      writeFileAtomic(fwPath, plan.saved.firewall);
    }
  }
  writeFileAtomic(plan.confPath, text);
  deps.logger?.info('restore: config written', { backupId: req.backupId, vmid, conf: plan.confPath, disks: disks.map((d) => d.volid) });
  return result;
}

/** After a failure: the firewall file put back, every allocated volume freed; the error to throw. */
async function undoRestore(req: RestoreVmRequest, deps: RestoreVmDeps, undo: Undo, err: unknown): Promise<unknown> {
  const { vmid, backupId } = req;
  putBackFirewall(deps, vmid, undo.firewallBefore, 'restore');
  if (undo.allocated.length === 0) return err; // nothing exists that needs undoing
  const { freed, leftover } = await freeAll(deps, undo.allocated);
  deps.logger?.error('restore failed; allocated volumes freed', { backupId, vmid, disk: undo.disk, error: reasonOf(err), freed, leftover });
  return RestoreVmFailedError({ backupId, vmid, disk: undo.disk, reason: reasonOf(err), causeCode: isCbtError(err) ? err.code : null, freed, leftover }, err);
}

/** `pvesm alloc` with the lowest free disk name; a name the storage already has is skipped. */
export async function allocate(req: Pick<RestoreVmRequest, 'vmid' | 'storage'>, deps: PvesmDeps, disk: string, size: number, format: 'raw' | 'qcow2', used: Set<number>): Promise<string> {
  for (let tries = 0; ; tries++) {
    const { name, index } = nextDiskName(req.vmid, format, used);
    used.add(index);
    try {
      return await pvesmAlloc(deps.node.pvesmPath, { storage: req.storage, vmid: req.vmid, name, sizeBytes: size, format }, { timeoutMs: deps.pvesmTimeoutMs });
    } catch (err) {
      if (PvesmCommandFailedError.is(err) && err.details.exists === true && tries < MAX_NAME_TRIES) continue;
      throw RestoreVmAllocFailedError({ storage: req.storage, vmid: req.vmid, disk, name, reason: reasonOf(err) }, err);
    }
  }
}

export async function freeAll(deps: PvesmDeps, volids: readonly string[]): Promise<{ freed: string[]; leftover: { volid: string; reason: string }[] }> {
  const freed: string[] = [];
  const leftover: { volid: string; reason: string }[] = [];
  for (const volid of volids) {
    try {
      await pvesmFree(deps.node.pvesmPath, volid, { timeoutMs: deps.pvesmTimeoutMs });
      freed.push(volid);
    } catch (err) {
      leftover.push({ volid, reason: reasonOf(err) });
      deps.logger?.error('restore: freeing a volume failed', { volid, error: reasonOf(err) });
    }
  }
  return { freed, leftover };
}
