import { defineError } from '../../shared/errors/cbt-error';

/** sendmail could not be run, exited non-zero, or did not finish in time; `stderr` is its own text. */
export const NotifySendmailFailedError = defineError<{ sendmail: string; to: string[]; reason: string; stderr: string; hint: string }>(
  'CBT_NOTIFY_SENDMAIL_FAILED',
  (d) => `mail to ${d.to.join(', ')} through ${d.sendmail} failed: ${d.reason}`,
);

/** The webhook did not answer 2xx in time (connection refused, DNS, timeout, HTTP error status). */
export const NotifyWebhookFailedError = defineError<{ url: string; reason: string; status: number | null; hint: string }>(
  'CBT_NOTIFY_WEBHOOK_FAILED',
  (d) => `webhook ${d.url} failed: ${d.reason}`,
);

/** `pve-cbt notify test` with no target: mailto is empty and no webhook is configured. */
export const NotifyNoTargetsError = defineError<{ hint: string }>('CBT_NOTIFY_NO_TARGETS', () => 'no notification target is configured');

/** `pve-cbt notify test`: at least one target failed; `targets` has each one's outcome. */
export const NotifyTestFailedError = defineError<{ targets: { target: string; ok: boolean; error?: { code: string; message: string } }[]; hint: string }>(
  'CBT_NOTIFY_TEST_FAILED',
  (d) => `notification test failed: ${d.targets.filter((t) => !t.ok).map((t) => `${t.target}: ${t.error?.message ?? 'failed'}`).join('; ')}`,
);
