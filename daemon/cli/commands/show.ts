/**
 * `pve-cbt show BACKUP`: one backup's manifest (disks, modes, reasons, bytes), verify state and the
 * VM config kept with it; `--vm-config` / `--firewall` print that config raw (saved-config-text.ts).
 * Read-only. JSON (beside `ok`, output.ts): the manifest (`id`, `vmid`, `time`, `parent`, `toolVersion`, `disks`,
 * `extra`, `checksum`, `config`, …) with `verify: { state, time, problems } | null`.
 */
import { manifestView, verifyStateView } from '../backup-view';
import { defineCommand } from '../command';
import { formatTime } from '../format-time';
import { parseBackupIdArg } from '../option-parsers';
import { withStores } from '../local-stores';
import { formatBytes, formatDuration } from '../progress';
import { textTable } from '../text-table';
import { rawSavedConfig, savedConfigBlock } from '../saved-config-text';

export const showCommand = defineCommand<{ vmConfig?: boolean; firewall?: boolean }, { backup: string }>({
  name: 'show',
  summary: 'show one backup: per disk mode, reason, bytes and bitmap',
  params: [{ name: 'backup', description: "backup id as printed by 'list' (vm/VMID/TIME)", required: true, parse: parseBackupIdArg }],
  options: [
    // Not `--config`: that is the global option naming pve-cbt's own config file.
    { flags: '--vm-config', description: 'print the VM config (VMID.conf) kept with the backup, raw' },
    { flags: '--firewall', description: 'print the firewall file (VMID.fw) kept with the backup, raw' },
  ],
  examples: ['pve-cbt show vm/101/2026-11-25T02:00:03Z', 'pve-cbt show vm/101/2026-11-25T02:00:03Z --vm-config'],
  async run(ctx) {
    const { manifest, verify } = await withStores(ctx, async (s) => ({
      manifest: await s.repo.readManifest(ctx.args.backup),
      verify: await s.repo.readVerifyState(ctx.args.backup),
    }), { readOnly: true });
    const m = manifestView(manifest);
    if (ctx.opts.vmConfig || ctx.opts.firewall) {
      const text = rawSavedConfig(manifest, { conf: ctx.opts.vmConfig === true, firewall: ctx.opts.firewall === true });
      return { data: { backup: m.id, vmid: manifest.vmid, config: manifest.config }, text };
    }
    const v = verifyStateView(verify);
    const rows = manifest.disks.map((d) => [
      d.name,
      d.format,
      formatBytes(d.size),
      d.mode,
      formatBytes(d.bytesRead),
      formatBytes(d.bytesStored),
      formatDuration(d.durationMs),
      d.consistency ?? '-',
      d.bitmap ? d.bitmap.name : '-',
      d.reason,
    ]);
    const text = [
      `backup ${m.id} of VM ${m.vmid} at ${formatTime(m.time)}`,
      `parent: ${m.parent ?? '-'}   tool: ${m.toolVersion}   verify: ${v ? `${v.state} (${v.time})` : 'never'}`,
      textTable(['DISK', 'FORMAT', 'SIZE', 'MODE', 'READ', 'STORED', 'TIME', 'CONSISTENCY', 'BITMAP', 'REASON'], rows),
      savedConfigBlock(manifest),
    ].join('\n');
    return { data: { ...m, verify: v }, text };
  },
});
