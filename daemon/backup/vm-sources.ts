/**
 * The backup sources of one VM's planned jobs (backup-source.ts), in the order they are opened and
 * read: a running VM's disks from one fleecing source, then the volumes beside QEMU from an image
 * source; a stopped VM's disks from one image source.
 */
import { qgaSocketPath, qmpSocketPath, type QemuProcess } from '../pve/qemu-process';
import { workDirOf, type BackupVmOptions } from './backup-options';
import type { BackupSource } from './backup-source';
import { FleeceSource } from './fleece-source';
import { ImageSource } from './image-source';
import type { DiskJob, FleeceJob, ImageJob, VolumeJob } from './plan-disks';

/** Running VM: one fleecing source for QEMU's disks, then an image source for the volumes beside it. */
export function sourcesFor(opts: BackupVmOptions, jobs: DiskJob[], qemu: QemuProcess | undefined, agent: boolean, granularity: number): BackupSource[] {
  const { vmid, config: c, logger } = opts;
  const workDir = workDirOf(c);
  const images = jobs.filter((j): j is ImageJob | VolumeJob => j.kind !== 'fleece');
  const imageSource = new ImageSource(
    {
      vmid,
      qemuServerRunDir: c.qemuServerRunDir,
      workDir,
      vmRunning: qemu !== undefined,
      granularity,
      ...(c.qemuImg ? { qemuImg: c.qemuImg } : {}),
      ...(c.qemuNbd ? { qemuNbd: c.qemuNbd } : {}),
      ...(logger ? { logger } : {}),
    },
    images,
  );
  if (!qemu) return [imageSource];
  const fleece = new FleeceSource(
    {
      vmid,
      qmpSocket: qmpSocketPath(c.qemuServerRunDir, vmid),
      workDir,
      ...(agent ? { qgaSocket: qgaSocketPath(c.qemuServerRunDir, vmid) } : {}),
      ...(c.nbdBusyTimeoutMs !== undefined ? { nbdBusyTimeoutMs: c.nbdBusyTimeoutMs } : {}),
      ...(c.jobPollMs !== undefined ? { jobPollMs: c.jobPollMs } : {}),
      ...(c.freezeTimeoutMs !== undefined ? { freezeTimeoutMs: c.freezeTimeoutMs } : {}),
      ...(c.qemuImg ? { qemuImg: c.qemuImg } : {}),
      ...(logger ? { logger } : {}),
    },
    jobs.filter((j): j is FleeceJob => j.kind === 'fleece'),
    granularity,
    qemu,
  );
  return [fleece, imageSource];
}
