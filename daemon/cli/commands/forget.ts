/**
 * `pve-cbt forget BACKUP`: removes one backup, like `proxmox-backup-client forget`. Its folder goes
 * at once (the manifest first, so it stops existing atomically); the chunks only it referenced are
 * freed by the next `gc`. As `prune`, it does not ask: it is one named backup, and `list` shows it.
 *
 * Any backup may go, the newest of a disk too: every backup's index is complete (an incremental
 * clones its base's index and overwrites the changed chunks), so no other backup depends on it.
 * After the newest backup of a disk is forgotten, the next backup of that disk is a full-compare
 * (the bitmap it would read belongs to the forgotten backup; mode-decision.ts `ledger-mismatch`),
 * never a wrong incremental. A backup a running backup uses as its base is refused
 * (CBT_REPO_BACKUP_IN_USE) and stays whole.
 *
 * JSON (beside `ok`, output.ts): `{ id, vmid, removed: true }`.
 */
import { displayBackupId, parseBackupId } from '../../repository/backup-id';
import { defineCommand } from '../command';
import { withStores } from '../local-stores';
import { parseBackupIdArg } from '../option-parsers';

export const forgetCommand = defineCommand<Record<string, never>, { backup: string }>({
  name: 'forget',
  summary: 'remove one backup (its chunks go at the next gc)',
  params: [{ name: 'backup', description: "backup id as printed by 'list' (vm/VMID/TIME)", required: true, parse: parseBackupIdArg }],
  examples: ['pve-cbt forget vm/101/2026-11-25T02:00:03Z', 'pve-cbt forget vm/101/2026-11-25T02:00:03Z --json'],
  async run(ctx) {
    const id = ctx.args.backup;
    await withStores(ctx, (s) => s.repo.removeBackup(id));
    const shown = displayBackupId(id);
    return { data: { id: shown, vmid: parseBackupId(id).vmid, removed: true }, text: `removed backup ${shown}; its data is freed by the next 'pve-cbt gc'` };
  },
});
