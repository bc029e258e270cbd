/** `pve-cbt list [VMID]`: committed backups, oldest first, read from the repository itself. */
import type { BackupInfo } from '../../repository/repository';
import { defineCommand } from '../command';
import { withStores } from '../local-stores';
import { parseVmid } from '../option-parsers';
import { formatBytes } from '../progress';
import { textTable } from '../text-table';

export function listText(list: BackupInfo[]): string {
  if (list.length === 0) return 'no backups';
  const rows = list.map((b) => [
    b.id,
    b.vmid,
    b.time.toISOString(),
    b.disks.map((d) => `${d.name}:${d.mode}`).join(' '),
    formatBytes(b.disks.reduce((n, d) => n + d.bytesRead, 0)),
    formatBytes(b.disks.reduce((n, d) => n + d.bytesStored, 0)),
    b.verifyState,
  ]);
  return textTable(['ID', 'VMID', 'TIME', 'DISKS', 'READ', 'STORED', 'VERIFY'], rows);
}

export const listCommand = defineCommand<Record<string, never>, { vmid?: number }>({
  name: 'list',
  summary: 'list committed backups',
  params: [{ name: 'vmid', description: 'only this VM', parse: parseVmid }],
  examples: ['pve-cbt list', 'pve-cbt list 101 --json'],
  async run(ctx) {
    const list = await withStores(ctx, (s) => s.repo.listBackups(ctx.args.vmid));
    return { data: list.map((b) => ({ ...b, time: b.time.toISOString() })), text: listText(list) };
  },
});
