/**
 * `pve-cbt backup VMID... | --all | --pool NAME [--mode auto|full]`: asks the daemon to back up
 * these VMs now, through the same queue and locks as scheduled jobs, and shows each disk's progress
 * as the daemon streams it. `--all` and `--pool` are resolved by the daemon from the node's VM
 * configs and /etc/pve/user.cfg. `--mode full` reads every disk in full whatever its bitmap says
 * (code `forced-full` in the manifest's reason); `auto` (default) decides per disk. This is not
 * vzdump's `--mode` (snapshot/suspend/stop): running VMs are always read from a point-in-time view.
 * A VM named twice is a usage error (a typo for another VM, more likely than a wish for two backups).
 * Tasks, Ctrl-C (cancels cleanly, exit 130) and `--detach` (`data: { tasks: [{vmid, taskId}] }`): backup-tasks.ts.
 *
 * JSON (beside `ok`, output.ts): `{ backups: [{ vmid, ok: true, id, disks: [{ disk, format, mode, reason, size,
 * bytesRead, bytesStored, durationMs, consistency }] } | { vmid, ok: false, error: { code, message,
 * details } }], disks: [{ vmid, disk, format, mode, ... }] }`, one entry per VM, the same for one VM or many;
 * `disks` lists every backed-up disk of every VM with its `vmid` (a script that backs up one VM, as the
 * peers bench does, reads `.disks` directly).
 */
import { CbtError } from '../../../shared/errors/cbt-error';
import { IpcConnectionLostError } from '../../../shared/ipc/ipc-errors';
import type { BackupOutcome, BackupRequest, BackupResult } from '../../service/requests';
import { detachedText, followBackups, startBackups } from '../backup-tasks';
import { backupResultView } from '../backup-view';
import { CliUsageError } from '../cli-errors';
import { defineCommand } from '../command';
import { ExitCode } from '../exit-codes';
import { parseVmid } from '../option-parsers';
import { formatBytes, formatDuration, type ProgressReporter } from '../progress';
import { textTable } from '../text-table';

interface BackupCliOptions {
  all?: boolean;
  pool?: string;
  mode: 'auto' | 'full';
  detach?: boolean;
}

export function backupText(r: BackupResult): string {
  const rows = r.disks.map((d) => [d.disk, d.format, d.mode, formatBytes(d.size), formatBytes(d.bytesRead), formatBytes(d.bytesStored), formatDuration(d.durationMs), d.reason]);
  return `VM ${r.vmid}: backup ${backupResultView(r).id}\n${textTable(['DISK', 'FORMAT', 'MODE', 'SIZE', 'READ', 'STORED', 'TIME', 'REASON'], rows)}`;
}

/** The request for the command line, or a usage error: exactly one way of naming VMs, none twice. */
export function backupRequest(vmids: readonly number[] | undefined, opts: BackupCliOptions): BackupRequest {
  const ways = [vmids?.length ? 'VM ids' : '', opts.all ? '--all' : '', opts.pool !== undefined ? '--pool' : ''].filter(Boolean);
  const usage = (problem: string) => CliUsageError({ command: 'backup', problem, hint: "see 'pve-cbt backup --help'" });
  if (ways.length === 0) throw usage('name the VMs to back up: VM ids, --all or --pool NAME');
  if (ways.length > 1) throw usage(`${ways.join(' and ')} cannot be combined: give one of them`);
  const twice = (vmids ?? []).filter((v, i, a) => a.indexOf(v) !== i);
  if (twice.length) throw usage(`VM ${[...new Set(twice)].join(', ')} is named more than once`);
  const mode = opts.mode === 'full' ? { mode: 'full' as const } : {};
  if (opts.all) return { all: true, ...mode };
  if (opts.pool !== undefined) return { pool: opts.pool, ...mode };
  return { vmids: [...(vmids ?? [])], ...mode };
}

function outcomeView(o: BackupOutcome) {
  return o.result ? { ok: true, ...backupResultView(o.result) } : { vmid: o.vmid, ok: false, error: o.error };
}

