/**
 * Live restores the previous daemon did not finish, resolved at the next start (startup-recovery.ts,
 * under the daemon lock, before interrupted jobs are settled). A live restore runs in the daemon,
 * which serves the backup over NBD; if the daemon dies (kill -9, OOM, a node losing it), its QEMU
 * runs on, daemonized, on qcow2 overlays over an export that no longer exists: every read of data
 * not yet moved fails in the guest. The restore's journal (live-restore-journal.ts,
 * `<stateDir>/live-restore/VMID.json`) says what it had done; per journal, under the VMID's flock:
 *
 * 1. What runs: the VMID's QEMU (pid file + /proc start time) is the restore's when the journal names
 *    it, or when its command line names the restore's work folder (killed before the journal got the
 *    pid). Then QMP tells whether every device is on its volume and no block node reads the export
 *    or an overlay (`on-volumes`) or not (`on-export`). No QEMU: `gone`; another QEMU: `foreign`
 *    (never touched).
 * 2. The decision (`recoveryAction`, pure, table-tested):
 *    - FINISH when the journal has the config to write (from phase `switch` on) and either the VM is
 *      `on-volumes` (job-complete had switched every disk: the volumes hold the backup plus the
 *      guest's writes, and the guest has been writing into them since) or the journal says `config`
 *      (the switch was proven and the export closed before the kill) and the VM is gone. The restore
 *      is then complete except its last step, and undoing it would throw away a running guest's
 *      writes. Finishing = what step 7 of live-restore.ts does: fsync the volumes, the firewall file
 *      and `VMID.conf` (the config made before the switch, so `--unique`'s MACs are the journal's),
 *      the replaced volumes of `--force` freed; the VM keeps running. The task is recorded `ok`
 *      with `recovered: true`.
 *    - UNDO otherwise (any phase before the switch, a switch that did not reach every disk, a VM that
 *      died before the switch was proven): the VM is stopped if it is the restore's (QMP `quit`, then
 *      SIGTERM, SIGKILL), every allocated volume freed (`pvesm free`; one whose file is already gone
 *      counts as freed, so an undo the kill interrupted is simply done again), a config the kill
 *      left written put back, no config written, the work folder (sockets, overlays) removed. The
 *      task is recorded failed with CBT_RESTORE_LIVE_INTERRUPTED, which `pve-cbt task list|show`
 *      shows, and the same is logged at error level.
 * 3. The journal is removed once resolved. It stays when the VM could not be stopped (its volumes
 *    stay too: it may write them) or the flock was not had: the next start tries again, and a new
 *    live restore of that VMID is refused meanwhile. A journal that cannot be read is logged and
 *    left for the admin.
 *
 * A volume allocated in the instant between `pvesm alloc` returning and the journal's write is not
 * known here and stays (its name is `vm-VMID-disk-N` on the storage). Work folders in the run folder
 * without a journal (from a restore that ran in a CLI process before live restores were daemon
 * tasks) are named in the log, not removed.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { errorJson } from '../../shared/errors/cbt-error';
import { fsyncFile } from '../../shared/fs/fsync-file';
import type { BackupCatalog } from '../catalog/backup-catalog';
import type { CbtConfig } from '../config/config-schema';
import { acquirePveLock } from '../pve/pve-lock';
import { readQemuProcess, type QemuProcess } from '../pve/qemu-process';
import { firewallFile } from '../pve/saved-vm-config';
import { RestoreLiveInterruptedError, type LivePhase } from './live-restore-errors';
import { journalFile, liveRestoreJournalDir, readJournals, removeJournal, type LiveJournal } from './live-restore-journal';
import { stopLiveVm } from './live-restore-launch';
import { LiveRestoreQmp } from './live-restore-qmp';
import { freeAll, putBackFirewall, readOrUndefined, reasonOf, writeFileAtomic } from './restore-vm';

export type VmFound = 'on-export' | 'on-volumes' | 'gone' | 'foreign';
export type RecoveryAction = 'finish' | 'undo';

/** FINISH only when the switch to the volumes is proven (see the header); UNDO otherwise. */
export function recoveryAction(phase: LivePhase, hasFinish: boolean, vm: VmFound): RecoveryAction {
  if (!hasFinish || (phase !== 'switch' && phase !== 'config')) return 'undo';
  if (vm === 'on-volumes') return 'finish';
  if (vm === 'gone' && phase === 'config') return 'finish';
  return 'undo';
}

export interface RecoveredLiveRestore {
  vmid: number;
  taskId: string | null;
  phase: LivePhase | null;
  vm: VmFound | null;
  /** finished: config written; undone: VM stopped, volumes freed; kept: left for the next start (see `problem`). */
  outcome: 'finished' | 'undone' | 'kept';
  vmStopped: boolean;
  freed: string[];
  leftover: { volid: string; reason: string }[];
  problem?: string;
}

