/** `pve-cbt show BACKUP`: one backup's manifest (disks, modes, reasons, bytes) and verify state. */
import { defineCommand } from '../command';
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
    }));
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
      `backup ${manifest.id} of VM ${manifest.vmid} at ${manifest.time}`,
      `parent: ${manifest.parent ?? '-'}   tool: ${manifest.toolVersion}   verify: ${verify ? `${verify.state} (${verify.time})` : 'never'}`,
      textTable(['DISK', 'FORMAT', 'SIZE', 'MODE', 'READ', 'STORED', 'TIME', 'CONSISTENCY', 'BITMAP', 'REASON'], rows),
    ].join('\n');
    return { data: { ...manifest, verify }, text };
  },
});
