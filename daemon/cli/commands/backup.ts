/**
 * `pve-cbt backup VMID...`: asks the daemon to back up these VMs now, through the same queue and
 * locks as scheduled jobs, and shows each disk's progress as the daemon streams it.
 * `--json` prints `{id, vmid, disks: [{disk, format, mode, reason, size, bytesRead, bytesStored,
 * durationMs}]}` for one VM, an array of those for several.
 */
import { CbtError } from '../../../shared/errors/cbt-error';
import { IpcConnectionLostError } from '../../../shared/ipc/ipc-errors';
import { REQUESTS, type BackupOutcome, type TaskProgress, type BackupResult } from '../../service/requests';
import { defineCommand } from '../command';
import { daemonRequest } from '../daemon-request';
import { ExitCode } from '../exit-codes';
import { parseVmid } from '../option-parsers';
import { formatBytes, formatDuration, type ProgressReporter } from '../progress';
import { textTable } from '../text-table';

/** A backup may take hours; the daemon bounds its own steps. */
const BACKUP_TIMEOUT_MS = 7 * 24 * 3600 * 1000;

export function backupText(r: BackupResult): string {
  const rows = r.disks.map((d) => [d.disk, d.format, d.mode, formatBytes(d.size), formatBytes(d.bytesRead), formatBytes(d.bytesStored), formatDuration(d.durationMs), d.reason]);
  return `VM ${r.vmid}: backup ${r.id}\n${textTable(['DISK', 'FORMAT', 'MODE', 'SIZE', 'READ', 'STORED', 'TIME', 'REASON'], rows)}`;
}

export const backupCommand = defineCommand<Record<string, never>, { vmids: number[] }>({
  name: 'backup',
  summary: 'back up VMs now (full, incremental or full-compare per disk)',
  params: [{ name: 'vmids', description: 'VM ids', required: true, variadic: true, parse: parseVmid }],
  examples: ['pve-cbt backup 101', 'pve-cbt backup 101 102 --json'],
  async run(ctx) {
    const bars = new Map<string, ProgressReporter>();
    let outcomes: BackupOutcome[];
    try {
      outcomes = await daemonRequest<BackupOutcome[]>(ctx, REQUESTS.backup, { vmids: ctx.args.vmids }, {
        timeoutMs: BACKUP_TIMEOUT_MS,
        onProgress: (raw) => {
          const p = raw as TaskProgress;
          const key = `${p.vmid}/${p.disk ?? ''}`;
          let bar = bars.get(key);
          if (!bar) bars.set(key, (bar = ctx.progress(`VM ${p.vmid} ${p.disk ?? ''} ${p.phase ?? ''}`.trim(), p.total)));
          bar.update(p.done, p.total);
        },
      });
    } catch (err) {
      // The daemon died mid-request: the backup may have committed (its next start finishes that).
      if (!IpcConnectionLostError.is(err)) throw err;
      const hint = 'the backup may have been committed; once the daemon is back, `pve-cbt list` and `pve-cbt status` show whether it was';
      throw new CbtError(err.code, err.message, { ...err.details, vmids: ctx.args.vmids, outcome: 'unknown', hint }, { cause: err });
    } finally {
      for (const bar of bars.values()) bar.finish();
    }
    const failed = outcomes.filter((o) => o.error);
    if (failed.length === outcomes.length && failed.length === 1) {
      const e = failed[0].error!;
      throw new CbtError(e.code, e.message, { vmid: failed[0].vmid, ...e.details });
    }
    const data = outcomes.map((o) => o.result ?? { vmid: o.vmid, error: o.error });
    const text = outcomes
      .map((o) => (o.result ? backupText(o.result) : `VM ${o.vmid}: FAILED ${o.error!.code}: ${o.error!.message}`))
      .join('\n\n');
    const exitCode = failed.length === 0 ? undefined : failed.length === outcomes.length ? ExitCode.Failure : ExitCode.Partial;
    return { data: data.length === 1 ? data[0] : data, text, exitCode };
  },
});