export interface LiveRecoveryDeps {
  readonly config: Pick<CbtConfig, 'stateDir' | 'qemuServerRunDir' | 'qemuServerConfigDir' | 'qemuServerLockDir' | 'pvesmPath'>;
  readonly logger: Logger;
  readonly catalog: Pick<BackupCatalog, 'getJob' | 'recordJobEnd'>;
  /** How long to wait for the VMID's flock, and for the VM to stop per signal. Defaults 10 s each. */
  readonly lockTimeoutMs?: number;
  readonly stopGraceMs?: number;
}

function cmdlineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return '';
  }
}

function isOurs(j: LiveJournal, p: QemuProcess): boolean {
  if (j.qemu && j.qemu.pid === p.pid && j.qemu.startTime === p.startTime) return true;
  return j.workDir !== null && cmdlineOf(p.pid).includes(`${j.workDir}/`);
}

async function whatRuns(deps: LiveRecoveryDeps, j: LiveJournal): Promise<{ vm: VmFound; qemu?: QemuProcess }> {
  const qemu = readQemuProcess(deps.config.qemuServerRunDir, j.vmid);
  if (!qemu) return { vm: 'gone' };
  if (!isOurs(j, qemu)) return { vm: 'foreign', qemu };
  if (j.targets.length === 0 || j.workDir === null) return { vm: 'on-export', qemu };
  const qmp = new LiveRestoreQmp(path.join(deps.config.qemuServerRunDir, `${j.vmid}.qmp`), 'drive');
  try {
    const overlays = j.targets.map((t) => path.join(j.workDir!, `${t.disk}.qcow2`));
    const left = await qmp.exportLeft(overlays);
    const switched = left.nodes.length === 0 && j.targets.every((t) => left.disks.find((d) => d.drive === t.disk)?.file === t.path);
    if (!switched) return { vm: 'on-export', qemu };
    // Concluded jobs wait for their dismiss (auto-dismiss off); one that failed had not switched.
    const ids = j.targets.map((t) => `restore-drive-${t.disk}`);
    for (const job of (await qmp.jobs(ids)).values()) {
      if (job.error) return { vm: 'on-export', qemu };
      if (job.status === 'concluded') await qmp.dismiss(job.id);
      else return { vm: 'on-export', qemu };
    }
    return { vm: 'on-volumes', qemu };
  } catch (err) {
    deps.logger.warn('live restore recovery: the VM does not answer on QMP; taken as still on the export', { vmid: j.vmid, error: reasonOf(err) });
    return { vm: 'on-export', qemu };
  }
}

function removeWorkDir(j: LiveJournal): void {
  if (j.workDir) fs.rmSync(j.workDir, { recursive: true, force: true });
}

function recordTask(deps: LiveRecoveryDeps, j: LiveJournal, end: Parameters<BackupCatalog['recordJobEnd']>[1]): void {
  if (j.taskId === null || !deps.catalog.getJob(j.taskId)) return;
  deps.catalog.recordJobEnd(j.taskId, end);
}

async function finish(deps: LiveRecoveryDeps, j: LiveJournal, vm: VmFound): Promise<RecoveredLiveRestore> {
  const f = j.finish!;
  const base = { vmid: j.vmid, taskId: j.taskId, phase: j.phase, vm };
  for (const t of j.targets) if (path.isAbsolute(t.path) && fs.existsSync(t.path)) fsyncFile(t.path);
  const current = readOrUndefined(j.confPath);
  if (current !== f.conf) {
    if ((current ?? null) !== j.existing) {
      // Someone wrote VMID.conf since: the restore does not overwrite it (nor free what it may name).
      const problem = `${j.confPath} changed since the restore began; the restored VM runs on its volumes (${j.allocated.join(', ')}) without a config of its own: compare and fix by hand`;
      deps.logger.error('live restore recovery: not finished', { vmid: j.vmid, taskId: j.taskId, problem });
      return { ...base, outcome: 'kept', vmStopped: false, freed: [], leftover: [], problem };
    }
    if (f.firewall !== null) {
      const fw = firewallFile(deps.config.qemuServerConfigDir, j.vmid);
      fs.mkdirSync(path.dirname(fw), { recursive: true });
      writeFileAtomic(fw, f.firewall);
    }
    writeFileAtomic(j.confPath, f.conf);
  }
  const { freed, leftover } = await freeAll({ node: deps.config, logger: deps.logger }, f.replaced);
  removeWorkDir(j);
  recordTask(deps, j, {
    status: 'ok',
    result: { backup: j.backupId, vmid: j.vmid, conf: j.confPath, disks: j.targets, dropped: f.dropped, freed, leftover, live: { state: 'complete', recovered: true, vm } },
  });
  deps.logger.warn('live restore recovery: the previous daemon stopped after the switch to the volumes; the restore was finished (config written)', {
    vmid: j.vmid,
    taskId: j.taskId,
    backupId: j.backupId,
    vm,
    conf: j.confPath,
    disks: j.targets.map((t) => t.volid),
  });
  return { ...base, outcome: 'finished', vmStopped: false, freed, leftover };
}

