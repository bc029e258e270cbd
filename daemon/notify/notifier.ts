/**
 * Sends one notification to every configured target (mail, webhook) and reports each outcome. It
 * never throws: a failing target is logged (warn, with its error code) and the backup, verify or
 * job that caused the notification is not affected. `notifyIfWanted` applies `notify.on`.
 */
import type { Logger } from 'winston';
import { errorJson } from '../../shared/errors/cbt-error';
import type { NotifyConfig } from '../config/config-schema';
import { formatMail, recipients, shouldNotify, type NotificationSummary } from './notification';
import { sendMail } from './send-mail';
import { sendWebhook } from './send-webhook';

export interface TargetOutcome {
  target: string;
  ok: boolean;
  error?: { code: string; message: string };
}

export async function sendNotification(config: NotifyConfig, n: NotificationSummary, logger?: Logger): Promise<TargetOutcome[]> {
  const tasks: { target: string; send: () => Promise<unknown> }[] = [];
  const to = recipients(config);
  if (to.length) tasks.push({ target: `mail to ${to.join(', ')}`, send: () => sendMail({ sendmail: config.sendmail, to, message: formatMail(n, to) }) });
  const webhook = config.webhook;
  if (webhook) tasks.push({ target: `webhook ${webhook.url}`, send: () => sendWebhook(webhook, n) });
  return Promise.all(
    tasks.map(async ({ target, send }): Promise<TargetOutcome> => {
      try {
        await send();
        logger?.info('notification sent', { target, title: n.title });
        return { target, ok: true };
      } catch (err) {
        const { code, message } = errorJson(err);
        logger?.warn('notification failed', { target, title: n.title, code, error: err });
        return { target, ok: false, error: { code, message } };
      }
    }),
  );
}

/** Sends when `notify.on` asks for this status; resolves (never rejects) once every target answered. */
export async function notifyIfWanted(config: NotifyConfig, n: NotificationSummary, logger?: Logger): Promise<void> {
  if (!shouldNotify(config.on, n.status)) return;
  await sendNotification(config, n, logger).catch(() => undefined);
}
