/**
 * `pve-cbt notify test`: sends a test notification through every configured target (mail through
 * sendmail, the webhook) right now, whatever `notify.on` says, and reports each. Exit 0 when all
 * were accepted; CBT_NOTIFY_TEST_FAILED (exit 1) naming each failure otherwise;
 * CBT_NOTIFY_NO_TARGETS when `mailto` is empty and there is no webhook.
 * JSON: `{ ok: true, targets: [{ target, ok }] }`.
 */
import os from 'node:os';
import { testNotification, recipients } from '../../notify/notification';
import { NotifyNoTargetsError, NotifyTestFailedError } from '../../notify/notify-errors';
import { sendNotification } from '../../notify/notifier';
import { defineCommand } from '../command';

const testCommand = defineCommand({
  name: 'test',
  summary: 'send a test notification to every configured target',
  description: 'Sends a test notification through notify.sendmail to notify.mailto and to notify.webhook, and reports each target.',
  examples: ['pve-cbt notify test', 'pve-cbt notify test --json'],
  async run(ctx) {
    const { notify } = ctx.loadConfig();
    if (recipients(notify).length === 0 && !notify.webhook) {
      throw NotifyNoTargetsError({ hint: 'set notify.mailto (e.g. "root") or notify.webhook.url in the config' });
    }
    const targets = await sendNotification(notify, testNotification({ host: os.hostname(), time: ctx.now() }));
    if (targets.some((t) => !t.ok)) {
      throw NotifyTestFailedError({ targets, hint: 'see each target\'s error; the daemon logs the same failures as "notification failed"' });
    }
    return { data: { ok: true, targets }, text: targets.map((t) => `${t.target}: sent`).join('\n') };
  },
});

export const notifyCommand = defineCommand({
  name: 'notify',
  summary: 'notifications: mail and webhook',
  subcommands: [testCommand],
});
