/**
 * Whole-VM restore (daemon/restore/restore-vm.ts: `pvesm alloc` on the simulator's dir storage,
 * every disk restored and fsynced, the config written last) beside `qemu-img convert` of the same
 * disks in the same run, each to its own format, flushed too (`-t writeback`), as the baseline.
 *
 * VM: a 1 GiB qcow2 and a 1 GiB raw disk, each with 512 MiB of random data in alternating 1 MiB
 * extents, written with qemu-io straight into the images of the stopped VM, then backed up.
 * No target: the row shows what restoring a VM costs over copying its disks; the restore also
 * checks every chunk's SHA-256 and makes each volume durable before the next one.
 * `BENCH_VM_RESTORE_MIB` sets the disk size (default 1024).
 *
 * Live restore of the same backup (daemon/restore/live-restore.ts, a daemonized QEMU): the time from
 * its start to the end of the guest's first read (HMP `qemu-io -d scsi0 "read 0 1M"`, issued as soon
 * as the VM runs on the export), and until the VM is on its volumes, beside the whole-VM restore;
 * the live restore's volumes are compared with the disks as well.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backupVm } from '../daemon/backup/backup-vm';
import { openCatalog } from '../daemon/catalog/open-catalog';
import { Ledger } from '../daemon/ledger/ledger';
import { Repository } from '../daemon/repository/repository';
import { liveRestore } from '../daemon/restore/live-restore';
import { stopLiveVm } from '../daemon/restore/live-restore-launch';
import { restoreVm } from '../daemon/restore/restore-vm';
import { hmp } from '../daemon/qmp/hmp';
import { withQmp } from '../daemon/qmp/qmp-session';
import { createPveNode } from '../daemon/sim/pve-node';
import type { BenchResult } from './support/bench-result';
import { settle } from './support/settle';

function fillAlternating(image: string, format: string, sizeMiB: number): void {
  const cmds: string[] = [];
  for (let at = 0; at < sizeMiB; at += 2) cmds.push('-c', `write -P ${(at / 2) % 251} ${at}M 1M`);
  for (let i = 0; i < cmds.length; i += 400) execFileSync('qemu-io', ['-f', format, ...cmds.slice(i, i + 400), image], { stdio: 'ignore' });
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  settle();
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

export async function run(): Promise<BenchResult[]> {
  const sizeMiB = Number(process.env.BENCH_VM_RESTORE_MIB ?? 1024);
  const node = await createPveNode();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-vmrestore-'));
  try {
    const vm = await node.addVm({ vmid: 100, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB }, { key: 'scsi1', format: 'raw', sizeMiB }] });
    for (const d of vm.disks) fillAlternating(d.path, d.format, sizeMiB);
    const repo = await Repository.open(path.join(work, 'repo'), { create: true });
    const db = openCatalog(path.join(work, 'catalog.db'));
    try {
      const nodePaths = { qemuServerConfigDir: node.configDir, qemuServerRunDir: node.runDir, pvesmPath: node.pvesmPath };
      const backup = await backupVm({ vmid: 100, config: { ...nodePaths, workDir: path.join(work, 'work') }, repo, ledger: new Ledger(db) });

      const baseline = await timed(async () => {
        for (const d of vm.disks) execFileSync('qemu-img', ['convert', '-t', 'writeback', '-f', d.format, '-O', d.format, d.path, path.join(work, `copy-${d.key}.${d.format}`)]);
      });
      const restore = await timed(() => restoreVm({ backupId: backup.id, vmid: 200, storage: 'local', force: false, unique: false }, { repo, node: nodePaths }));
      for (const [i, d] of vm.disks.entries()) {
        const restored = path.join(node.storageDir, 'images', restore.value.disks[i].volid.replace(/^local:/, ''));
        execFileSync('qemu-img', ['compare', '-f', d.format, '-F', d.format, d.path, restored], { stdio: 'ignore' });
      }
      // Live: the first guest read as soon as the VM runs, then the rest moves in unthrottled.
      const liveNode = { ...nodePaths, qemuServerLockDir: node.lockDir };
      let firstRead: Promise<number> | undefined;
      const live = await timed(async () => {
        const t0 = process.hrtime.bigint();
        const r = await liveRestore(
          { backupId: backup.id, vmid: 300, storage: 'local', force: false, unique: false },
          {
            repo,
            repositoryDir: repo.dir,
            node: liveNode,
            onEvent: (e) => {
              if (e.type !== 'running') return;
              firstRead = withQmp(e.qmp, (q) => hmp(q, 'qemu-io -d scsi0 "read 0 1M"'), { connectAttempts: 20, retryBaseDelayMs: 20, maxRetryDelayMs: 200 }).then((out) => {
                if (out.trim() !== '') throw new Error(`guest read: ${out}`);
                return Number(process.hrtime.bigint() - t0) / 1e6;
              });
              firstRead.catch(() => undefined);
            },
          },
        );
        return r;
      });
      await stopLiveVm(node.runDir, 300, path.join(node.runDir, '300.qmp'));
      if (!firstRead) throw new Error('the live restore never reported its VM running');
      const firstReadMs = await firstRead;
      for (const [i, d] of vm.disks.entries()) {
        const restored = path.join(node.storageDir, 'images', live.value.disks[i].volid.replace(/^local:/, ''));
        execFileSync('qemu-img', ['compare', '-f', d.format, '-F', d.format, d.path, restored], { stdio: 'ignore' });
      }
      const total = (2 * sizeMiB) / 1024;
      return [
        {
          name: `live restore, same VM: time to the guest's first read (1 MiB)`,
          value: +(firstReadMs / 1000).toFixed(2),
          unit: 's',
          baseline: `whole-VM restore ${(restore.ms / 1000).toFixed(2)} s`,
          ratio: +(firstReadMs / restore.ms).toFixed(3),
        },
        {
          name: `live restore, same VM: until it runs on its volumes`,
          value: +(live.ms / 1000).toFixed(2),
          unit: 's',
          baseline: `whole-VM restore ${(restore.ms / 1000).toFixed(2)} s`,
          ratio: +(live.ms / restore.ms).toFixed(2),
        },
        {
          name: `whole-VM restore, 2 disks (qcow2 + raw), ${total} GiB (half data)`,
          value: +(restore.ms / 1000).toFixed(2),
          unit: 's',
          baseline: `qemu-img convert -t writeback of both disks ${(baseline.ms / 1000).toFixed(2)} s`,
          ratio: +(restore.ms / baseline.ms).toFixed(2),
        },
      ];
    } finally {
      db.close();
    }
  } finally {
    await node.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  }
}
