/**
 * Backup of one VM: the engine's entry point.
 *
 * Order of events (the bitmap and the manifest must never disagree in a way that loses changes):
 *   1. vzdump busy (ledger) → CBT_BACKUP_VZDUMP_BUSY. Disks come from the VM config (+ pvesm path).
 *   2. The repository writer is started first: it takes the VM's lock, so two engines never work on
 *      one VM, and only then are a crashed engine's leftovers in QEMU cleaned.
 *   3. Per disk a mode is decided (mode-decision.ts) from the last committed backup, the ledger and
 *      QEMU's (or qemu-img's) own view of the bitmap.
 *   4. Running VM: one fleecing session for all disks (fleece-session.ts); stopped VM: qemu-nbd per
 *      disk (offline-session.ts). Each disk is read over NBD: incremental reads only the dirty
 *      ranges and overlays them on the base chunks; full and full-compare read the allocated data;
 *      full-compare passes the previous backup as base so unchanged chunks are not stored again.
 *   5. The copy-before-write jobs are checked, the view is torn down, the manifest is committed, and
 *      only then are the old bitmaps dropped and the ledger told the new ones are valid.
 *   Any failure before the commit aborts the writer (no manifest) and merges the new bitmaps back.
 */
import path from 'node:path';
import type { Logger } from 'winston';
import { DEFAULTS, DEFAULT_CHUNK_SIZE } from '../../shared/config/defaults';
import type { Ledger } from '../ledger/ledger';
import { mapExtents } from '../nbd/map-extents';
import { NbdClient } from '../nbd/nbd-client';
import { NBD_STATE_DIRTY, NBD_STATE_ZERO, QEMU_DIRTY_BITMAP_PREFIX } from '../nbd/nbd-constants';
import { readRanges } from '../nbd/nbd-reader';
import { PieceLease } from './piece-lease';
import { withQmp } from '../qmp/qmp-session';
import { queryDisks, type QemuDisk } from '../qmp/query-disks';
import { qgaSocketPath, qmpSocketPath, readQemuProcess, type QemuProcess } from '../pve/qemu-process';
import { readVmConfig, resolveVmDisks, type VmDisk } from '../pve/vm-disks';
import type { BackupWriter, DiskWriter, Manifest } from '../repository/repository';
import { BackupAbortedError, BackupDiskMismatchError, BackupNoDisksError, BackupReadError, BackupVzdumpBusyError } from './backup-errors';
import { bitmapName, ownBitmapsOf, parseBitmapName } from './bitmap-names';
import { BasePrefetch } from './base-prefetch';
import { ChunkAssembler } from './chunk-assembler';
import { readWholeChunk } from './read-whole-chunk';
import { ChunkBuffers } from './chunk-buffers';
import { cleanupFleeceLeftovers, FleeceSession, type FleeceDiskSpec } from './fleece-session';
import { decideMode, formatReason, type BackupMode, type BitmapView, type LastBackupView, type ModeDecision } from './mode-decision';
import { addImageBitmap, assertVmStopped, imageInfo, OfflineExport, removeImageBitmap } from './offline-session';
import { lastBackupsByDisk, type BackupRepository, type LastDiskBackup } from './last-backups';
import { chunkLength, planFull, planIncremental, type ByteRange } from './read-plan';

export interface BackupVmConfig {
  readonly qemuServerConfigDir: string;
  readonly qemuServerRunDir: string;
  readonly pvesmPath: string;
  /** Chunk size of new indexes; an existing disk keeps its base's. */
  readonly chunkSize?: number;
  /** Private dir for scratch images and NBD sockets (default `<stateDir>/work`). */
  readonly workDir?: string;
  /** Dirty bitmap granularity (default 64 KiB). */
  readonly granularity?: number;
  readonly nbdBusyTimeoutMs?: number;
  /** How long to wait for a running vzdump of the VM to end before failing (default 0: fail at once). */
  readonly vzdumpWaitMs?: number;
  readonly freezeTimeoutMs?: number;
  readonly jobPollMs?: number;
  readonly qemuImg?: string;
  readonly qemuNbd?: string;
  /** Bound on every wait for the NBD server (default: the client's 30 s): a hung QEMU fails the backup, not the daemon. */
  readonly nbdTimeoutMs?: number;
  /** NBD reader tuning (defaults: the reader's). */
  readonly nbdConnections?: number;
  readonly nbdInFlight?: number;
  readonly nbdRequestSize?: number;
}

