/**
 * `pve-cbt catalog rebuild`: replaces the catalog's backups, disks and verify results with what the
 * repository's manifests and verify.json files say (the repository is the source of truth). Job
 * history and the bitmap ledger are kept. A catalog SQLite cannot read is set aside first
 * (`catalog.sqlite.corrupt-<time>`) and a new one created, as every command and the daemon do when
 * they meet one; then the ledger is empty and every disk's next backup is a full-compare.
 * Safe beside a running daemon: the swap is one SQLite transaction.
 */
import { defineCommand } from '../command';
import { withStores } from '../local-stores';

const rebuildCommand = defineCommand({
  name: 'rebuild',
  summary: 'rebuild the catalog from the repository',
  description:
    'Reads every committed manifest and verify result in the repository and replaces the catalog tables of backups with them. A damaged catalog file is moved aside to catalog.sqlite.corrupt-<time> first.',
  examples: ['pve-cbt catalog rebuild', 'pve-cbt catalog rebuild --json'],
  async run(ctx) {
    const data = await withStores(ctx, async (s) => {
      if (s.catalogRebuilt) return { backups: s.catalogRebuilt.backups, setAside: s.catalogRebuilt.setAside, ledgerLost: true };
      const { backups } = await s.catalog.rebuildFromRepository(s.repo);
      s.logger.info('catalog rebuilt from the repository', { backups });
      return { backups, setAside: [] as string[], ledgerLost: false };
    });
    const lines = [`catalog rebuilt from the repository: ${data.backups} backup(s)`];
    if (data.setAside.length > 0) {
      lines.push(`the old catalog was unreadable and was moved aside: ${data.setAside.join(', ')}`);
      lines.push('job history and bitmap ledger were lost: the next backup of every disk is a full-compare');
    }
    return { data, text: lines.join('\n') };
  },
});

export const catalogCommand = defineCommand({
  name: 'catalog',
  summary: 'maintain the catalog (rebuild it from the repository)',
  subcommands: [rebuildCommand],
});
