/**
 * `pve-cbt list [VMID]`: committed backups, oldest first, answered by the catalog after it is
 * brought up to the repository's backup folders (catalog/catalog-sync.ts: backups another node
 * wrote or removed are noticed). Read-only: a repository that does not exist is an error, never
 * created, and a node without a catalog file gets an in-memory one (local-stores.ts).
 * JSON (beside `ok`, output.ts): `{ backups: [{ id, vmid, time, parent, disks: [...], verifyState }] }`.
 */
import type { BackupInfo } from '../../repository/repository';
import { backupInfoView } from '../backup-view';
import { formatTime } from '../format-time';
import { defineCommand } from '../command';
import { listBackupsFromCatalog } from '../../catalog/catalog-sync';
import { withStores } from '../local-stores';
import { parseVmid } from '../option-parsers';
import { formatBytes } from '../progress';
import { textTable } from '../text-table';

export function listText(list: BackupInfo[]): string {
  if (list.length === 0) return 'no backups';
  const rows = list.map((b) => [
    backupInfoView(b).id,
    b.vmid,
    formatTime(b.time),
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
    const list = await withStores(ctx, (s) => listBackupsFromCatalog(s, ctx.args.vmid), { readOnly: true });
    return { data: { backups: list.map(backupInfoView) }, text: listText(list) };
  },
});
