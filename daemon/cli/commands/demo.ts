/**
 * `pve-cbt demo`: README's "run it" command on a machine without Proxmox — see daemon/demo/run-demo.ts.
 * Prints the story as it happens and ends with a table of backups, modes and bytes read.
 * JSON (beside `ok`, output.ts): `{ backups: [{ step, backupId, vmid, disk, format, mode, reason, bytesRead, bytesStored,
 * restoredByteExact, ... }] }`.
 */
import { runDemo } from '../../demo/run-demo';
import { displayBackupId } from '../../repository/backup-id';
import { defineCommand } from '../command';
import { formatBytes } from '../progress';
import { textTable } from '../text-table';

export const demoCommand = defineCommand<{ keep?: boolean }>({
  name: 'demo',
  summary: 'show pve-cbt on two simulated VMs (real QEMU, no Proxmox needed)',
  options: [{ flags: '--keep', description: 'keep the temporary directory (logs, repository, catalog)' }],
  examples: ['pve-cbt demo', 'pve-cbt demo --json'],
  async run(ctx) {
    const rows = await runDemo({ say: (l) => ctx.out.line(l), signal: ctx.signal, keep: ctx.opts.keep });
    const table = textTable(
      ['STEP', 'VMID', 'DISK', 'FORMAT', 'MODE', 'READ', 'STORED', 'RESTORE'],
      rows.map((r) => [r.step, r.vmid, r.disk, r.format, r.mode, formatBytes(r.bytesRead), formatBytes(r.bytesStored), r.restoredByteExact ? 'byte-exact' : 'MISMATCH']),
    );
    return { data: { backups: rows.map((r) => ({ ...r, backupId: displayBackupId(r.backupId) })) }, text: `\nBackups made in this demo:\n${table}` };
  },
});
