/**
 * Where the daemon's events become notifications (daemon/notify/): a backup task asked for outside
 * a job (one per VM; a cancelled one is not reported, someone cancelled it), a scheduled backup
 * job's run, the verify job. The current config's `notify` is read at send time, so a reload
 * (SIGHUP) applies to the next notification. Sending never delays or fails the event itself.
 */
import os from 'node:os';
import type { Logger } from 'winston';
import { errorJson } from '../../shared/errors/cbt-error';
import { backupNotification, jobNotification, verifyNotification, type NotificationSummary } from '../notify/notification';
import { notifyIfWanted } from '../notify/notifier';
import type { LastVerify } from '../repository/verify-record';
import type { ScheduledJob, ScheduledRunReport } from './scheduled-job';
import type { Services } from './services';

/** Sends in the background; the returned promise never rejects and resolves when all targets answered. */
async function send(s: Services, n: NotificationSummary, logger: Logger): Promise<void> {
  // Services built by hand (tests of one part) may come without a config: nothing to notify then.
  const notify = (s.config as Services['config'] | undefined)?.notify;
  if (!notify) return;
  await notifyIfWanted(notify, n, logger).catch(() => undefined);
}

export function notifyBackupTask(
  s: Services,
  logger: Logger,
  e: { vmid: number; taskId: string; result?: { id: string; disks: unknown[] }; error?: unknown },
): Promise<void> {
  const error = e.error === undefined ? undefined : (({ code, message }) => ({ code, message }))(errorJson(e.error));
  return send(s, backupNotification({ host: os.hostname(), time: new Date(), vmid: e.vmid, taskId: e.taskId, result: e.result, error }), logger);
}

/** Runs one firing of a scheduled job through `run` and notifies about its outcome (also when it throws). */
export async function withJobNotification<R extends ScheduledRunReport | LastVerify>(s: Services, job: ScheduledJob, run: () => Promise<R>): Promise<R> {
  const logger = s.logger.child({ jobId: job.id });
  const base = { host: os.hostname(), time: new Date(), jobId: job.id };
  const isVerify = (job as { kind?: string }).kind === 'verify';
  try {
    const r = await run();
    void send(s, isVerify ? verifyNotification({ ...base, last: r as LastVerify }) : jobNotification({ ...base, report: r as ScheduledRunReport }), logger);
    return r;
  } catch (err) {
    const { code, message } = errorJson(err);
    void send(s, isVerify ? verifyNotification({ ...base, error: { code, message } }) : jobNotification({ ...base, error: { code, message } }), logger);
    throw err;
  }
}
