/**
 * `pve-cbt gc`: removes chunks and index pages no committed backup references, and partial
 * backups left by interrupted writers. Exclusive: fails fast while another GC runs; backups being
 * written are protected by the grace period (see daemon/repository/garbage-collect.ts).
 * Progress counts backups (mark) and shards (sweep), not bytes. JSON (beside `ok`, output.ts): `{ cutoff, manifests,
 * pagesMarked, chunksMarked, chunksRemoved, chunkBytesRemoved, pagesRemoved, pageBytesRemoved,
 * unreadablePages, partialsRemoved, tempFilesRemoved, durationMs }`, and on a format-2 repository
 * also `packsRemoved, packBytesRemoved, repackCandidates` (packs are removed whole).
 */
import { gcReportView } from '../backup-view';
import { defineCommand } from '../command';
import { withStores } from '../local-stores';
import { formatBytes, formatDuration } from '../progress';

export const gcCommand = defineCommand({
  name: 'gc',
  summary: 'garbage-collect unreferenced chunks and pages',
  examples: ['pve-cbt gc', 'pve-cbt gc --json'],
  async run(ctx) {
    const report = await withStores(ctx, async (s) => {
      let bar: ReturnType<typeof ctx.progress> | undefined;
      let barPhase = '';
      try {
        return await s.repo.gc({
          onProgress: (done, total, phase) => {
            if (phase !== barPhase) {
              bar?.finish();
              barPhase = phase;
              bar = ctx.progress(`gc ${phase}`, total, { unit: 'items' });
            }
            bar?.update(done, total);
          },
        });
      } catch (err) {
        bar?.finish('failed');
        throw err;
      } finally {
        bar?.finish();
      }
    });
    const text = `removed ${report.chunksRemoved} chunks (${formatBytes(report.chunkBytesRemoved)}), ${report.pagesRemoved} pages (${formatBytes(report.pageBytesRemoved)}), ${report.partialsRemoved.length} partial backups in ${formatDuration(report.durationMs)}`;
    return { data: gcReportView(report), text };
  },
});
