/** What a notification says (pure): when it is sent, titles per event, the mail's text. */
import { backupNotification, formatMail, jobNotification, recipients, shouldNotify, testNotification, verifyNotification } from '../../../daemon/notify/notification';

const base = { host: 'pve1', time: new Date('2026-11-25T02:00:03Z') };

test.each<['failure' | 'always', 'ok' | 'failed', boolean]>([
  ['failure', 'failed', true],
  ['failure', 'ok', false],
  ['always', 'ok', true],
  ['always', 'failed', true],
])('on %s, status %s: sent %s', (on, status, sent) => {
  expect(shouldNotify(on, status)).toBe(sent);
});

test.each<[string | string[], string[]]>([
  ['root', ['root']],
  [['root', 'admin@example.com'], ['root', 'admin@example.com']],
  [[], []],
])('recipients(%j)', (mailto, list) => {
  expect(recipients({ mailto })).toEqual(list);
});

test.each<[string, ReturnType<typeof backupNotification>, string, string]>([
  ['backup failed', backupNotification({ ...base, vmid: 101, taskId: 't1', error: { code: 'CBT_BACKUP_VM_NOT_FOUND', message: 'no VM 101' } }), 'failed', 'pve-cbt on pve1: backup of VM 101 failed'],
  ['backup ok', backupNotification({ ...base, vmid: 101, result: { id: 'vm/101/2026-11-25T02:00:03Z', disks: [] } }), 'ok', 'pve-cbt on pve1: backup of VM 101 ok'],
  ['job with a failed VM', jobNotification({ ...base, jobId: 'nightly', report: { ok: [101], failed: [{ vmid: 102, code: 'X' }], pruned: [] } }), 'failed', 'pve-cbt on pve1: job nightly: 1 of 2 VMs failed'],
  ['job all ok', jobNotification({ ...base, jobId: 'nightly', report: { ok: [101, 102], failed: [], pruned: [] } }), 'ok', 'pve-cbt on pve1: job nightly: 2 VMs ok'],
  ['job threw', jobNotification({ ...base, jobId: 'nightly', error: { code: 'CBT_X', message: 'boom' } }), 'failed', 'pve-cbt on pve1: job nightly: failed'],
  ['verify found damage', verifyNotification({ ...base, jobId: 'verify', last: { ok: false } }), 'failed', 'pve-cbt on pve1: verify found damaged backups'],
  ['verify ok', verifyNotification({ ...base, jobId: 'verify', last: { ok: true } }), 'ok', 'pve-cbt on pve1: verify ok'],
  ['verify threw', verifyNotification({ ...base, jobId: 'verify', error: { code: 'CBT_X', message: 'boom' } }), 'failed', 'pve-cbt on pve1: verify failed'],
  ['test', testNotification(base), 'ok', 'pve-cbt on pve1: test notification'],
])('%s', (_name, n, status, title) => {
  expect(n.status).toBe(status);
  expect(n.title).toBe(title);
  expect(n.time).toBe('2026-11-25T02:00:03.000Z');
});

test('the mail: headers, the text, the JSON summary; no header injection through the host', () => {
  const n = backupNotification({ host: 'pve1', time: base.time, vmid: 101, taskId: 't1', error: { code: 'CBT_X', message: 'disk gone' } });
  const mail = formatMail(n, ['root', 'a@b.c']);
  const [head, body] = [mail.slice(0, mail.indexOf('\n\n')), mail.slice(mail.indexOf('\n\n') + 2)];
  expect(head.split('\n')).toEqual([
    'To: root, a@b.c',
    'From: pve-cbt <root@pve1>',
    'Subject: pve-cbt on pve1: backup of VM 101 failed',
    'Date: Wed, 25 Nov 2026 02:00:03 +0000',
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
    'Auto-Submitted: auto-generated',
  ]);
  expect(body).toContain('status: failed\nVM: 101\nerror: CBT_X: disk gone\n');
  expect(JSON.parse(body.slice(body.indexOf('JSON summary:\n') + 14))).toEqual(n);
  const evil = formatMail(testNotification({ host: 'x\nBcc: victim', time: base.time }), ['root']);
  expect(evil.slice(0, evil.indexOf('\n\n'))).not.toMatch(/^Bcc:/m);
});
