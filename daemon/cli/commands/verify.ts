/**
 * `pve-cbt verify [BACKUP]`: re-reads every page and chunk the backup(s) reference and checks
 * digests and checksums. Problems are listed with backup, disk and offset, affected backups are
 * marked bad in the catalog (the next backup of such a disk re-sends those blocks), exit code 5.
 * Creates no repository, stateDir or catalog (its result is also in the repository's verify.json).
 * JSON (beside `ok`, output.ts): `{ ok, backups: [{ id, ok, problems: [{ backupId, disk, offset, kind, digest,
 * problem }] }], chunksChecked, pagesChecked, durationMs }`.
 */
import { verifyReportView } from '../backup-view';
import { defineCommand } from '../command';
import { parseBackupIdArg } from '../option-parsers';
import { ExitCode } from '../exit-codes';
import { withStores } from '../local-stores';
import { formatDuration } from '../progress';
import { textTable } from '../text-table';

export const verifyCommand = defineCommand<Record<string, never>, { backup?: string }>({
  name: 'verify',
  summary: 'verify backups: every page and chunk is present and intact',
  params: [{ name: 'backup', description: 'only this backup (default: all)', parse: parseBackupIdArg }],
  examples: ['pve-cbt verify', 'pve-cbt verify vm/101/2026-11-25T02:00:03Z --json'],
  async run(ctx) {
    const report = await withStores(ctx, async (s) => {
      let bar: ReturnType<typeof ctx.progress> | undefined;
      try {
        return await s.repo.verify({
          backupId: ctx.args.backup,
          onProgress: (done, total) => {
            bar ??= ctx.progress('verify', total);
            bar.update(done, total);
          },
        });
      } catch (err) {
        bar?.finish('failed');
        throw err;
      } finally {
        bar?.finish();
      }
    }, { readOnly: true });
    const view = verifyReportView(report);
    const problems = view.backups.flatMap((b) => b.problems);
    const summary = `${report.backups.length} backup(s), ${report.pagesChecked} pages, ${report.chunksChecked} chunks checked in ${formatDuration(report.durationMs)}: ${report.ok ? 'all OK' : `${problems.length} problem(s)`}`;
    const text = report.ok
      ? summary
      : `${summary}\n${textTable(['BACKUP', 'DISK', 'OFFSET', 'KIND', 'PROBLEM', 'DIGEST'], problems.map((p) => [p.backupId, p.disk ?? '-', p.offset ?? '-', p.kind, p.problem, p.digest ?? '-']))}`;
    return { data: view, text, exitCode: report.ok ? undefined : ExitCode.Partial };
  },
});
