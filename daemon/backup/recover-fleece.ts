/**
 * Removes what a crashed or killed engine left in a running QEMU (called before every backup of a
 * running VM, and by recover-vm.ts at daemon start), and what a failed backup left because QEMU did
 * not answer its teardown (retried in the background, cleanup-retry.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import type { QemuProcess } from '../pve/qemu-process';
import type { QmpConnectOptions } from '../qmp/qmp-client';
import { withQmp } from '../qmp/qmp-session';
import { queryDisks, type QemuDisk } from '../qmp/query-disks';
import { isOwnName, ownBitmapsOf, parseBitmapName, scratchFilePrefix } from './bitmap-names';
import { retryCleanup, stopCleanupRetry } from './cleanup-retry';
import { bitmapRollbackActions, nbdSocketPath, waitExportsGone, waitJobsGone } from './fleece-session';

export interface LeftoverOptions {
  readonly vmid: number;
  readonly qmpSocket: string;
  readonly workDir: string;
  /** The bitmap the latest committed backup of a drive started, if any (from the repository). */
  readonly committedBitmap: (drive: string) => string | undefined;
  readonly qmpOptions?: QmpConnectOptions;
  readonly logger?: Logger;
  /**
   * Receives QEMU's drives and bitmaps as they are after the cleanup, from the same session (asked
   * again only when the cleanup changed bitmaps), so a backup need not ask for them once more.
   */
  readonly onDisks?: (disks: QemuDisk[]) => void;
}

/**
 * Removes what a crashed or killed engine left in a running QEMU: pve-cbt exports, jobs, scratch
 * nodes, our NBD server (recognised by its socket file in the work dir) and scratch files. A drive
 * left with an old disabled bitmap and a newer one is settled like commit or rollback, depending on
 * which of them the last committed manifest names.
 */
export async function cleanupFleeceLeftovers(opts: LeftoverOptions): Promise<string[]> {
  // A background retry of a failed backup's cleanup would work on the same names: this pass takes over.
  await stopCleanupRetry(opts.vmid);
  return removeLeftovers(opts);
}

/**
 * After a failed backup whose cleanup QEMU did not answer: the same cleanup, retried in the
 * background (cleanup-retry.ts) until QEMU answers again or is gone. `committedBitmap` still names
 * the bitmaps of the last committed backup, so the failed backup's new bitmaps are merged back.
 */
export function cleanupFleeceLeftoversLater(opts: LeftoverOptions & { readonly qemu: QemuProcess }): void {
  retryCleanup({ vmid: opts.vmid, qemu: opts.qemu, attempt: () => removeLeftovers(opts), ...(opts.logger ? { logger: opts.logger } : {}) });
}

async function removeLeftovers(opts: LeftoverOptions): Promise<string[]> {
  const { vmid } = opts;
  const done: string[] = [];
  const socket = nbdSocketPath(opts.workDir, vmid);
  await withQmp(
    opts.qmpSocket,
    async (q) => {
      // The waits ask again only after something was removed: otherwise the answer is known.
      const exps = (await q.execute<{ id: string }[]>('query-block-exports')).filter((x) => isOwnName(x.id));
      for (const e of exps) {
        await q.execute('block-export-del', { id: e.id, mode: 'hard' });
        done.push(`export ${e.id}`);
      }
      if (exps.length > 0) await waitExportsGone(q, vmid);
      const jobs = (await q.execute<{ device: string }[]>('query-block-jobs')).filter((x) => isOwnName(x.device));
      for (const j of jobs) {
        await q.execute('block-job-cancel', { device: j.device, force: true });
        done.push(`job ${j.device}`);
      }
      if (jobs.length > 0) await waitJobsGone(q);
      const nodes = await q.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true });
      for (const n of nodes.filter((x) => isOwnName(x['node-name']))) {
        await q.execute('blockdev-del', { 'node-name': n['node-name'] });
        done.push(`node ${n['node-name']}`);
      }
      if (fs.existsSync(socket)) {
        try {
          await q.execute('nbd-server-stop');
          done.push('nbd server');
        } catch (err) {
          opts.logger?.debug('nbd-server-stop during cleanup', { vmid, error: (err as Error).message });
        }
      }
      const disks = await queryDisks(q);
      let bitmapsChanged = false;
      for (const disk of disks) {
        const own = ownBitmapsOf(disk.bitmaps, disk.drive);
        const disabled = own.filter((b) => !b.recording);
        if (disabled.length === 0 || own.length < 2) continue;
        const gen = (name: string): number => parseBitmapName(name)?.generation ?? 0;
        const newest = own.reduce((a, b) => (gen(b.name) > gen(a.name) ? b : a));
        const old = disabled.filter((b) => b !== newest).reduce((a, b) => (gen(b.name) > gen(a.name) ? b : a), disabled[0]);
        if (old === newest) continue;
        bitmapsChanged = true;
        if (opts.committedBitmap(disk.drive) === newest.name) {
          await q.execute('block-dirty-bitmap-remove', { node: disk.nodeName, name: old.name });
          done.push(`bitmap ${old.name} removed (backup committed)`);
        } else {
          await q.execute('transaction', { actions: bitmapRollbackActions(disk.nodeName, old.name, newest.name) });
          done.push(`bitmap ${newest.name} merged back into ${old.name}`);
        }
      }
      opts.onDisks?.(bitmapsChanged ? await queryDisks(q) : disks);
    },
    opts.qmpOptions,
  );
  fs.rmSync(socket, { force: true });
  if (fs.existsSync(opts.workDir)) {
    for (const f of fs.readdirSync(opts.workDir)) {
      if (f.startsWith(scratchFilePrefix(vmid))) {
        fs.rmSync(path.join(opts.workDir, f), { force: true });
        done.push(`file ${f}`);
      }
    }
  }
  if (done.length > 0) opts.logger?.warn('cleaned up leftovers of an interrupted backup', { vmid, done });
  return done;
}
