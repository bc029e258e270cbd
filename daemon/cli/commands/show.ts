/**
 * `pve-cbt show BACKUP`: one backup's manifest (disks, modes, reasons, bytes) and verify state.
 * Read-only. JSON `data`: the manifest (`id`, `vmid`, `time`, `parent`, `toolVersion`, `disks`,
 * `extra`, `checksum`, …) with `verify: { state, time, problems } | null`.
 */
import { manifestView, verifyStateView } from '../backup-view';
import { defineCommand } from '../command';
import { formatTime } from '../format-time';
import { parseBackupIdArg } from '../option-parsers';
import { withStores } from '../local-stores';
import { formatBytes, formatDuration } from '../progress';
import { textTable } from '../text-table';

export const showCommand = defineCommand<Record<string, never>, { backup: string }>({
  name: 'show',
  summary: 'show one backup: per disk mode, reason, bytes and bitmap',
  params: [{ name: 'backup', description: "backup id as printed by 'list' (vm/VMID/TIME)", required: true, parse: parseBackupIdArg }],
  examples: ['pve-cbt show vm/101/2026-11-25T02:00:03Z'],
  async run(ctx) {
    const { manifest, verify } = await withStores(ctx, async (s) => ({
      manifest: await s.repo.readManifest(ctx.args.backup),
      verify: await s.repo.readVerifyState(ctx.args.backup),
    }), { readOnly: true });
    const m = manifestView(manifest);
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
    ].join('\n');
    return { data: { ...m, verify: v }, text };
  },
});
