/**
 * vzdump of one simulated VM as pve-manager's VZDump.pm + qemu-server's VZDump/QemuServer.pm run it:
 *   job-init, job-start,
 *   backup-start,
 *   stop:     pre-stop, guest pre-stop/post-stop (QEMU quits), then the backup starts QEMU paused
 *             (guest pre-start/post-start, NEW pid) and resumes it once the job runs;
 *             a VM that was not running is backed up the same way and stopped again afterwards
 *   suspend:  pre-stop, QEMU paused, resumed once the job runs
 *   snapshot: pre-stop, pre-restart, post-restart
 *   (the backup: `during`), backup-end (TARGET),
 *   stop/suspend of a running VM: pre-restart, post-restart,
 *   backup-abort on failure, log-end (LOGFILE), job-end.
 * The hook gets an emptied environment (no PATH). A non-zero exit fails the backup.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { QmpClient } from '../qmp/qmp-client';
import { runHook } from './hook-runner';
import type { NodeContext } from './pve-node';
import { SimVzdumpError } from './sim-errors';

export type VzdumpMode = 'stop' | 'suspend' | 'snapshot';

/** What vzdump needs of the VM: its identity, its node, and qm start/stop with their hooks. */
export interface VzdumpVm {
  readonly vmid: number;
  readonly name: string;
  readonly ctx: Pick<NodeContext, 'vzdumpConfPath' | 'dumpDir' | 'hookLog'>;
  running(): boolean;
  settle(): Promise<void>;
  qmp<T>(fn: (q: QmpClient) => Promise<T>): Promise<T>;
  stopWithHooks(): Promise<void>;
  startWithHooks(opts: { paused?: boolean }): Promise<void>;
}

export async function runVzdump(vm: VzdumpVm, mode: VzdumpMode, during?: () => Promise<void>): Promise<void> {
  await vm.settle();
  const script = readVzdumpScript(vm.ctx.vzdumpConfPath);
  const stamp = new Date().toISOString().replace(/[-:]/g, '_').replace('T', '-').slice(0, 19);
  const base = path.join(vm.ctx.dumpDir, `vzdump-qemu-${vm.vmid}-${stamp}`);
  const target = `${base}.vma.zst`;
  const logfile = `${base}.log`;
  const wasRunning = vm.running();
  const effMode: VzdumpMode = wasRunning ? mode : 'stop';
  const vz = async (phase: string, perGuest = true): Promise<void> => {
    if (!script) return;
    const env: Record<string, string> = { STOREID: 'local', DUMPDIR: vm.ctx.dumpDir };
    if (perGuest) {
      env.VMTYPE = 'qemu';
      env.HOSTNAME = vm.name;
      if (phase === 'backup-end') env.TARGET = target;
      if (phase === 'log-end') env.LOGFILE = logfile;
    }
    const argv = perGuest ? [phase, effMode, String(vm.vmid)] : [phase];
    const run = await runHook('vzdump', script, argv, phase, env);
    vm.ctx.hookLog.push(run);
    if (run.exitCode !== 0) {
      throw SimVzdumpError({ vmid: vm.vmid, mode: effMode, phase, reason: `hook exited ${run.exitCode}: ${run.stderr.trim()}` });
    }
  };

  await vz('job-init', false);
  try {
    await vz('job-start', false);
  } catch (err) {
    await vz('job-abort', false).catch(() => undefined);
    throw err;
  }

  let taskError: unknown;
  let restart = false;
  let startedForBackup = false;
  try {
    await vz('backup-start');
    if (effMode === 'stop') {
      if (wasRunning) {
        await vz('pre-stop');
        await vm.stopWithHooks();
        restart = true;
      }
      await vm.startWithHooks({ paused: true });
      if (wasRunning) await vm.qmp((q) => q.execute('cont'));
      else startedForBackup = true;
    } else if (effMode === 'suspend') {
      await vz('pre-stop');
      await vm.qmp((q) => q.execute('stop'));
      restart = true;
      await vm.qmp((q) => q.execute('cont'));
    } else {
      await vz('pre-stop');
      await vz('pre-restart');
      await vz('post-restart');
    }
    if (during) await during();
    await vz('backup-end');
  } catch (err) {
    taskError = err;
  }

  if (startedForBackup && vm.running()) await vm.stopWithHooks().catch(() => undefined);
  if (restart) {
    // Failures here are only warnings in vzdump.
    await (async () => {
      await vz('pre-restart');
      if (!vm.running()) await vm.startWithHooks({});
      await vz('post-restart');
    })().catch(() => undefined);
  }
  if (taskError !== undefined) await vz('backup-abort').catch(() => undefined);
  fs.writeFileSync(logfile, `INFO: ${taskError === undefined ? 'Finished' : 'Failed'} Backup of VM ${vm.vmid}\n`);
  await vz('log-end').catch(() => undefined);
  await vz('job-end', false).catch(() => undefined);
  if (taskError !== undefined) throw taskError;
}

function readVzdumpScript(confPath: string): string | undefined {
  const m = /^script:\s*(\S+)\s*$/m.exec(fs.readFileSync(confPath, 'utf8'));
  return m ? m[1] : undefined;
}
