/**
 * Backup of one disk from an NBD export into the repository, according to its job:
 *   1. the disk writer is opened, on the last backup as base unless the mode is full (an
 *      incremental whose base cannot be cloned is CBT_BACKUP_DISK_MISMATCH);
 *   2. one probe connection checks the export's size and maps its extents: the dirty ranges of the
 *      exported bitmap for an incremental, the data that is not zero for a full (selectExtents); an
 *      incremental-storage job brings its ranges with the export (what `rbd diff` reported);
 *   3. the read plan (read-plan.ts) is read into the writer (chunk-pipeline.ts), with progress after
 *      every chunk;
 *   4. the disk is finished with its mode, reason, bitmap and consistency.
 * A failed NBD read is CBT_BACKUP_READ (unless the backup was aborted: then the abort reason counts).
 */
import { selectExtents } from '../nbd/extent';
import { mapExtents } from '../nbd/map-extents';
import { NbdClient } from '../nbd/nbd-client';
import { NBD_STATE_DIRTY, NBD_STATE_ZERO, QEMU_DIRTY_BITMAP_PREFIX } from '../nbd/nbd-constants';
import type { BackupWriter, DiskWriter } from '../repository/repository';
import { BackupDiskMismatchError, BackupReadError } from './backup-errors';
import type { BackupVmOptions, Consistency, DiskResult } from './backup-options';
import { runChunkPipeline } from './chunk-pipeline';
import { formatReason } from './mode-decision';
import { newBitmapOf, type DiskJob } from './plan-disks';
import { planFull, planIncremental, type ByteRange } from './read-plan';
import { traced } from '../../shared/trace/trace-spans';

/** Longest single NBD read request the plan makes. */
const MAX_REQUEST = 4 * 1024 * 1024;

export interface NbdEndpoint {
  readonly socketPath: string;
  readonly exportName: string;
}

export async function backupDisk(
  opts: BackupVmOptions,
  writer: BackupWriter,
  j: DiskJob,
  nbd: NbdEndpoint & { readonly changedRanges?: readonly ByteRange[] },
  consistency: Consistency,
  signal: AbortSignal | undefined,
): Promise<DiskResult> {
  const t0 = Date.now();
  const { vmid, config: c } = opts;
  const mode = j.decision.mode;
  /** Read over the base like an incremental: from the bitmap, or from the storage's own diff. */
  const overBase = mode === 'incremental' || mode === 'incremental-storage';
  if (mode === 'incremental-storage' && !nbd.changedRanges) {
    throw BackupDiskMismatchError({ vmid, disk: j.disk.key, reason: 'incremental-storage without the ranges the storage reported' });
  }
  const dw = await traced('disk.open-writer', () => openDiskWriter(opts, writer, j));
  const context = mode === 'incremental' ? `${QEMU_DIRTY_BITMAP_PREFIX}${j.readBitmap}` : 'base:allocation';
  const connect = (): Promise<NbdClient> =>
    NbdClient.connect({
      socketPath: nbd.socketPath,
      exportName: nbd.exportName,
      metaContexts: [context],
      ...(c.nbdTimeoutMs !== undefined ? { timeoutMs: c.nbdTimeoutMs } : {}),
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  const probed = await traced('disk.map-extents', () => rangesToRead(vmid, j, connect, context));
  const ranges = mode === 'incremental-storage' ? [...(nbd.changedRanges ?? [])] : probed;
  const planOpts = { diskSize: j.size, chunkSize: dw.chunkSize, maxRequest: MAX_REQUEST };
  const plan = overBase ? planIncremental(ranges, dw.badBaseChunks(), planOpts) : planFull(ranges, planOpts);
  let bytesRead: number;
  try {
    bytesRead = await traced('disk.pipeline', () => runChunkPipeline({
      plan,
      dw,
      diskSize: j.size,
      incremental: overBase,
      connect,
      reader: {
        ...(c.nbdConnections !== undefined ? { connections: c.nbdConnections } : {}),
        ...(c.nbdInFlight !== undefined ? { inFlight: c.nbdInFlight } : {}),
        ...(c.nbdRequestSize !== undefined ? { requestSize: c.nbdRequestSize } : {}),
      },
      ...(signal ? { signal } : {}),
      onProgress: async (bytesDone, reuse) => {
        await opts.onProgress?.({ vmid, disk: j.disk.key, mode, bytesDone, bytesTotal: plan.bytesToRead, ...reuse });
      },
    }));
  } catch (err) {
    if (signal?.aborted) throw err;
    if ((err as { code?: string }).code?.startsWith('CBT_NBD_')) {
      throw BackupReadError({ vmid, disk: j.disk.key, reason: (err as Error).message }, err);
    }
    throw err;
  }
  const durationMs = Date.now() - t0;
  const reason = formatReason(j.decision);
  const bitmap = newBitmapOf(j);
  const entry = await traced('disk.finish', () => dw.finish({ mode, reason, ...(bitmap ? { bitmap } : {}), consistency, bytesRead, durationMs }));
  const result: DiskResult = {
    disk: j.disk.key,
    format: j.disk.format,
    mode,
    reason,
    size: j.size,
    bytesRead,
    bytesStored: entry.bytesStored,
    durationMs,
    consistency,
  };
  opts.logger?.info('disk backed up', { vmid, ...result });
  return result;
}

async function openDiskWriter(opts: BackupVmOptions, writer: BackupWriter, j: DiskJob): Promise<DiskWriter> {
  const mode = j.decision.mode;
  const base = mode !== 'full' && j.last ? { backupId: j.last.backupId, disk: j.disk.key } : undefined;
  const dw = await writer.openDisk({
    name: j.disk.key,
    format: j.disk.format,
    size: j.size,
    ...(base ? { base } : opts.config.chunkSize !== undefined ? { chunkSize: opts.config.chunkSize } : {}),
  });
  if ((mode === 'incremental' || mode === 'incremental-storage') && !dw.cloned) {
    throw BackupDiskMismatchError({ vmid: opts.vmid, disk: j.disk.key, reason: `base ${j.last?.backupId} could not be cloned for an incremental` });
  }
  return dw;
}

/** The byte ranges to read: dirty ones for an incremental, those holding data otherwise. */
async function rangesToRead(vmid: number, j: DiskJob, connect: () => Promise<NbdClient>, context: string): Promise<ByteRange[]> {
  const probe = await connect();
  try {
    if (probe.size !== j.size) {
      throw BackupDiskMismatchError({ vmid, disk: j.disk.key, reason: `NBD export size ${probe.size} differs from disk size ${j.size}` });
    }
    if (j.decision.mode === 'incremental-storage') return []; // the storage said which ranges changed
    const extents = await mapExtents(probe, context);
    return j.decision.mode === 'incremental' ? selectExtents(extents, NBD_STATE_DIRTY, NBD_STATE_DIRTY) : selectExtents(extents, NBD_STATE_ZERO, 0);
  } finally {
    await probe.close();
  }
}