async function undo(deps: LiveRecoveryDeps, j: LiveJournal, vm: VmFound, qemu: QemuProcess | undefined): Promise<RecoveredLiveRestore> {
  const runDir = deps.config.qemuServerRunDir;
  let vmStopped = true;
  if (vm === 'on-export' || vm === 'on-volumes') {
    vmStopped = await stopLiveVm(runDir, j.vmid, path.join(runDir, `${j.vmid}.qmp`), deps.stopGraceMs ?? 10_000).catch(() => false);
  }
  // A config the kill left written (phase `config`) names volumes about to be freed: put back the old one.
  if (j.finish && readOrUndefined(j.confPath) === j.finish.conf) {
    if (j.existing === null) fs.rmSync(j.confPath, { force: true });
    else writeFileAtomic(j.confPath, j.existing);
    if (j.finish.firewall !== null) putBackFirewall({ node: deps.config, logger: deps.logger }, j.vmid, j.finish.firewallBefore, 'live restore recovery');
  }
  let freed: string[] = [];
  let leftover: { volid: string; reason: string }[];
  if (vmStopped) {
    const r = await freeAll({ node: deps.config, logger: deps.logger }, j.allocated);
    freed = r.freed;
    leftover = [];
    for (const l of r.leftover) {
      const file = j.targets.find((t) => t.volid === l.volid)?.path;
      // Freed by the undo the kill interrupted.
      if (file !== undefined && path.isAbsolute(file) && !fs.existsSync(file)) freed.push(l.volid);
      else leftover.push(l);
    }
    removeWorkDir(j);
  } else {
    leftover = j.allocated.map((volid) => ({ volid, reason: `VM ${j.vmid} (pid ${qemu?.pid}) could not be stopped` }));
  }
  const reason =
    vm === 'on-volumes'
      ? 'the process serving the export died before the switch was recorded'
      : 'the process serving the export (pve-cbt daemon) died; the VM ran on overlays over an export that no longer exists';
  const err = RestoreLiveInterruptedError({ backupId: j.backupId, vmid: j.vmid, taskId: j.taskId, phase: j.phase, vm, vmStopped, vmPid: vmStopped ? null : (qemu?.pid ?? null), freed, leftover, reason });
  const { code, message } = errorJson(err);
  recordTask(deps, j, { status: 'failed', error: { code, message } });
  deps.logger.error(`live restore recovery: ${message}`, { code, vmid: j.vmid, taskId: j.taskId, backupId: j.backupId, phase: j.phase, vm, vmStopped, freed, leftover });
  return { vmid: j.vmid, taskId: j.taskId, phase: j.phase, vm, outcome: vmStopped ? 'undone' : 'kept', vmStopped, freed, leftover, ...(vmStopped ? {} : { problem: message }) };
}

async function resolve(deps: LiveRecoveryDeps, dir: string, j: LiveJournal): Promise<RecoveredLiveRestore> {
  const { vm, qemu } = await whatRuns(deps, j);
  const action = recoveryAction(j.phase, j.finish !== null, vm);
  const r = action === 'finish' ? await finish(deps, j, vm) : await undo(deps, j, vm, qemu);
  if (r.outcome !== 'kept') removeJournal(dir, j.vmid);
  return r;
}

export async function recoverLiveRestores(deps: LiveRecoveryDeps): Promise<RecoveredLiveRestore[]> {
  const dir = liveRestoreJournalDir(deps.config.stateDir);
  const out: RecoveredLiveRestore[] = [];
  const known = new Set<string>();
  for (const entry of readJournals(dir)) {
    const none = { vmid: entry.vmid, taskId: null, phase: null, vm: null, outcome: 'kept' as const, vmStopped: false, freed: [], leftover: [] };
    if ('problem' in entry) {
      deps.logger.error('live restore recovery: a journal cannot be read; left as it is', { file: entry.file, problem: entry.problem });
      out.push({ ...none, problem: `${entry.file}: ${entry.problem}` });
      continue;
    }
    const j = entry.journal;
    if (j.workDir) known.add(path.basename(j.workDir));
    let lock;
    try {
      lock = await acquirePveLock(deps.config.qemuServerLockDir, j.vmid, deps.lockTimeoutMs);
    } catch (err) {
      deps.logger.error('live restore recovery: the VMID is locked; the next start tries again', { vmid: j.vmid, file: journalFile(dir, j.vmid), error: reasonOf(err) });
      out.push({ ...none, taskId: j.taskId, phase: j.phase, problem: reasonOf(err) });
      continue;
    }
    try {
      out.push(await resolve(deps, dir, j));
    } catch (err) {
      deps.logger.error('live restore recovery failed; the next start tries again', { vmid: j.vmid, taskId: j.taskId, error: reasonOf(err) });
      out.push({ ...none, taskId: j.taskId, phase: j.phase, problem: reasonOf(err) });
    } finally {
      await lock.release();
    }
  }
  let orphans: string[] = [];
  try {
    orphans = fs.readdirSync(deps.config.qemuServerRunDir).filter((n) => /^\d+\.live-restore-/.test(n) && !known.has(n));
  } catch {
    // no run folder: nothing ran
  }
  if (orphans.length) deps.logger.warn('live restore work folders without a journal (not removed)', { runDir: deps.config.qemuServerRunDir, folders: orphans });
  return out;
}
