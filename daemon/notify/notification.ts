/**
 * What a notification says, built from what happened (pure; sending is send-mail.ts and
 * send-webhook.ts). One notification per event, as vzdump sends one mail per job:
 * - a backup asked for through the CLI (no job): one per VM;
 * - a scheduled backup job: one for the whole run (every VM's outcome, what was pruned);
 * - the verify job: one, with the damaged backups;
 * - `pve-cbt notify test`.
 * `summary` is the JSON the webhook gets and the mail carries below its text.
 */
import type { NotifyConfig, NotifyOn } from '../config/config-schema';

export type NotificationKind = 'backup' | 'job' | 'verify' | 'test';

export interface NotificationSummary {
  kind: NotificationKind;
  status: 'ok' | 'failed';
  /** One line: the mail's subject. */
  title: string;
  host: string;
  time: string;
  vmid?: number;
  jobId?: string;
  taskId?: string;
  backupId?: string;
  error?: { code: string; message: string };
  /** What the event carries: per-VM outcomes, disks, verify problems… */
  details: Record<string, unknown>;
}

export function shouldNotify(on: NotifyOn, status: NotificationSummary['status']): boolean {
  return on === 'always' || status === 'failed';
}

/** `mailto` as a list. */
export function recipients(config: Pick<NotifyConfig, 'mailto'>): string[] {
  return typeof config.mailto === 'string' ? [config.mailto] : [...config.mailto];
}

interface Base {
  host: string;
  time: Date;
}

export function backupNotification(b: Base & { vmid: number; taskId?: string; result?: { id: string; disks: unknown[] }; error?: { code: string; message: string } }): NotificationSummary {
  const failed = b.error !== undefined;
  return {
    kind: 'backup',
    status: failed ? 'failed' : 'ok',
    title: `pve-cbt on ${b.host}: backup of VM ${b.vmid} ${failed ? 'failed' : 'ok'}`,
    host: b.host,
    time: b.time.toISOString(),
    vmid: b.vmid,
    ...(b.taskId ? { taskId: b.taskId } : {}),
    ...(b.result ? { backupId: b.result.id } : {}),
    ...(b.error ? { error: b.error } : {}),
    details: b.result ? { disks: b.result.disks } : {},
  };
}

export function jobNotification(
  b: Base & { jobId: string; report?: { ok: number[]; failed: { vmid: number; code: string; message?: string }[]; pruned: string[] }; error?: { code: string; message: string } },
): NotificationSummary {
  const failedVms = b.report?.failed.length ?? 0;
  const total = (b.report?.ok.length ?? 0) + failedVms;
  const failed = b.error !== undefined || failedVms > 0;
  const what = b.error ? 'failed' : failedVms ? `${failedVms} of ${total} VMs failed` : `${total} VM${total === 1 ? '' : 's'} ok`;
  return {
    kind: 'job',
    status: failed ? 'failed' : 'ok',
    title: `pve-cbt on ${b.host}: job ${b.jobId}: ${what}`,
    host: b.host,
    time: b.time.toISOString(),
    jobId: b.jobId,
    ...(b.error ? { error: b.error } : {}),
    details: b.report ? { ...b.report } : {},
  };
}

export function verifyNotification(b: Base & { jobId: string; last?: { ok: boolean }; error?: { code: string; message: string } }): NotificationSummary {
  const failed = b.error !== undefined || b.last?.ok === false;
  return {
    kind: 'verify',
    status: failed ? 'failed' : 'ok',
    title: `pve-cbt on ${b.host}: verify ${b.error ? 'failed' : failed ? 'found damaged backups' : 'ok'}`,
    host: b.host,
    time: b.time.toISOString(),
    jobId: b.jobId,
    ...(b.error ? { error: b.error } : {}),
    details: b.last ? { ...(b.last as Record<string, unknown>) } : {},
  };
}

export function testNotification(b: Base): NotificationSummary {
  return {
    kind: 'test',
    status: 'ok',
    title: `pve-cbt on ${b.host}: test notification`,
    host: b.host,
    time: b.time.toISOString(),
    details: { note: 'sent by pve-cbt notify test' },
  };
}

/** The mail as sendmail reads it (RFC 5322, UTF-8 body): headers, the text, then the JSON summary. */
export function formatMail(n: NotificationSummary, to: readonly string[]): string {
  const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ');
  const lines = [
    `To: ${to.join(', ')}`,
    `From: pve-cbt <root@${oneLine(n.host)}>`,
    `Subject: ${oneLine(n.title)}`,
    `Date: ${new Date(n.time).toUTCString().replace('GMT', '+0000')}`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    'Auto-Submitted: auto-generated',
    '',
    n.title,
    '',
    `status: ${n.status}`,
    ...(n.vmid !== undefined ? [`VM: ${n.vmid}`] : []),
    ...(n.jobId !== undefined ? [`job: ${n.jobId}`] : []),
    ...(n.backupId !== undefined ? [`backup: ${n.backupId}`] : []),
    ...(n.error ? [`error: ${n.error.code}: ${n.error.message}`] : []),
    '',
    'JSON summary:',
    JSON.stringify(n, null, 2),
    '',
  ];
  return lines.join('\n');
}