export type { BackupRepository } from './last-backups';
export type BackupLedger = Pick<Ledger, 'get' | 'markValid' | 'isVzdumpBusy' | 'lastEventId'>;

export interface BackupProgress {
  readonly vmid: number;
  readonly disk: string;
  readonly mode: BackupMode;
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface BackupVmOptions {
  readonly vmid: number;
  readonly config: BackupVmConfig;
  readonly repo: BackupRepository;
  readonly ledger: BackupLedger;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
  /** Called after every chunk; a returned promise is awaited (reading pauses meanwhile). */
  readonly onProgress?: (p: BackupProgress) => void | Promise<void>;
}

export type DiskConsistency = 'frozen' | 'crash-consistent' | 'offline';

export interface DiskResult {
  readonly disk: string;
  readonly format: string;
  readonly mode: BackupMode;
  readonly reason: string;
  readonly size: number;
  readonly bytesRead: number;
  readonly bytesStored: number;
  readonly durationMs: number;
  readonly consistency: DiskConsistency;
}

export interface BackupResult {
  readonly id: string;
  readonly vmid: number;
  readonly disks: DiskResult[];
  /** Set when the guest agent was configured but could not freeze. */
  readonly freezeNote?: string;
}

/** One disk's plan: where it is, what to do, and the bitmaps involved. */
interface DiskJob {
  readonly disk: VmDisk;
  readonly size: number;
  readonly decision: ModeDecision;
  readonly last: LastDiskBackup | undefined;
  readonly newBitmap: { name: string; generation: number } | undefined;
  readonly readBitmap: string | undefined;
  readonly qemuDisk?: QemuDisk;
  /** Image bitmaps present before this backup (stopped qcow2). */
  readonly imageBitmaps: BitmapView[];
}

const DEFAULT_GRANULARITY = 65536;
const PUT_WINDOW = 8;

export async function backupVm(opts: BackupVmOptions): Promise<BackupResult> {
  const { vmid, config, repo, logger } = opts;
  await waitVzdumpDone(opts);
  opts.signal?.throwIfAborted();
  const vmConfig = readVmConfig(config.qemuServerConfigDir, vmid);
  const disks = await resolveVmDisks(vmConfig, { qemuServerConfigDir: config.qemuServerConfigDir, pvesmPath: config.pvesmPath });
  if (disks.length === 0) throw BackupNoDisksError({ vmid });
  const lastByDisk = await lastBackupsByDisk(repo, vmid);
  const latestId = [...lastByDisk.values()].map((l) => l.backupId).sort().pop();
  const writer = await repo.startBackup({ vmid, ...(latestId ? { parent: latestId } : {}) });
  logger?.info('backup started', { vmid, backupId: writer.id, disks: disks.map((d) => d.key) });
  try {
    const qemu = readQemuProcess(config.qemuServerRunDir, vmid);
    const run = qemu
      ? runningBackup(opts, writer, disks, lastByDisk, qemu, vmConfig.agentEnabled)
      : stoppedBackup(opts, writer, disks, lastByDisk);
    return await run;
  } catch (err) {
    await writer.abort().catch((e: Error) => logger?.error('abort of backup writer failed', { vmid, error: e.message }));
    logger?.error('backup failed', { vmid, backupId: writer.id, error: (err as Error).message, code: (err as { code?: string }).code });
    throw err;
  }
}

/** vzdump owns the VM while it runs (ledger, fed by the vzdump hook): wait a bounded time, then fail. */
async function waitVzdumpDone(opts: BackupVmOptions): Promise<void> {
  const limit = opts.config.vzdumpWaitMs ?? 0;
  const t0 = Date.now();
  while (opts.ledger.isVzdumpBusy(opts.vmid)) {
    if (Date.now() - t0 >= limit) throw BackupVzdumpBusyError({ vmid: opts.vmid, waitedMs: Date.now() - t0 });
    opts.logger?.info('vzdump is backing up the VM, waiting', { vmid: opts.vmid });
    await new Promise((r) => setTimeout(r, Math.min(1000, limit)));
    opts.signal?.throwIfAborted();
  }
}

function nextGeneration(drive: string, bitmaps: readonly BitmapView[], last: LastBackupView | undefined, ledgerGen: number | null | undefined): number {
  const gens = ownBitmapsOf(bitmaps, drive).map((b) => parseBitmapName(b.name)?.generation ?? 0);
  return Math.max(0, ...gens, last?.bitmap?.generation ?? 0, ledgerGen ?? 0) + 1;
}

function decide(
  opts: BackupVmOptions,
  disk: VmDisk,
  size: number,
  bitmaps: BitmapView[],
  qemu: QemuProcess | undefined,
  last: LastDiskBackup | undefined,
): ModeDecision {
  const ledger = opts.ledger.get(opts.vmid, disk.key);
  const decision = decideMode({
    disk: disk.key,
    format: disk.format,
    diskSize: size,
    vmRunning: qemu !== undefined,
    lastBackup: last,
    ledger,
    bitmaps,
    qemu,
    expectedGranularity: opts.config.granularity ?? DEFAULT_GRANULARITY,
  });
  opts.logger?.info(`mode ${decision.mode}: ${decision.reason}`, { vmid: opts.vmid, disk: disk.key, mode: decision.mode, code: decision.code });
  return decision;
}

function workDirOf(config: BackupVmConfig): string {
  return config.workDir ?? path.join(DEFAULTS.stateDir, 'work');
}

async function runningBackup(
  opts: BackupVmOptions,
  writer: BackupWriter,
  disks: VmDisk[],
  lastByDisk: Map<string, LastDiskBackup>,
  qemu: QemuProcess,
  agent: boolean,
): Promise<BackupResult> {
  const { vmid, config, logger } = opts;
  const qmpSocket = qmpSocketPath(config.qemuServerRunDir, vmid);
  const workDir = workDirOf(config);
  await cleanupFleeceLeftovers({ vmid, qmpSocket, workDir, committedBitmap: (d) => lastByDisk.get(d)?.bitmap?.name, logger });
  const qdisks = await withQmp(qmpSocket, (q) => queryDisks(q));
  const granularity = config.granularity ?? DEFAULT_GRANULARITY;
  const sideJobs: DiskJob[] = [];
  for (const disk of disks.filter((d) => !qdisks.some((x) => x.drive === d.key))) {
    // qemu-server hands tpmstate0 to swtpm, not to QEMU: read it from its volume, without a bitmap.
    if (disk.key !== 'tpmstate0') throw BackupDiskMismatchError({ vmid, disk: disk.key, reason: 'in the VM config but not attached in QEMU' });
    sideJobs.push(await sideJob(disk, lastByDisk.get(disk.key), config));
  }
  const jobs: DiskJob[] = disks.filter((d) => !sideJobs.some((x) => x.disk === d)).map((disk) => {
    const qd = qdisks.find((x) => x.drive === disk.key) as QemuDisk;
    const last = lastByDisk.get(disk.key);
    const decision = decide(opts, disk, qd.size, qd.bitmaps, qemu, last);
    const generation = nextGeneration(disk.key, qd.bitmaps, last, opts.ledger.get(vmid, disk.key)?.generation);
    return {
      disk,
      size: qd.size,
      decision,
      last,
      newBitmap: { name: bitmapName(disk.key, generation), generation },
      readBitmap: decision.mode === 'incremental' ? last?.bitmap?.name : undefined,
      qemuDisk: qd,
      imageBitmaps: [],
    };
  });
  const specs: FleeceDiskSpec[] = jobs.map((j) => ({
    drive: j.disk.key,
    device: (j.qemuDisk as QemuDisk).device,
    nodeName: (j.qemuDisk as QemuDisk).nodeName,
    size: j.size,
    newBitmap: (j.newBitmap as { name: string }).name,
    persistent: j.disk.format === 'qcow2' && (j.qemuDisk as QemuDisk).format === 'qcow2',
    granularity,
    ...(j.readBitmap ? { readBitmap: j.readBitmap } : {}),
  }));
  const sinceEventId = opts.ledger.lastEventId();
  const session = await FleeceSession.start(
    {
      vmid,
      qmpSocket,
      workDir,
      ...(agent ? { qgaSocket: qgaSocketPath(config.qemuServerRunDir, vmid) } : {}),
      ...(config.nbdBusyTimeoutMs !== undefined ? { nbdBusyTimeoutMs: config.nbdBusyTimeoutMs } : {}),
      ...(config.jobPollMs !== undefined ? { jobPollMs: config.jobPollMs } : {}),
      ...(config.freezeTimeoutMs !== undefined ? { freezeTimeoutMs: config.freezeTimeoutMs } : {}),
      ...(config.qemuImg ? { qemuImg: config.qemuImg } : {}),
      ...(logger ? { logger } : {}),
    },
    specs,
  );
  const consistency: DiskConsistency = session.consistency === 'frozen' ? 'frozen' : 'crash-consistent';
  let manifest: Manifest;
  const results: DiskResult[] = [];
  try {
    const signal = opts.signal ? AbortSignal.any([opts.signal, session.signal]) : session.signal;
    for (const j of jobs) {
      results.push(await backupDisk(opts, writer, j, { socketPath: session.socketPath, exportName: session.exportName(j.disk.key) }, consistency, signal));
    }
    for (const j of sideJobs) results.push(await readViaQemuNbd(opts, writer, j, 'crash-consistent', true));
    await session.checkJobs();
    await session.teardown();
    manifest = await writer.commit(session.freezeNote ? { freezeNote: session.freezeNote } : {});
  } catch (err) {
    await session.teardown();
    await session.rollbackBitmaps().catch((e: Error) => logger?.error('bitmap rollback failed', { vmid, error: e.message }));
    throw mapAbort(err, opts, session.signal);
  }
  await session.commitBitmaps().catch((e: Error) => logger?.warn('removing old bitmaps failed; they go at the next backup', { vmid, error: e.message }));
  for (const j of jobs) markValid(opts, j, qemu, sinceEventId);
  logger?.info('backup finished', { vmid, backupId: manifest.id, disks: results });
  return { id: manifest.id, vmid, disks: results, ...(session.freezeNote && agent ? { freezeNote: session.freezeNote } : {}) };
}

async function stoppedBackup(
  opts: BackupVmOptions,
  writer: BackupWriter,
  disks: VmDisk[],
  lastByDisk: Map<string, LastDiskBackup>,
): Promise<BackupResult> {
  const { vmid, config, logger } = opts;
  const qemuImg = config.qemuImg ?? 'qemu-img';
  const granularity = config.granularity ?? DEFAULT_GRANULARITY;
  const jobs: DiskJob[] = [];
  for (const disk of disks) {
    assertVmStopped(config.qemuServerRunDir, vmid, disk.key, disk.path);
    const info = await imageInfo(disk.path, disk.format, qemuImg);
    const last = lastByDisk.get(disk.key);
    const decision = decide(opts, disk, info.virtualSize, info.bitmaps, undefined, last);
    const persistent = disk.format === 'qcow2';
    const generation = nextGeneration(disk.key, info.bitmaps, last, opts.ledger.get(vmid, disk.key)?.generation);
    jobs.push({
      disk,
      size: info.virtualSize,
      decision,
      last,
      newBitmap: persistent ? { name: bitmapName(disk.key, generation), generation } : undefined,
      readBitmap: decision.mode === 'incremental' ? last?.bitmap?.name : undefined,
      imageBitmaps: info.bitmaps,
    });
  }
  const added: DiskJob[] = [];
  const results: DiskResult[] = [];
  let manifest: Manifest;
  try {
    for (const j of jobs) {
      if (!j.newBitmap) continue;
      await addImageBitmap(j.disk.path, j.newBitmap.name, granularity, qemuImg);
      added.push(j);
    }
    for (const j of jobs) {
      assertVmStopped(config.qemuServerRunDir, vmid, j.disk.key, j.disk.path);
      results.push(await readViaQemuNbd(opts, writer, j, 'offline', false));
    }
    manifest = await writer.commit({});
  } catch (err) {
    for (const j of added) {
      await removeImageBitmap(j.disk.path, (j.newBitmap as { name: string }).name, qemuImg).catch((e: Error) =>
        logger?.warn('removing the new image bitmap failed', { vmid, disk: j.disk.key, error: e.message }),
      );
    }
    throw mapAbort(err, opts, undefined);
  }
  for (const j of added) {
    for (const b of ownBitmapsOf(j.imageBitmaps, j.disk.key)) {
      await removeImageBitmap(j.disk.path, b.name, qemuImg).catch((e: Error) =>
        logger?.warn('removing an old image bitmap failed', { vmid, disk: j.disk.key, bitmap: b.name, error: e.message }),
      );
    }
    markValid(opts, j, undefined, undefined);
  }
  logger?.info('backup finished', { vmid, backupId: manifest.id, disks: results });
  return { id: manifest.id, vmid, disks: results };
}

/** A disk QEMU does not hold (tpmstate0 of a running VM): full, or full-compare against the last backup. */
async function sideJob(disk: VmDisk, last: LastDiskBackup | undefined, config: BackupVmConfig): Promise<DiskJob> {
  const info = await imageInfo(disk.path, disk.format, config.qemuImg ?? 'qemu-img');
  const decision: ModeDecision = last
    ? { mode: 'full-compare', code: 'not-in-qemu', reason: `${disk.key} is not a QEMU block device (swtpm holds it); no bitmap is possible` }
    : { mode: 'full', code: 'first-backup', reason: `no committed backup of ${disk.key} yet` };
  return { disk, size: info.virtualSize, decision, last, newBitmap: undefined, readBitmap: undefined, imageBitmaps: [] };
}

async function readViaQemuNbd(opts: BackupVmOptions, writer: BackupWriter, j: DiskJob, consistency: DiskConsistency, forceShare: boolean): Promise<DiskResult> {
  const exp = await OfflineExport.open({
    vmid: opts.vmid,
    drive: j.disk.key,
    file: j.disk.path,
    format: j.disk.format,
    workDir: workDirOf(opts.config),
    forceShare,
    ...(j.readBitmap ? { bitmap: j.readBitmap } : {}),
    ...(opts.config.qemuNbd ? { qemuNbd: opts.config.qemuNbd } : {}),
    ...(opts.logger ? { logger: opts.logger } : {}),
  });
  try {
    return await backupDisk(opts, writer, j, { socketPath: exp.socketPath, exportName: exp.exportName }, consistency, opts.signal);
  } finally {
    await exp.close();
  }
}

function markValid(opts: BackupVmOptions, j: DiskJob, qemu: QemuProcess | undefined, sinceEventId: number | undefined): void {
  if (!j.newBitmap) return;
  opts.ledger.markValid(
    {
      vmid: opts.vmid,
      disk: j.disk.key,
      format: j.disk.format,
      bitmapName: j.newBitmap.name,
      generation: j.newBitmap.generation,
      qemuPid: qemu?.pid ?? null,
      qemuStartTime: qemu?.startTime ?? null,
    },
    sinceEventId === undefined ? {} : { sinceEventId },
  );
}

function mapAbort(err: unknown, opts: BackupVmOptions, viewSignal: AbortSignal | undefined): unknown {
  if (viewSignal?.aborted && viewSignal.reason instanceof Error) return viewSignal.reason;
  if (opts.signal?.aborted) return BackupAbortedError({ vmid: opts.vmid }, err);
  return err;
}

/** Reads one disk through NBD into the repository according to its mode. */
async function backupDisk(
  opts: BackupVmOptions,
  writer: BackupWriter,
  j: DiskJob,
  nbd: { socketPath: string; exportName: string },
  consistency: DiskConsistency,
  signal: AbortSignal | undefined,
): Promise<DiskResult> {
  const t0 = Date.now();
  const { vmid } = opts;
  const mode = j.decision.mode;
  const base = mode !== 'full' && j.last ? { backupId: j.last.backupId, disk: j.disk.key } : undefined;
  const dw: DiskWriter = await writer.openDisk({
    name: j.disk.key,
    format: j.disk.format,
    size: j.size,
    ...(base ? { base } : { chunkSize: opts.config.chunkSize ?? DEFAULT_CHUNK_SIZE }),
  });
  if (mode === 'incremental' && !dw.cloned) {
    throw BackupDiskMismatchError({ vmid, disk: j.disk.key, reason: `base ${j.last?.backupId} could not be cloned for an incremental` });
  }
  const context = mode === 'incremental' ? `${QEMU_DIRTY_BITMAP_PREFIX}${j.readBitmap}` : 'base:allocation';
  const connect = (): Promise<NbdClient> =>
    NbdClient.connect({
      socketPath: nbd.socketPath,
      exportName: nbd.exportName,
      metaContexts: [context],
      ...(opts.config.nbdTimeoutMs !== undefined ? { timeoutMs: opts.config.nbdTimeoutMs } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  let ranges: ByteRange[];
  const probe = await connect();
  try {
    if (probe.size !== j.size) {
      throw BackupDiskMismatchError({ vmid, disk: j.disk.key, reason: `NBD export size ${probe.size} differs from disk size ${j.size}` });
    }
    const extents = await mapExtents(probe, context);
    ranges = mode === 'incremental' ? extents.filter((e) => (e.flags & NBD_STATE_DIRTY) !== 0) : extents.filter((e) => (e.flags & NBD_STATE_ZERO) === 0);
  } finally {
    await probe.close();
  }
  const planOpts = { diskSize: j.size, chunkSize: dw.chunkSize, maxRequest: 4 * 1024 * 1024 };
  const plan = mode === 'incremental' ? planIncremental(ranges, dw.badBaseChunks(), planOpts) : planFull(ranges, planOpts);
  const progress = async (): Promise<void> => {
    const r = opts.onProgress?.({ vmid, disk: j.disk.key, mode, bytesDone: assembler.received, bytesTotal: plan.bytesToRead });
    if (r) await r;
  };
  // Chunk inserts (digest, compression, file writes) overlap with reading, up to PUT_WINDOW at once.
  // NBD read buffers are pooled shared memory (no page faults, no GC, work on the blob workers
  // without a copy); each goes back to the reader's pool when its lease is dropped (piece-lease.ts).
  // Chunks built in a buffer of their own (partial chunks, an incremental's base + dirty bytes)
  // come from a second pool (chunk-buffers.ts) and go back when their insert settled.
  const pending = new Set<Promise<void>>();
  let lease: PieceLease | undefined;
  let putError: unknown;
  // Set when reading failed: a data callback still running must not start more inserts.
  let stopped = false;
  const buffers = new ChunkBuffers(dw.chunkSize);
  const prefetch = new BasePrefetch(
    plan.chunks.filter((c) => c.fill === 'base').map((c) => c.index),
    (i) => dw.readBaseChunk(i, buffers.take(chunkLength(i, j.size, dw.chunkSize), false)),
  );
  const assembler = new ChunkAssembler(
    plan,
    {
      readBaseChunk: (i) => prefetch.get(i),
      readWholeChunk: (i, into) => readWholeChunk(connect, i * dw.chunkSize, into),
      onChunk: async (i, data, pooled) => {
        if (putError) throw putError;
        if (stopped) throw new Error('backup stopped');
        const drop = pooled ? () => buffers.give(data) : lease?.hold();
        const p: Promise<void> = dw.putChunk(i, data).then(
          () => {
            pending.delete(p);
            drop?.();
          },
          (e: unknown) => {
            pending.delete(p);
            putError ??= e;
            drop?.();
          },
        );
        pending.add(p);
        if (pending.size >= PUT_WINDOW) await Promise.race(pending);
        if (putError) throw putError;
        await progress();
      },
      onUntouched: async (i) => {
        if (mode !== 'incremental') dw.putZero(i);
      },
    },
    buffers,
  );
  try {
    const c = opts.config;
    const onData = async (off: number, data: Buffer, release: () => void): Promise<void> => {
      const piece = new PieceLease(release);
      lease = piece;
      try {
        await assembler.push(off, data);
      } finally {
        lease = undefined;
        piece.drop();
      }
    };
    await readRanges(plan.requests as ByteRange[], onData, {
      connect,
      reuseBuffers: true,
      ...(c.nbdConnections !== undefined ? { connections: c.nbdConnections } : {}),
      ...(c.nbdInFlight !== undefined ? { inFlight: c.nbdInFlight } : {}),
      ...(c.nbdRequestSize !== undefined ? { requestSize: c.nbdRequestSize } : {}),
      ...(signal ? { signal } : {}),
    });
    await assembler.finish();
    await Promise.all(pending);
    if (putError) throw putError;
  } catch (err) {
    // No insert may still be running when the caller aborts the writer and removes its folder.
    stopped = true;
    while (pending.size) await Promise.allSettled([...pending]);
    if (signal?.aborted) throw err;
    if ((err as { code?: string }).code?.startsWith('CBT_NBD_')) {
      throw BackupReadError({ vmid, disk: j.disk.key, reason: (err as Error).message }, err);
    }
    throw err;
  }
  const durationMs = Date.now() - t0;
  const entry = await dw.finish({
    mode,
    reason: formatReason(j.decision),
    ...(j.newBitmap ? { bitmap: j.newBitmap } : {}),
    consistency,
    bytesRead: assembler.received,
    durationMs,
  });
  const result: DiskResult = {
    disk: j.disk.key,
    format: j.disk.format,
    mode,
    reason: formatReason(j.decision),
    size: j.size,
    bytesRead: assembler.received,
    bytesStored: entry.bytesStored,
    durationMs,
    consistency,
  };
  opts.logger?.info('disk backed up', { vmid, ...result });
  return result;
}
