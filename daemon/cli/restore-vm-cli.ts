/**
 * The whole-VM side of `pve-cbt restore`: `restore BACKUP --vmid ID --storage STORAGE [--format F]
 * [--force] [--unique] [--disk DISK]` (daemon/restore/restore-vm.ts does the work). Kept apart from
 * commands/restore.ts, which only adds these options and hands over when --vmid is given.
 * Progress: one bar (or line series) per disk on stderr; `--json`: the RestoreVmResult.
 */
import type { CommandContext, CommandResult, OptionDefinition } from './command';
import { CliUsageError } from './cli-errors';
import { withStores } from './local-stores';
import { parsePositiveInt, parseVmid } from './option-parsers';
import { runLiveRestore } from './restore-live-cli';
import { restoreVm } from '../restore/restore-vm';

export interface RestoreVmCliOptions {
  vmid?: number;
  storage?: string;
  unique?: boolean;
  disk?: string;
  to?: string;
  format?: 'raw' | 'qcow2';
  force?: boolean;
  live?: boolean;
  bwlimit?: number;
  detach?: boolean;
}

export const RESTORE_VM_OPTIONS: readonly OptionDefinition[] = [
  { flags: '--vmid <vmid>', description: 'restore the whole VM (like qmrestore) as this VMID; with --disk, replace that disk of the stopped VM', parse: parseVmid },
  { flags: '--storage <storage>', description: "with --vmid: the Proxmox storage to allocate the volumes on ('pvesm alloc')" },
  { flags: '--unique', description: 'with --vmid: new MAC addresses and smbios1 uuid, as qmrestore --unique' },
  { flags: '--live', description: 'with --vmid: start the VM at once on the backup served over NBD and move its data into the volumes while it runs (qmrestore --live-restore)' },
  { flags: '--bwlimit <KiB/s>', description: 'with --live: limit each disk\'s move to this rate', parse: parsePositiveInt },
  { flags: '--detach', description: 'with --live: start the restore task in the daemon and return with its id (pve-cbt task show|cancel)' },
];

export const RESTORE_VM_EXAMPLES: readonly string[] = [
  'pve-cbt restore vm/101/2026-11-25T02:00:03Z --vmid 9101 --storage local --unique',
  'pve-cbt restore vm/101/2026-11-25T02:00:03Z --vmid 101 --storage local --disk scsi1 --force',
  'pve-cbt restore vm/101/2026-11-25T02:00:03Z --vmid 9101 --storage local --live',
];

/** Disk mode (--disk/--to): the VM-only options would be ignored, so they are refused. */
export function refuseVmOptions(opts: RestoreVmCliOptions): void {
  const given = [opts.storage !== undefined && '--storage', opts.unique === true && '--unique', opts.live === true && '--live', opts.bwlimit !== undefined && '--bwlimit', opts.detach === true && '--detach'].filter((f) => f !== false);
  if (given.length) throw CliUsageError({ command: 'restore', problem: `${given.join(' and ')} only apply with --vmid`, hint: "see 'pve-cbt restore --help'" });
}

export async function runRestoreVm(ctx: CommandContext<RestoreVmCliOptions, { backup: string }>): Promise<CommandResult> {
  const { vmid, storage, disk, to } = ctx.opts;
  const usage = (problem: string): Error => CliUsageError({ command: 'restore', problem, hint: "see 'pve-cbt restore --help'" });
  if (vmid === undefined) throw usage('--vmid is required here');
  if (!storage) throw usage('--vmid needs --storage (the Proxmox storage to allocate the disks on)');
  if (to !== undefined) throw usage('--to and --vmid exclude each other: --to writes one disk to a path, --vmid restores into a VM');
  if (ctx.opts.live && disk) throw usage('--live restores a whole VM; --disk replaces one disk of a stopped VM: give one');
  if (ctx.opts.bwlimit !== undefined && !ctx.opts.live) throw usage('--bwlimit only applies with --live');
  if (ctx.opts.detach && !ctx.opts.live) throw usage('--detach only applies with --live (a live restore is a daemon task)');
  if (ctx.opts.live) return runLiveRestore(ctx, vmid, storage);
  const result = await withStores(ctx, (s) =>
    restoreVm(
      { backupId: ctx.args.backup, vmid, storage, format: ctx.opts.format, force: ctx.opts.force === true, unique: ctx.opts.unique === true, ...(disk ? { disk } : {}) },
      { repo: s.repo, node: s.config, logger: s.logger, signal: ctx.signal, progress: (d, size) => ctx.progress(`restore ${d}`, size) },
    ),
  );
  const lines = [
    disk
      ? `replaced ${disk} of VM ${vmid} from ${result.backup}: ${result.disks[0].volid}` + (result.keptAsUnused ? ` (old volume kept as ${result.keptAsUnused.key}: ${result.keptAsUnused.volid})` : '')
      : `restored VM ${vmid} from ${result.backup}: ${result.disks.map((d) => `${d.disk}=${d.volid}`).join(', ')}`,
    `config: ${result.conf}`,
    ...result.dropped.map((l) => `not restored: ${l.key}: ${l.value} (${l.reason})`),
    ...result.freed.map((v) => `freed old volume ${v}`),
    ...result.leftover.map((l) => `warning: could not free old volume ${l.volid}: ${l.reason}`),
  ];
  return { data: result, text: lines.join('\n') };
}
