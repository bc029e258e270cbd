/**
 * `pve-cbt restore BACKUP --disk DISK --to PATH [--format raw|qcow2] [--force]`: one disk,
 * byte-exact and sparse (zero chunks become holes), written 0600. `--to -` writes raw bytes to
 * stdout (refused when stdout is a terminal). The target appears under its name only when the
 * restore is complete; a missing or corrupt chunk fails with the offsets. A disk the backup does not
 * have is refused before anything starts, naming the disks it has. Creates no repository.
 * JSON (beside `ok`, output.ts): `{ backup, disk, to, format, bytes }`.
 *
 * The target is checked before anything is written and again just before it is replaced
 * (daemon/restore/restore-target-guard.ts): a disk of a running VM or a file some process has
 * open is never written; a stopped VM's volume or an existing file or device only with --force.
 * With --vmid it restores into a VM instead, like qmrestore (../restore-vm-cli.ts).
 */
import { CliStdoutIsTerminalError, CliUsageError } from '../cli-errors';
import { displayBackupId } from '../../repository/backup-id';
import { RepoDiskNotFoundError } from '../../repository/repository-errors';
import { defineCommand } from '../command';
import { parseBackupIdArg } from '../option-parsers';
import { withStores } from '../local-stores';
import { formatBytes } from '../progress';
import { restoreTargetGuard } from '../../restore/restore-target-guard';
import { RESTORE_VM_EXAMPLES, RESTORE_VM_OPTIONS, refuseVmOptions, runRestoreVm, type RestoreVmCliOptions } from '../restore-vm-cli';

interface RestoreOptions extends RestoreVmCliOptions {
  disk: string;
  to: string;
  format?: 'raw' | 'qcow2';
  force?: boolean;
}

export const restoreCommand = defineCommand<RestoreOptions, { backup: string }>({
  name: 'restore',
  summary: 'restore one disk of a backup to a file, a block device or stdout, or a whole VM',
  usage: '[options] <backup> (--disk <disk> --to <path> | --vmid <vmid> --storage <storage> [--live])',
  params: [{ name: 'backup', description: "backup id as printed by 'list'", required: true, parse: parseBackupIdArg }],
  options: [
    { flags: '--disk <disk>', description: 'disk name, e.g. scsi0' },
    { flags: '--to <path>', description: "target file or device; '-' for stdout (raw)" },
    { flags: '--format <format>', description: "target format (default: raw; with --vmid: each disk's own)", choices: ['raw', 'qcow2'] },
    { flags: '--force', description: "replace an existing file or device, also a stopped VM's disk (never a running VM's, never one in use); with --vmid: an existing VM" },
    ...RESTORE_VM_OPTIONS,
  ],
  examples: ['pve-cbt restore vm/101/2026-11-25T02:00:03Z --disk scsi0 --to /var/tmp/101-scsi0.raw', 'pve-cbt restore vm/101/2026-11-25T02:00:03Z --disk scsi0 --to - | sha256sum', ...RESTORE_VM_EXAMPLES],
  async run(ctx) {
    if (ctx.opts.vmid !== undefined) return runRestoreVm(ctx);
    refuseVmOptions(ctx.opts);
    const { disk, to } = ctx.opts;
    const format = ctx.opts.format ?? 'raw';
    const force = ctx.opts.force === true;
    if (!disk || !to) {
      throw CliUsageError({ command: 'restore', problem: 'both --disk and --to are required', hint: "see 'pve-cbt restore --help'" });
    }
    const toStdout = to === '-';
    if (toStdout && ctx.stdout.isTTY === true) {
      throw CliStdoutIsTerminalError({ command: 'restore', hint: `pipe it (--to - | sha256sum), redirect it (--to - > FILE), or give a file: --to /var/tmp/${disk}.raw` });
    }
    const backup = displayBackupId(ctx.args.backup);
    const result = await withStores(ctx, async (s) => {
      const manifest = await s.repo.readManifest(ctx.args.backup);
      const entry = manifest.disks.find((d) => d.name === disk);
      if (!entry) {
        const has = manifest.disks.map((d) => d.name);
        throw RepoDiskNotFoundError({ backupId: ctx.args.backup, disk, has, hint: `this backup has ${has.length ? has.join(', ') : 'no disks'} ('pve-cbt show ${backup}')` });
      }
      const checkTarget = restoreTargetGuard(to, s.config, { force });
      if (!toStdout) await checkTarget();
      const bar = toStdout ? undefined : ctx.progress(`restore ${disk}`, entry.size);
      try {
        const r = await s.repo.restoreDisk(ctx.args.backup, disk, toStdout ? { stream: ctx.stdout } : { path: to, format, overwrite: force }, {
          onProgress: (done, total) => bar?.update(done, total),
          beforeCommit: toStdout ? undefined : checkTarget,
        });
        bar?.finish();
        return r;
      } finally {
        bar?.finish('failed');
      }
    }, { readOnly: true });
    if (toStdout) return;
    return { data: { backup, disk, to, format, bytes: result.bytes }, text: `restored ${disk} of ${backup} to ${to} (${format}, ${formatBytes(result.bytes)})` };
  },
});
