/**
 * `pve-cbt repository upgrade`: converts the configured repository from format 1 (one file per
 * blob) to format 2 (pack files) in place (daemon/repository/upgrade-repository.ts). Resumable:
 * after a crash or Ctrl-C, run it again and it goes on from its last sealed pack. Backups wait
 * while it runs (CBT_REPO_UPGRADE_IN_PROGRESS); it refuses to start while one runs
 * (CBT_REPO_UPGRADE_BUSY). A repository already at format 2 is left alone (exit 0).
 * Progress counts shard folders (512). Damaged blobs that could not be copied are listed and the
 * exit code is then 5 (partial), as verify's findings.
 * JSON (beside `ok`, output.ts): `{ from, to, alreadyUpgraded, resumed, packsSealed, blobsCopied,
 * bytesCopied, blobsSkipped: [{ cursor, reason }], durationMs }`.
 */
import { defineCommand } from '../command';
import { ExitCode } from '../exit-codes';
import { withStores } from '../local-stores';
import { formatBytes, formatDuration } from '../progress';
import { textTable } from '../text-table';

const upgradeSub = defineCommand({
  name: 'upgrade',
  summary: 'upgrade the repository to format 2 (pack files), in place and resumable',
  examples: ['pve-cbt repository upgrade', 'pve-cbt repository upgrade --json'],
  async run(ctx) {
    const report = await withStores(ctx, async (s) => {
      let bar: ReturnType<typeof ctx.progress> | undefined;
      try {
        return await s.repo.upgrade({
          onProgress: (done, total, phase) => {
            if (phase !== 'copy') return;
            bar ??= ctx.progress('upgrade copy', total, { unit: 'items' });
            bar.update(done, total);
          },
        });
      } catch (err) {
        bar?.finish('failed');
        throw err;
      } finally {
        bar?.finish();
      }
    });
    if (report.alreadyUpgraded) return { data: report, text: `repository is already ${report.to}: nothing to do` };
    const summary = `${report.resumed ? 'resumed and ' : ''}upgraded ${report.from} → ${report.to}: ${report.blobsCopied} blobs (${formatBytes(report.bytesCopied)}) in ${report.packsSealed} packs in ${formatDuration(report.durationMs)}`;
    if (!report.blobsSkipped.length) return { data: report, text: summary };
    const text = `${summary}\n${report.blobsSkipped.length} damaged blob(s) not copied (verify reports the backups that need them):\n${textTable(['BLOB', 'PROBLEM'], report.blobsSkipped.map((b) => [b.cursor, b.reason]))}`;
    return { data: report, text, exitCode: ExitCode.Partial };
  },
});

export const repositoryCommand = defineCommand({
  name: 'repository',
  summary: 'repository maintenance (upgrade)',
  subcommands: [upgradeSub],
});
