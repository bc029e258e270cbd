/**
 * The live side of `pve-cbt restore`: `restore BACKUP --vmid ID --storage STORAGE --live
 * [--bwlimit KIB/S] [--format F] [--force] [--unique]` (daemon/restore/live-restore.ts does the
 * work). Runs in the foreground until the VM is on its volumes, as `qmrestore --live-restore` does.
 * Progress on stderr (not with --json): one line per step (volumes, export, the VM running, the
 * switch, the config) and one progress display per disk while its data moves. `--json`: the
 * LiveRestoreResult, `live.state: "complete"`, with the timeline; a failure is
 * CBT_RESTORE_LIVE_FAILED naming the phase, whether the VM was stopped and what was freed.
 */
import type { CommandContext, CommandResult } from './command';
import { withStores } from './local-stores';
import { formatDuration, type ProgressReporter } from './progress';
import { liveRestore, type LiveRestoreEvent } from '../restore/live-restore';
import type { RestoreVmCliOptions } from './restore-vm-cli';

function eventLine(vmid: number, e: LiveRestoreEvent): string | undefined {
  switch (e.type) {
    case 'allocated':
      return `live restore: ${e.disk} -> ${e.volid}`;
    case 'serving':
      return `live restore: serving ${e.disk} at ${e.uri}`;
    case 'running':
      return `live restore: VM ${vmid} runs on the backup (pid ${e.pid}, ${formatDuration(e.ms)} after the start); moving the data into its volumes`;
    case 'switched':
      return `live restore: ${e.disk} is on ${e.volid}`;
    case 'export-closed':
      return 'live restore: export closed, overlays removed';
    case 'failed':
      return `live restore: FAILED while ${e.phase}: ${e.reason}`;
    case 'stopped':
      return e.stopped ? `live restore: VM ${vmid} stopped` : `live restore: VM ${vmid} could NOT be stopped`;
    default:
      return undefined;
  }
}

export async function runLiveRestore(ctx: CommandContext<RestoreVmCliOptions, { backup: string }>, vmid: number, storage: string): Promise<CommandResult> {
  const bars = new Map<string, ProgressReporter>();
  const onEvent = (e: LiveRestoreEvent): void => {
    if (e.type === 'moving') bars.set(e.disk, ctx.progress(`live restore ${e.disk}`, e.size));
    else if (e.type === 'progress') bars.get(e.disk)?.update(e.done, e.total);
    else if (e.type === 'switched') bars.get(e.disk)?.finish();
    else if (e.type === 'failed') for (const b of bars.values()) b.finish('failed');
    const line = ctx.json ? undefined : eventLine(vmid, e);
    if (line) ctx.stderr.write(`${line}\n`);
  };
  const result = await withStores(ctx, (s) =>
    liveRestore(
      {
        backupId: ctx.args.backup,
        vmid,
        storage,
        format: ctx.opts.format,
        force: ctx.opts.force === true,
        unique: ctx.opts.unique === true,
        speed: (ctx.opts.bwlimit ?? 0) * 1024,
      },
      { repo: s.repo, repositoryDir: s.config.repository, node: s.config, logger: s.logger, signal: ctx.signal, onEvent },
    ),
  );
  const lines = [
    `restored VM ${vmid} live from ${result.backup}: ${result.disks.map((d) => `${d.disk}=${d.volid}`).join(', ')}`,
    `the guest ran after ${formatDuration(result.live.guestRunningMs)}, on its volumes after ${formatDuration(result.live.totalMs)} (QEMU pid ${result.live.pid}, still running)`,
    `config: ${result.conf}`,
    ...result.dropped.map((l) => `not restored: ${l.key}: ${l.value} (${l.reason})`),
    ...result.freed.map((v) => `freed old volume ${v}`),
    ...result.leftover.map((l) => `warning: could not free old volume ${l.volid}: ${l.reason}`),
  ];
  return { data: result, text: lines.join('\n') };
}
