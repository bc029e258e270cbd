/**
 * `pve-cbt demo`: the whole product on a machine without Proxmox. A simulated node (real
 * qemu-system-x86_64 under TCG, see daemon/sim) runs two VMs — 101 with a qcow2 disk, 102 with a raw
 * one — with pve-cbt's real hooks attached and the real daemon on embedded defaults (SQLite
 * catalog, local repository) in a temporary directory. Every backup goes through the daemon's
 * socket like `pve-cbt backup`, and every backup is restored and compared byte for byte with the
 * disk as it was at backup time. Everything it started is removed at the end.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createPveNode, type PveNode, type SimVm } from '../sim/pve-node';
import { validateConfig } from '../config/load-config';
import { attachHook, installHooks } from '../hook-admin/hook-admin';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { formatBytes } from '../cli/progress';
import { closeLogger, createLogger } from '../log/create-logger';
import { hmp } from '../qmp/hmp';
import { runDaemon } from '../service/run-daemon';
import { REQUESTS, type DiskResult, type BackupOutcome, type BackupResult } from '../service/requests';
import type { Services } from '../service/services';
import { DemoBackupFailedError, DemoMismatchError } from './demo-errors';
import { simNodeConfig } from './sim-node-config';

export interface DemoRow extends DiskResult {
  step: string;
  backupId: string;
  vmid: number;
  restoredByteExact: boolean;
}

export interface DemoOptions {
  say(line: string): void;
  signal?: AbortSignal;
  keep?: boolean;
  baseDir?: string;
}

const MiB = 1024 * 1024;
const DISK_MIB = 64;

/** Reproducible "guest data": the demo prints the same numbers on every run. */
function seededData(seed: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  let block = Buffer.alloc(0);
  for (let off = 0, n = 0; off < length; off += block.length, n++) {
    block = crypto.createHash('sha512').update(`${seed}:${n}`).digest();
    block.copy(out, off);
  }
  return out;
}

function firstDifference(a: Buffer, b: Buffer): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

