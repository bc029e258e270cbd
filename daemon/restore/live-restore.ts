/**
 * Live restore: `pve-cbt restore BACKUP --vmid ID --storage STORAGE --live`, as qemu-server's
 * `pbs_live_restore` does it for PBS backups, on upstream QEMU and pve-cbt's own NBD server:
 *
 *   1. refusals as for a whole-VM restore (restore-vm.ts: no kept config, a running target VM,
 *      an existing VMID without --force), then Proxmox's per-VM flock on the VMID (pve-lock.ts),
 *      held until the end, and the refusals checked again under it;
 *   2. `allocate`: every disk's volume with `pvesm alloc` (names and formats as the whole-VM restore);
 *   3. `serve`: every disk of the backup exported read-only over NBD (daemon/nbd/nbd-server.ts) on a
 *      unix socket in RUN/VMID.live-restore-XXXXXX/, and a qcow2 overlay per disk there whose backing
 *      is that export (`qemu-img create -f qcow2 -F raw -b nbd+unix:///KEY?socket=…`);
 *   4. `start`: the VM with qemu-server's command line (live-restore-launch.ts), each disk on its
 *      overlay; the guest runs once `query-status` says so (event `running`, its time since step 1);
 *   5. `mirror`: per disk a mirror job `restore-drive-KEY`, sync full, from the overlay into the
 *      volume (live-restore-qmp.ts), at `speed` bytes/s per job if given; the guest keeps running,
 *      its writes go to the overlay and the mirror carries them along;
 *   6. `switch`: once every job is ready, `job-complete`: QEMU puts each device on its volume and
 *      drops the overlay and the NBD node; checked (no block node left on the export, every device
 *      on its volume), then the NBD servers stop and the overlays are deleted;
 *   7. `config`: each volume fsynced, then the firewall file and `VMID.conf` LAST, atomically, with
 *      the new volids (the kept config, restored-config.ts); with --force the replaced config's
 *      volumes are freed after it.
 *
 * Any failure from step 2 on: the VM is stopped (QMP quit, SIGTERM, SIGKILL), the servers stop, the
 * overlays go, every allocated volume is freed, no config is written; CBT_RESTORE_LIVE_FAILED says in
 * which phase, whether the VM was stopped, and what was freed. A VM that cannot be stopped keeps its
 * volumes (it may be writing them) and the error names its pid. SIGINT/SIGTERM (`signal`) is such a
 * failure. The VM runs without a config until step 7 (the brief's "config last"; Proxmox writes the
 * config first and marks it `lock: create`): `qm` does not know it meanwhile, and the flock keeps
 * `qm start`/`qm destroy` of the VMID waiting. No hookscript runs (the config naming it comes last).
 */
import crypto from 'node:crypto';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'winston';
import { isCbtError } from '../../shared/errors/cbt-error';
import { fsyncFile } from '../../shared/fs/fsync-file';
import { NbdExportServer } from '../nbd/nbd-server';
import { programPath } from '../proc/external-programs';
import { acquirePveLock } from '../pve/pve-lock';
import { pvesmPath } from '../pve/pvesm';
import { readQemuProcess } from '../pve/qemu-process';
import { firewallFile } from '../pve/saved-vm-config';
import { parseVmConfig } from '../pve/vm-config';
import { ServeDiskSource } from '../repository/serve-source';
import type { Manifest } from '../repository/manifest';
import { RestoreLiveFailedError, RestoreLiveJobFailedError, RestoreLiveStartFailedError, type LivePhase } from './live-restore-errors';
import { daemonizedLauncher, layoutOfMachine, liveQemuArgs, stopLiveVm, type LiveLaunch, type QemuLauncher } from './live-restore-launch';
import { jobIdOf, LiveRestoreQmp, type JobState, type MoveTarget } from './live-restore-qmp';
import { ownedVolumes, restoredConfig, usedDiskIndices, type RandomBytes } from './restored-config';
import { allocate, checkNotRunning, freeAll, putBackFirewall, readOrUndefined, reasonOf, refuseOrPlan, writeFileAtomic, type RestorePlan, type RestoreVmResult } from './restore-vm';
import { RestoreVmExistsError } from './restore-vm-errors';
import { journalFile, removeJournal, writeJournal, type LiveJournal } from './live-restore-journal';
import { killPoint } from '../service/test-kill-point';
import { restoreTargetGuard } from './restore-target-guard';
import type { NodePaths } from './target-facts';

