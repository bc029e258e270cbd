/**
 * `pve-cbt status [VMID]`: per disk the format, the bitmap pve-cbt tracks, its state as the next
 * backup judges it (ledger, last backup and QEMU's own view, service/status-check.ts) and why, the
 * next backup's mode, the bytes QEMU has marked dirty since the last backup, and that backup; per VM
 * the task working on it now, with its progress. Times in ISO 8601 UTC. Asks the daemon,
 * which holds the ledger and talks to QEMU in short QMP sessions. Then the last verify of the whole
 * repository (the monthly verify job or `pve-cbt verify`): when, and how many backups were OK or bad,
 * read from the repository itself (`--json`: `{ vms, verify }`).
 */
import { LocalDirStorage } from '../../repository/storage';
import { readLastVerify, type LastVerify } from '../../repository/verify-record';
import { REQUESTS } from '../../service/requests';
import type { VmStatus } from '../../service/vm-status';
import { defineCommand } from '../command';
import { daemonRequest } from '../daemon-request';
import { parseVmid } from '../option-parsers';
import { formatTime } from '../format-time';
import { formatBytes } from '../progress';
import { progressText } from '../task-text';
import { textTable } from '../text-table';

function taskText(t: VmStatus['task']): string {
  if (!t) return '';
  return t.status === 'running' ? `, ${t.kind} task ${t.id} running since ${formatTime(t.startedAt)}: ${progressText(t.progress) || 'starting'}` : `, ${t.kind} task ${t.id} queued`;
}

export function statusText(list: VmStatus[]): string {
  if (list.length === 0) return 'no VMs on this node';
  return list
    .map((vm) => {
      const head = `VM ${vm.vmid}: ${vm.running ? `running (pid ${vm.qemuPid})` : 'stopped'}${vm.vzdumpBusy ? ', vzdump running' : ''}${taskText(vm.task)}${vm.qmpError ? `, QMP: ${vm.qmpError}` : ''}`;
      const rows = vm.disks.map((d) => [
        d.disk,
        d.format,
        d.bitmap ?? '-',
        d.state,
        d.dirtyBytes === null ? '-' : formatBytes(d.dirtyBytes),
        d.nextBackup?.mode ?? '-',
        d.lastBackup ? `${formatTime(d.lastBackup.time)} ${d.lastBackup.mode}` : '-',
        d.reason ?? '',
      ]);
      return `${head}\n${textTable(['DISK', 'FORMAT', 'BITMAP', 'STATE', 'DIRTY', 'NEXT', 'LAST BACKUP', 'REASON'], rows)}`;
    })
    .join('\n\n');
}

/** The last verify, or why it is not known. */
export type VerifyStatus = LastVerify | { error: string } | null;

export function verifyText(v: VerifyStatus): string {
  if (v === null) return 'last verify: never';
  if ('error' in v) return `last verify: unknown (${v.error})`;
  const counts = `${v.okBackups} backup(s) OK, ${v.badBackups} bad${v.badBackups ? ` (${v.problems} problem(s), see pve-cbt verify)` : ''}`;
  return `last verify: ${formatTime(v.time)} ${v.ok ? 'ok' : 'FAILED'}: ${counts}`;
}

async function lastVerify(repository: string): Promise<VerifyStatus> {
  try {
    return await readLastVerify(new LocalDirStorage(repository));
  } catch (err) {
    return { error: (err as NodeJS.ErrnoException).code ?? (err as Error).message };
  }
}

export const statusCommand = defineCommand<Record<string, never>, { vmid?: number }>({
  name: 'status',
  summary: 'show bitmap state, dirty bytes and last backup per disk, and the last verify',
  params: [{ name: 'vmid', description: 'only this VM', parse: parseVmid }],
  examples: ['pve-cbt status', 'pve-cbt status 101 --json'],
  async run(ctx) {
    const list = await daemonRequest<VmStatus[]>(ctx, REQUESTS.status, ctx.args.vmid === undefined ? {} : { vmid: ctx.args.vmid });
    const verify = await lastVerify(ctx.loadConfig().repository);
    return { data: { vms: list, verify }, text: `${statusText(list)}

${verifyText(verify)}` };
  },
});
