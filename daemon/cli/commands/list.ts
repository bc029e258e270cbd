/**
 * `pve-cbt list [VMID] [--all] [--refresh]`: without a VMID one row per VM (its backup group, as
 * `proxmox-backup-client list` shows them: count, first and last backup, bytes; catalog-groups.ts);
 * with a VMID, or `--all`, every committed backup, oldest first. Answered by the catalog after it
 * is brought up to the repository's backup folders (catalog/catalog-sync.ts: backups another node
 * wrote or removed are noticed; only VM folders that changed are listed, all with `--refresh`).
 * Read-only: a repository that does not exist is an error, never created, and a node without a
 * catalog file gets an in-memory one (local-stores.ts).
 * JSON (beside `ok`, output.ts): groups `{ groups: [{ vmid, backups, first, last, lastId, bytesRead, bytesStored }] }`;
 * backups `{ backups: [{ id, vmid, time, parent, disks: [...], verifyState }] }`.
 */
import type { BackupInfo } from '../../repository/repository';
import { backupInfoView } from '../backup-view';
import { formatTime } from '../format-time';
import { defineCommand } from '../command';
import { listBackupsFromCatalog, syncCatalog } from '../../catalog/catalog-sync';
import { listVmGroups, type VmGroup } from '../../catalog/catalog-groups';
import { displayBackupId } from '../../repository/backup-id';
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

export function groupView(g: VmGroup) {
  return { ...g, first: formatTime(g.first), last: formatTime(g.last), lastId: displayBackupId(g.lastId) };
}

export function groupsText(groups: VmGroup[]): string {
  if (groups.length === 0) return 'no backups';
  const rows = groups.map((g) => [g.vmid, g.backups, formatTime(g.first), displayBackupId(g.lastId), formatBytes(g.bytesRead), formatBytes(g.bytesStored)]);
  return textTable(['VMID', 'BACKUPS', 'FIRST', 'LAST', 'READ', 'STORED'], rows);
}

export const listCommand = defineCommand<{ all?: boolean; refresh?: boolean }, { vmid?: number }>({
  name: 'list',
  summary: 'list backup groups (one per VM), or the backups of one VM or all',
  params: [{ name: 'vmid', description: 'only this VM (every backup)', parse: parseVmid }],
  options: [
    { flags: '--all', description: 'every backup of every VM instead of one row per VM' },
    { flags: '--refresh', description: 'list every VM folder of the repository, not only the changed ones' },
  ],
  examples: ['pve-cbt list', 'pve-cbt list 101 --json', 'pve-cbt list --all'],
  async run(ctx) {
    const refresh = ctx.opts.refresh === true;
    if (ctx.args.vmid === undefined && ctx.opts.all !== true) {
      const groups = await withStores(
        ctx,
        async (s) => {
          await syncCatalog(s, undefined, { refresh });
          return listVmGroups(s.db);
        },
        { readOnly: true, skipQuickCheck: true },
      );
      return { data: { groups: groups.map(groupView) }, text: groupsText(groups) };
    }
    const list = await withStores(ctx, (s) => listBackupsFromCatalog(s, ctx.args.vmid, { refresh }), { readOnly: true, skipQuickCheck: true });
    return { data: { backups: list.map(backupInfoView) }, text: listText(list) };
  },
});