export async function runDemo(opts: DemoOptions): Promise<DemoRow[]> {
  const { say } = opts;
  const work = fs.mkdtempSync(path.join(opts.baseDir ?? os.tmpdir(), 'pve-cbt-demo-'));
  let node: PveNode | undefined;
  const stopDaemon = new AbortController();
  let daemonDone: Promise<void> | undefined;
  const logger = createLogger({ logDir: path.join(work, 'log'), console: false, defaultMeta: { component: 'daemon' } });
  try {
    node = await createPveNode({ baseDir: work });
    say(`Simulated Proxmox node in ${node.root} (real QEMU under TCG, no guest OS).`);
    const configFile = path.join(work, 'config.json');
    const raw = simNodeConfig(node, work);
    fs.writeFileSync(configFile, `${JSON.stringify(raw, null, 2)}\n`);
    const config = validateConfig(raw, configFile);

    let services!: Services;
    const ready = new Promise<void>((resolve, reject) => {
      daemonDone = runDaemon({ config, logger, signal: stopDaemon.signal, onReady: (s) => ((services = s), resolve()) });
      daemonDone.catch(reject);
    });
    await ready;
    say(`Daemon running on embedded defaults: SQLite catalog in ${config.stateDir}, repository in ${config.repository}.`);

    const hookOpts = { root: node.root, nodePath: process.execPath, distDir: path.resolve(__dirname, '..', '..'), stateDir: config.stateDir, configPath: configFile };
    installHooks(hookOpts);
    const vmQcow = await node.addVm({ vmid: 101, name: 'qcow2-vm', disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: DISK_MIB }] });
    const vmRaw = await node.addVm({ vmid: 102, name: 'raw-vm', disks: [{ key: 'scsi0', format: 'raw', sizeMiB: DISK_MIB }] });
    const vms = [vmQcow, vmRaw];
    for (const vm of vms) {
      attachHook(hookOpts, vm.vmid);
      // 16 MiB of guest data in 1 MiB extents with holes between them: a full reads only these.
      for (let i = 0; i < 16; i++) await vm.writeData('scsi0', i * 2 * MiB, seededData(vm.vmid * 100 + i, MiB));
      await vm.start();
    }
    say(`VM 101 (qcow2) and VM 102 (raw), ${DISK_MIB} MiB disks with 16 MiB of data, started with pve-cbt's hookscript attached.`);

    const rows: DemoRow[] = [];
    const backup = async (step: string, list: SimVm[]): Promise<void> => {
      opts.signal?.throwIfAborted();
      const refs = new Map<number, string>();
      for (const vm of list) refs.set(vm.vmid, await vm.snapshotReference('scsi0'));
      const outcomes = await ipcRequest<BackupOutcome[]>(config.socketPath, REQUESTS.backup, { vmids: list.map((v) => v.vmid) }, { timeoutMs: 600_000 });
      for (const o of outcomes) {
        if (!o.result) throw DemoBackupFailedError({ vmid: o.vmid, code: o.error?.code ?? '?', message: o.error?.message ?? '' });
        const r: BackupResult = o.result;
        for (const d of r.disks) {
          const target = path.join(work, `restore-${r.vmid}-${d.disk}.raw`);
          await services.repo.restoreDisk(r.id, d.disk, { path: target, format: 'raw' });
          const diff = firstDifference(fs.readFileSync(target), fs.readFileSync(refs.get(r.vmid)!));
          fs.rmSync(target);
          if (diff !== -1) throw DemoMismatchError({ backupId: r.id, disk: d.disk, firstDifference: diff });
          rows.push({ ...d, step, backupId: r.id, vmid: r.vmid, restoredByteExact: true });
          say(`  VM ${r.vmid} ${d.disk} (${d.format.padEnd(5)}): ${d.mode.padEnd(12)} read ${formatBytes(d.bytesRead)} of ${formatBytes(d.size)}, stored ${formatBytes(d.bytesStored)}; restore byte-exact\n      why: ${d.reason}`);
        }
      }
    };

    say('\n1. First backup: full, reading only allocated data.');
    await backup('first backup', vms);

    say('\n2. The guests write 5 blocks of 64 KiB each; the next backup reads only those.');
    for (const vm of vms) for (let i = 0; i < 5; i++) await vm.write('scsi0', { pattern: 0x10 + i, offset: (3 + i * 7) * MiB + 65536 * i, length: 65536 });
    await backup('after guest writes', vms);

    say('\n3. `qm reboot` of both VMs (a new QEMU process): the raw disk\'s bitmap is gone, qcow2\'s persists.');
    for (const vm of vms) await vm.reboot();
    for (const vm of vms) await vm.write('scsi0', { pattern: 0x77, offset: 40 * MiB, length: 65536 });
    await backup('after reboot', vms);

    say('\n4. VM 101 writes and syncs, then its QEMU is killed (kill -9); qmeventd runs post-stop; the VM is started again.');
    await vmQcow.write('scsi0', { pattern: 0x99, offset: 50 * MiB, length: 131072 });
    // Like a guest's sync: writes that allocated qcow2 clusters are otherwise lost with QEMU's
    // unflushed metadata cache, as on a real crash, and the reference would no longer hold.
    await vmQcow.qmp((q) => hmp(q, 'qemu-io -d scsi0 "flush"'));
    await vmQcow.crash();
    await vmQcow.start();
    await backup('after crash', [vmQcow]);

    say('\n5. One more round of writes: incrementals again on both.');
    for (const vm of vms) await vm.write('scsi0', { pattern: 0x55, offset: 60 * MiB, length: 65536 });
    await backup('back to incrementals', vms);

    say('\n6. Verify every chunk and page of every backup.');
    const report = await services.repo.verify();
    say(`  ${report.backups.length} backups, ${report.pagesChecked} pages, ${report.chunksChecked} chunks: ${report.ok ? 'all OK' : 'PROBLEMS FOUND'}`);
    if (!report.ok) throw DemoBackupFailedError({ vmid: 0, code: 'CBT_DEMO_VERIFY', message: JSON.stringify(report.backups.filter((b) => !b.ok)) });
    return rows;
  } finally {
    stopDaemon.abort('demo finished');
    await daemonDone?.catch(() => undefined);
    await closeLogger(logger);
    await node?.cleanup();
    if (!opts.keep) fs.rmSync(work, { recursive: true, force: true });
    else say(`Kept ${work}.`);
  }
}