const execFileP = promisify(execFile);

export interface LiveRestoreRequest {
  readonly backupId: string;
  readonly vmid: number;
  readonly storage: string;
  readonly format?: 'raw' | 'qcow2';
  readonly force: boolean;
  readonly unique: boolean;
  /** Bytes per second per mirror job (`--bwlimit`, given in KiB/s); 0 or absent: unlimited. */
  readonly speed?: number;
}

export type LiveRestoreEvent =
  | { type: 'allocated'; disk: string; volid: string }
  | { type: 'serving'; disk: string; uri: string; overlay: string }
  | { type: 'running'; pid: number; ms: number; qmp: string }
  | { type: 'moving'; disk: string; job: string; size: number }
  | { type: 'progress'; disk: string; done: number; total: number }
  | { type: 'switched'; disk: string; volid: string }
  | { type: 'export-closed' }
  | { type: 'config'; conf: string }
  | { type: 'failed'; phase: LivePhase; reason: string }
  | { type: 'stopped'; stopped: boolean };

export interface LiveRestoreDeps {
  readonly repo: { readManifest(backupId: string): Promise<Manifest> };
  /** The repository's folder, for the NBD servers' readers. */
  readonly repositoryDir: string;
  readonly node: NodePaths & { readonly qemuServerLockDir: string };
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
  readonly random?: RandomBytes;
  readonly pvesmTimeoutMs?: number;
  /** Default: qemu-system-x86_64 from PATH, daemonized. */
  readonly launcher?: QemuLauncher;
  readonly onEvent?: (e: LiveRestoreEvent) => void;
  /** How often the jobs are polled (qemu-server: once a second). Default 100 ms. */
  readonly pollMs?: number;
  /** How long a mirror may take to become ready, and the VM to run. Default: no limit / 60 s. */
  readonly startTimeoutMs?: number;
  /**
   * Where the restore keeps its journal (live-restore-journal.ts) for the next daemon start to
   * resolve it if this process dies; the daemon passes `<stateDir>/live-restore`. Without it no
   * journal is kept (tests that drive the function in their own process).
   */
  readonly journalDir?: string;
  /** The daemon task this restore runs as, recorded in the journal. */
  readonly taskId?: string;
}

export interface LiveRestoreResult extends RestoreVmResult {
  readonly live: {
    readonly state: 'complete';
    readonly layout: 'drive' | 'blockdev';
    readonly pid: number;
    /** From the start of the restore until the guest ran on the export. */
    readonly guestRunningMs: number;
    readonly totalMs: number;
    readonly timeline: { event: string; disk?: string; atMs: number }[];
  };
}

