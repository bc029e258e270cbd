/**
 * Start-up recovery for one VM, for the daemon to run before it takes jobs: everything an engine
 * that was killed mid-backup may have left is removed, and bitmaps are settled so no change is lost.
 *
 * - qemu-nbd processes serving this VM's images on pve-cbt's private sockets are stopped (they would
 *   keep the VM from starting);
 * - in a running QEMU: pve-cbt exports, copy-before-write jobs, scratch nodes and our NBD server go,
 *   and a drive left with a frozen old bitmap and a newer one is settled by the repository: if the
 *   last committed manifest names the newer one, the old is dropped, else the newer one is merged
 *   back into the old one (fleece-session.ts);
 * - scratch files of the VM in the work dir are deleted.
 * Offline bitmaps need nothing here: a new image bitmap left by an interrupted offline backup is
 * never the expected one and is removed after the next committed backup.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { DEFAULTS } from '../../shared/config/defaults';
import { qmpSocketPath, readQemuProcess } from '../pve/qemu-process';
import type { Repository } from '../repository/repository';
import { nbdSocketPath } from './fleece-session';
import { cleanupFleeceLeftovers } from './recover-fleece';
import { lastBackupsByDisk } from './last-backups';
import { stopLeftoverExports } from './image-export';

export interface RecoverVmOptions {
  readonly vmid: number;
  readonly config: { readonly qemuServerRunDir: string; readonly workDir?: string };
  readonly repo: Pick<Repository, 'listBackups' | 'readManifest'>;
  readonly logger?: Logger;
}

/** Returns a description of everything that was cleaned (empty when there was nothing). */
export async function recoverVm(opts: RecoverVmOptions): Promise<string[]> {
  const { vmid, config, logger } = opts;
  const workDir = config.workDir ?? path.join(DEFAULTS.stateDir, 'work');
  const done = (await stopLeftoverExports(workDir, vmid)).map((pid) => `qemu-nbd pid ${pid}`);
  if (readQemuProcess(config.qemuServerRunDir, vmid)) {
    const last = await lastBackupsByDisk(opts.repo, vmid);
    done.push(
      ...(await cleanupFleeceLeftovers({
        vmid,
        qmpSocket: qmpSocketPath(config.qemuServerRunDir, vmid),
        workDir,
        committedBitmap: (drive) => last.get(drive)?.bitmap?.name,
        ...(logger ? { logger } : {}),
      })),
    );
  } else if (fs.existsSync(workDir)) {
    fs.rmSync(nbdSocketPath(workDir, vmid), { force: true });
    for (const f of fs.readdirSync(workDir)) {
      if (f.startsWith(`pve-cbt-scratch-${vmid}-`)) {
        fs.rmSync(path.join(workDir, f), { force: true });
        done.push(`file ${f}`);
      }
    }
  }
  if (done.length > 0) logger?.warn('recovered from an interrupted backup', { vmid, done });
  return done;
}