export const backupCommand = defineCommand<BackupCliOptions, { vmids?: number[] }>({
  name: 'backup',
  summary: 'back up VMs now (full, incremental or full-compare per disk)',
  usage: '[options] <vmid...> | --all | --pool <name>',
  params: [{ name: 'vmids', description: 'VM ids', variadic: true, parse: parseVmid }],
  options: [
    { flags: '--all', description: 'every VM of this node' },
    { flags: '--pool <name>', description: 'the VMs of this Proxmox pool (/etc/pve/user.cfg) on this node' },
    { flags: '--mode <mode>', description: "'full' reads every disk in full whatever its bitmap says; 'auto' decides per disk", choices: ['auto', 'full'], default: 'auto' },
    { flags: '--detach', description: 'start the backups and return with their task ids (see pve-cbt task)' },
  ],
  description:
    'Back up VMs now, one daemon task per VM. Ctrl-C cancels them cleanly (no backup written, bitmaps kept; exit 130); --detach returns at once with the task ids.',
  examples: ['pve-cbt backup 101', 'pve-cbt backup 101 102 --json', 'pve-cbt backup --pool production', 'pve-cbt backup --all --mode full', 'pve-cbt backup 101 --detach'],
  async run(ctx) {
    const request = backupRequest(ctx.args.vmids, ctx.opts);
    if (ctx.opts.detach) {
      const started = await startBackups(ctx, request);
      return { data: { tasks: started }, text: detachedText(started) };
    }
    const bars = new Map<string, ProgressReporter>();
    let outcomes: BackupOutcome[];
    let cancelled: boolean;
    try {
      const started = await startBackups(ctx, request);
      ({ outcomes, cancelled } = await followBackups(ctx, started, (p) => {
        if (p.disk === undefined) return;
        const key = `${p.vmid}/${p.disk}`;
        let bar = bars.get(key);
        if (!bar) bars.set(key, (bar = ctx.progress(`VM ${p.vmid} ${p.disk} ${p.phase ?? ''}`.trim(), p.total)));
        bar.update(p.done, p.total, p.chunkBytes === undefined ? undefined : { chunkBytes: p.chunkBytes, reusedBytes: p.reusedBytes ?? 0 });
      }));
    } catch (err) {
      for (const bar of bars.values()) bar.finish('failed');
      // The daemon died mid-request: the backup may have committed (its next start finishes that).
      if (!IpcConnectionLostError.is(err)) throw err;
      const hint = 'the backup may have been committed; once the daemon is back, `pve-cbt list` and `pve-cbt status` show whether it was';
      throw new CbtError(err.code, err.message, { ...err.details, ...request, outcome: 'unknown', hint }, { cause: err });
    }
    // A VM that failed gets no `0 B in 0s` final line: its error says what happened.
    const failedVms = new Set(outcomes.filter((o) => o.error).map((o) => o.vmid));
    for (const [key, bar] of bars) bar.finish(failedVms.has(Number(key.split('/')[0])) ? 'failed' : 'done');
    const bad = outcomes.filter((o) => o.error);
    const data = { backups: outcomes.map(outcomeView), disks: outcomes.flatMap((o) => (o.result ? o.result.disks.map((d) => ({ vmid: o.vmid, ...d })) : [])) };
    if (bad.length === 1 && outcomes.length === 1) {
      const e = bad[0].error!;
      return { data, error: new CbtError(e.code, e.message, { vmid: bad[0].vmid, ...e.details }) };
    }
    const text = outcomes
      .map((o) => (o.result ? backupText(o.result) : `VM ${o.vmid}: FAILED ${o.error!.code}: ${o.error!.message}`))
      .join('\n\n');
    const exitCode = bad.length === 0 ? undefined : cancelled ? ExitCode.Cancelled : bad.length === outcomes.length ? ExitCode.Failure : ExitCode.Partial;
    return { data, text, exitCode };
  },
});