/** What exists so far, for the undo. */
interface LiveState {
  phase: LivePhase;
  disk: string | null;
  readonly allocated: string[];
  readonly servers: NbdExportServer[];
  readonly readers: ServeDiskSource[];
  readonly overlays: string[];
  workDir?: string;
  vmStarted: boolean;
  firewallBefore?: string | null;
  /** The journal, when deps.journalDir is given; `save()` writes it after each change. */
  journal?: LiveJournal;
  save(): void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function liveRestore(req: LiveRestoreRequest, deps: LiveRestoreDeps): Promise<LiveRestoreResult> {
  const t0 = Date.now();
  const timeline: { event: string; disk?: string; atMs: number }[] = [];
  const emit = (e: LiveRestoreEvent): void => {
    if (e.type !== 'progress') timeline.push({ event: e.type, ...('disk' in e ? { disk: e.disk } : {}), atMs: Date.now() - t0 });
    deps.onEvent?.(e);
  };
  const base = { backupId: req.backupId, vmid: req.vmid, storage: req.storage, format: req.format, force: req.force, unique: req.unique };
  const plan = await refuseOrPlan(base, deps);
  const lock = await acquirePveLock(deps.node.qemuServerLockDir, req.vmid);
  try {
    // Under the lock, as qemu-server checks: nobody started or created the VM while we waited.
    checkNotRunning(deps.node, req.vmid);
    if (readOrUndefined(plan.confPath) !== plan.existing) {
      throw RestoreVmExistsError({ vmid: req.vmid, conf: plan.confPath, hint: 'the config appeared or changed before the restore began; nothing was touched' });
    }
    const journalDir = deps.journalDir;
    if (journalDir !== undefined && fs.existsSync(journalFile(journalDir, req.vmid))) {
      throw RestoreVmExistsError({ vmid: req.vmid, conf: journalFile(journalDir, req.vmid), hint: 'an unfinished live restore of this VMID is recorded there: the next daemon start resolves it (pve-cbt log tells what it did)' });
    }
    const state: LiveState = { phase: 'allocate', disk: null, allocated: [], servers: [], readers: [], overlays: [], vmStarted: false, save: () => undefined };
    if (journalDir !== undefined) {
      const journal: LiveJournal = {
        version: 1,
        taskId: deps.taskId ?? null,
        backupId: req.backupId,
        vmid: req.vmid,
        storage: req.storage,
        startedAt: new Date(t0).toISOString(),
        phase: 'allocate',
        workDir: null,
        allocated: [],
        targets: [],
        qemu: null,
        confPath: plan.confPath,
        existing: plan.existing ?? null,
        finish: null,
      };
      state.journal = journal;
      state.save = () => {
        journal.phase = state.phase;
        journal.allocated = [...state.allocated];
        journal.workDir = state.workDir ?? null;
        writeJournal(journalDir, journal);
      };
      state.save();
    }
    try {
      const r = await run(req, deps, plan, state, emit, t0);
      return { ...r, live: { ...r.live, totalMs: Date.now() - t0, timeline } };
    } catch (err) {
      throw await undo(req, deps, state, err, emit);
    }
  } finally {
    await lock.release();
  }
}

async function run(
  req: LiveRestoreRequest,
  deps: LiveRestoreDeps,
  plan: RestorePlan,
  state: LiveState,
  emit: (e: LiveRestoreEvent) => void,
  t0: number,
): Promise<LiveRestoreResult> {
  const { vmid } = req;
  const runDir = deps.node.qemuServerRunDir;
  const saved = parseVmConfig(plan.manifest.vmid, plan.saved.conf);
  const layout = layoutOfMachine(saved.entries.machine);

  // 2. The volumes.
  const used = usedDiskIndices(vmid, plan.existing ?? '');
  const targets: (MoveTarget & { size: number })[] = [];
  for (const entry of plan.entries) {
    deps.signal?.throwIfAborted();
    state.disk = entry.name;
    const format = req.format ?? (entry.format === 'qcow2' ? 'qcow2' : 'raw');
    const volid = await allocate(req, deps, entry.name, entry.size, format, used);
    state.allocated.push(volid);
    state.save();
    const file = await pvesmPath(deps.node.pvesmPath, volid, { vmid, timeoutMs: deps.pvesmTimeoutMs });
    await restoreTargetGuard(file, deps.node, { force: true })();
    targets.push({ disk: entry.name, volid, path: file, format, size: entry.size });
    state.journal?.targets.push({ disk: entry.name, volid, path: file, format, size: entry.size });
    emit({ type: 'allocated', disk: entry.name, volid });
  }

  // 3. The exports and the overlays over them.
  state.phase = 'serve';
  fs.mkdirSync(runDir, { recursive: true });
  state.workDir = fs.mkdtempSync(path.join(runDir, `${vmid}.live-restore-`));
  state.save();
  for (const t of targets) {
    deps.signal?.throwIfAborted();
    state.disk = t.disk;
    const reader = await ServeDiskSource.open(deps.repositoryDir, req.backupId, t.disk);
    state.readers.push(reader);
    const server = new NbdExportServer({
      exportName: t.disk,
      source: reader,
      onError: (err) => deps.logger?.warn('live restore: NBD connection failed', { vmid, disk: t.disk, error: reasonOf(err) }),
    });
    state.servers.push(server);
    const socket = path.join(state.workDir, `${t.disk}.nbd`);
    await server.listen({ path: socket });
    const uri = `nbd+unix:///${t.disk}?socket=${socket}`;
    const overlay = path.join(state.workDir, `${t.disk}.qcow2`);
    state.overlays.push(overlay);
    await execFileP(programPath('qemu-img'), ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', uri, overlay, String(t.size)]);
    emit({ type: 'serving', disk: t.disk, uri, overlay });
  }

  // 4. The VM, on the overlays.
  state.phase = 'start';
  state.disk = null;
  state.save();
  const launch: LiveLaunch = {
    vmid,
    name: saved.entries.name ?? `vm${vmid}`,
    layout,
    qmpPath: path.join(runDir, `${vmid}.qmp`),
    pidPath: path.join(runDir, `${vmid}.pid`),
    // Not the new volid: in the blockdev layout the volume's node names are hashed from it, and
    // the volume's nodes come in beside the overlay's during the mirror.
    disks: targets.map((t, i) => ({ key: t.disk, format: 'qcow2', path: state.overlays[i], volid: `live-restore:${vmid}/${t.disk}` })),
  };
  const qmp = new LiveRestoreQmp(launch.qmpPath, layout);
  deps.signal?.throwIfAborted();
  state.vmStarted = true;
  try {
    await (deps.launcher ?? daemonizedLauncher)(liveQemuArgs(launch), launch);
    await qmp.waitRunning(deps.startTimeoutMs ?? 60_000);
  } catch (err) {
    throw RestoreLiveStartFailedError({ vmid, reason: reasonOf(err) }, err);
  }
  const qemuProcess = readQemuProcess(runDir, vmid);
  if (qemuProcess === undefined) throw RestoreLiveStartFailedError({ vmid, reason: `no live QEMU behind ${launch.pidPath}` });
  const { pid } = qemuProcess;
  if (state.journal) state.journal.qemu = { pid, startTime: qemuProcess.startTime };
  const guestRunningMs = Date.now() - t0;
  emit({ type: 'running', pid, ms: guestRunningMs, qmp: launch.qmpPath });
  deps.logger?.info('live restore: VM runs on the backup', { backupId: req.backupId, vmid, pid, ms: guestRunningMs });

  // 5. The data into the volumes, while the guest runs.
  state.phase = 'mirror';
  state.save();
  const jobs = new Map(targets.map((t) => [jobIdOf(t.disk), t]));
  for (const t of targets) {
    state.disk = t.disk;
    await qmp.startMove(t, req.speed ?? 0);
    emit({ type: 'moving', disk: t.disk, job: jobIdOf(t.disk), size: t.size });
  }
  state.disk = null;
  await waitJobs(vmid, qmp, jobs, 'ready', deps, state, emit);

  // The config to write last, made now: from the switch on, a daemon that dies leaves the next
  // start enough to finish the restore instead of undoing it (live-restore-recovery.ts).
  const volumes = new Map(targets.map((t) => [t.disk, { volid: t.volid, sizeBytes: t.size }]));
  const random = deps.random ?? ((n: number) => crypto.randomBytes(n));
  const conf = restoredConfig({ savedConf: plan.saved.conf, volumes, unique: req.unique, random });
  const fwPath = firewallFile(deps.node.qemuServerConfigDir, vmid);
  const replaced = plan.existing !== undefined ? ownedVolumes(vmid, plan.existing).filter((v) => !state.allocated.includes(v)) : [];
  if (state.journal) {
    state.journal.finish = { conf: conf.text, firewall: plan.saved.firewall, firewallBefore: plan.saved.firewall !== null ? (readOrUndefined(fwPath) ?? null) : null, replaced, dropped: conf.dropped };
  }

  // 6. The switch to the volumes, and nothing left of the export.
  state.phase = 'switch';
  state.save();
  for (const id of jobs.keys()) {
    state.disk = jobs.get(id)!.disk;
    await qmp.complete(id);
  }
  state.disk = null;
  await waitJobs(vmid, qmp, jobs, 'concluded', deps, state, emit);
  killPoint('live-restore-after-switch');
  const left = await qmp.exportLeft(state.overlays);
  for (const t of targets) {
    const now = left.disks.find((d) => d.drive === t.disk);
    if (now?.file !== t.path) {
      throw RestoreLiveJobFailedError({ vmid, disk: t.disk, job: jobIdOf(t.disk), reason: `after the switch drive-${t.disk} reads ${now?.file ?? 'nothing'}, not ${t.path}` });
    }
    emit({ type: 'switched', disk: t.disk, volid: t.volid });
  }
  if (left.nodes.length) {
    throw RestoreLiveJobFailedError({ vmid, disk: targets[0].disk, job: jobIdOf(targets[0].disk), reason: `block nodes still on the export after the switch: ${left.nodes.join(', ')}` });
  }
  await closeExports(state);
  emit({ type: 'export-closed' });

  // 7. The config, last, once the volumes are durable (as the whole-VM restore fsyncs each).
  state.phase = 'config';
  state.save();
  killPoint('live-restore-export-closed');
  deps.signal?.throwIfAborted();
  for (const t of targets) {
    state.disk = t.disk;
    fsyncFile(t.path);
  }
  state.disk = null;
  if (readOrUndefined(plan.confPath) !== plan.existing) {
    throw RestoreVmExistsError({ vmid, conf: plan.confPath, hint: 'the config appeared or changed during the restore; nothing of it was touched' });
  }
  if (plan.saved.firewall !== null) {
    state.firewallBefore = readOrUndefined(fwPath) ?? null;
    fs.mkdirSync(path.dirname(fwPath), { recursive: true });
    writeFileAtomic(fwPath, plan.saved.firewall);
  }
  writeFileAtomic(plan.confPath, conf.text);
  emit({ type: 'config', conf: plan.confPath });
  deps.logger?.info('live restore: complete, config written', { backupId: req.backupId, vmid, conf: plan.confPath, disks: targets.map((t) => t.volid) });

  const { freed, leftover } = await freeAll(deps, replaced);
  if (deps.journalDir !== undefined) removeJournal(deps.journalDir, vmid);
  return {
    backup: req.backupId,
    vmid,
    conf: plan.confPath,
    disks: targets.map((t) => ({ disk: t.disk, volid: t.volid, format: t.format, size: t.size })),
    dropped: conf.dropped,
    freed,
    leftover,
    live: { state: 'complete', layout, pid, guestRunningMs, totalMs: 0, timeline: [] },
  };
}

/** Polls the jobs until each is `ready` (or `concluded`, then dismissed); a failed or vanished job throws. */
async function waitJobs(
  vmid: number,
  qmp: LiveRestoreQmp,
  jobs: Map<string, MoveTarget>,
  until: 'ready' | 'concluded',
  deps: LiveRestoreDeps,
  state: LiveState,
  emit: (e: LiveRestoreEvent) => void,
): Promise<void> {
  const pending = new Set(jobs.keys());
  const fail = (id: string, reason: string): Error => {
    state.disk = jobs.get(id)!.disk;
    return RestoreLiveJobFailedError({ vmid, disk: jobs.get(id)!.disk, job: id, reason });
  };
  for (;;) {
    deps.signal?.throwIfAborted();
    const now: Map<string, JobState> = await qmp.jobs([...pending]);
    for (const id of [...pending]) {
      const j = now.get(id);
      if (!j) throw fail(id, 'the job vanished');
      emit({ type: 'progress', disk: jobs.get(id)!.disk, done: j.done, total: j.total });
      if (j.status === 'concluded' || j.status === 'aborting' || j.status === 'null') {
        if (j.error || until === 'ready') {
          await qmp.dismiss(id).catch(() => undefined);
          throw fail(id, j.error ?? `the job ended (${j.status}) before it was ready`);
        }
        await qmp.dismiss(id);
        pending.delete(id);
      } else if (until === 'ready' && j.status === 'ready') {
        pending.delete(id);
      }
    }
    if (pending.size === 0) return;
    await sleep(deps.pollMs ?? 100);
  }
}

async function closeExports(state: LiveState): Promise<string[]> {
  const problems: string[] = [];
  for (const s of state.servers.splice(0)) await s.close().catch((e) => problems.push(reasonOf(e)));
  for (const r of state.readers.splice(0)) await r.close().catch((e) => problems.push(reasonOf(e)));
  if (state.workDir) {
    try {
      fs.rmSync(state.workDir, { recursive: true, force: true });
    } catch (e) {
      problems.push(reasonOf(e));
    }
  }
  return problems;
}

/** After a failure: the VM stopped, the exports closed, the volumes freed; the error to throw. */
async function undo(req: LiveRestoreRequest, deps: LiveRestoreDeps, state: LiveState, err: unknown, emit: (e: LiveRestoreEvent) => void): Promise<unknown> {
  const { vmid, backupId } = req;
  const runDir = deps.node.qemuServerRunDir;
  emit({ type: 'failed', phase: state.phase, reason: reasonOf(err) });
  let vmStopped = true;
  let vmPid: number | null = null;
  if (state.vmStarted) {
    vmPid = readQemuProcess(runDir, vmid)?.pid ?? null;
    vmStopped = await stopLiveVm(runDir, vmid, path.join(runDir, `${vmid}.qmp`)).catch(() => false);
    emit({ type: 'stopped', stopped: vmStopped });
  }
  const closeProblems = await closeExports(state);
  putBackFirewall(deps, vmid, state.firewallBefore, 'live restore');
  // A VM that still runs may be writing its volumes: they stay, and the error says why.
  const { freed, leftover } = vmStopped
    ? await freeAll(deps, state.allocated)
    : { freed: [] as string[], leftover: state.allocated.map((volid) => ({ volid, reason: `VM ${vmid} (pid ${vmPid}) could not be stopped` })) };
  // Resolved: nothing of the restore runs any more. A VM that could not be stopped keeps its
  // journal, so the next daemon start tries again and says so.
  if (deps.journalDir !== undefined && vmStopped) removeJournal(deps.journalDir, vmid);
  deps.logger?.error('live restore failed', { backupId, vmid, phase: state.phase, disk: state.disk, error: reasonOf(err), vmStopped, freed, leftover, closeProblems });
  if (state.allocated.length === 0 && !state.vmStarted) return err;
  return RestoreLiveFailedError(
    {
      backupId,
      vmid,
      phase: state.phase,
      disk: state.disk,
      reason: reasonOf(err),
      causeCode: isCbtError(err) ? err.code : null,
      vmStarted: state.vmStarted,
      vmStopped: state.vmStarted ? vmStopped : false,
      vmPid: vmStopped ? null : vmPid,
      freed,
      leftover,
    },
    err,
  );
}
