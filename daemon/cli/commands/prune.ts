/**
 * `pve-cbt prune`: applies retention (PBS/vzdump `prune-backups` semantics). With keep options it
 * applies them to the VMs selected; without, each configured job's retention to that job's VMs.
 * `--dry-run` only shows the marks. Chunks are freed by the next `gc`.
 * JSON (beside `ok`, output.ts): `{ dryRun, removed, backups: [{ id, keep, reason }] }` (`removed`: how many were,
 * or with --dry-run would be, removed).
 */
import { pruneMarkView } from '../backup-view';
import { CliUsageError } from '../cli-errors';
import { defineCommand } from '../command';
import { withStores } from '../local-stores';
import { parsePositiveInt, parseVmid } from '../option-parsers';
import { textTable } from '../text-table';
import type { PruneMark, PruneOptions } from '../../repository/repository';
import { selectVms } from '../../service/select-vms';

type PruneCliOptions = PruneOptions & { vm?: number; dryRun?: boolean };

const KEEPS = ['keepLast', 'keepHourly', 'keepDaily', 'keepWeekly', 'keepMonthly', 'keepYearly'] as const;

export const pruneCommand = defineCommand<PruneCliOptions>({
  name: 'prune',
  summary: 'remove backups by retention (keep-last/hourly/daily/weekly/monthly/yearly)',
  options: [
    { flags: '--vm <vmid>', description: 'only this VM', parse: parseVmid },
    { flags: '--keep-last <n>', description: 'keep the n newest backups', parse: parsePositiveInt },
    { flags: '--keep-hourly <n>', description: 'keep the newest backup of each of the last n hours', parse: parsePositiveInt },
    { flags: '--keep-daily <n>', description: 'keep one backup per day for n days', parse: parsePositiveInt },
    { flags: '--keep-weekly <n>', description: 'keep one backup per ISO week for n weeks', parse: parsePositiveInt },
    { flags: '--keep-monthly <n>', description: 'keep one backup per month for n months', parse: parsePositiveInt },
    { flags: '--keep-yearly <n>', description: 'keep one backup per year for n years', parse: parsePositiveInt },
    { flags: '--dry-run', description: 'only show what would be removed' },
  ],
  examples: ['pve-cbt prune --keep-last 3 --keep-daily 7 --dry-run', 'pve-cbt prune --vm 101 --keep-last 1'],
  async run(ctx) {
    const keep: PruneOptions = Object.fromEntries(KEEPS.filter((k) => ctx.opts[k] !== undefined).map((k) => [k, ctx.opts[k]]));
    const marks = await withStores(ctx, async (s) => {
      if (Object.keys(keep).length > 0) return s.repo.prune({ ...keep, vmid: ctx.opts.vm, dryRun: ctx.opts.dryRun });
      const jobs = s.config.jobs.filter((j) => Object.keys(j.retention).length > 0);
      if (jobs.length === 0) throw CliUsageError({ command: 'prune', problem: 'no keep option given and no job in the config has a retention', hint: 'e.g. --keep-last 3' });
      const out: PruneMark[] = [];
      for (const job of jobs) {
        for (const vmid of selectVms(job.vms, s.config.qemuServerConfigDir)) {
          if (ctx.opts.vm !== undefined && vmid !== ctx.opts.vm) continue;
          out.push(...(await s.repo.prune({ ...job.retention, vmid, dryRun: ctx.opts.dryRun })));
        }
      }
      return out;
    });
    const removed = marks.filter((m) => !m.keep);
    const verb = ctx.opts.dryRun ? 'would remove' : 'removed';
    const views = marks.map(pruneMarkView);
    const text = `${verb} ${removed.length} of ${marks.length} backup(s)${marks.length ? `\n${textTable(['ID', 'ACTION', 'REASON'], views.map((m) => [m.id, m.keep ? 'keep' : verb, m.reason]))}` : ''}`;
    return { data: { dryRun: ctx.opts.dryRun === true, removed: removed.length, backups: views }, text };
  },
});
