/**
 * Sending through real targets: a stub sendmail script that records its input and a local HTTP
 * server. Each target is reported; a failing one (sendmail exits 75, sendmail missing, HTTP 500,
 * nobody listening) is logged as a warning and never throws. `pve-cbt notify test` through the real
 * CLI (in-process) with the stub's path in the config.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { NotifyConfig } from '../../../daemon/config/config-schema';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { backupNotification } from '../../../daemon/notify/notification';
import { notifyIfWanted, sendNotification } from '../../../daemon/notify/notifier';
import { runCliInProcess } from '../cli/in-process-cli';
import { startWebhookServer, stubSendmail, type WebhookServer } from './notify-fixtures';

let tmp: string;
let hook: WebhookServer;
beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  hook = await startWebhookServer();
});
afterEach(async () => {
  await hook.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const failed = backupNotification({ host: 'pve1', time: new Date('2026-11-25T02:00:03Z'), vmid: 101, taskId: 't1', error: { code: 'CBT_X', message: 'disk gone' } });
const notifyConfig = (over: Partial<NotifyConfig>): NotifyConfig => ({ mailto: 'root', on: 'failure', sendmail: '/nonexistent', ...over });

test('mail and webhook both get the notification', async () => {
  const sm = stubSendmail(tmp);
  const out = await sendNotification(notifyConfig({ mailto: ['root', 'ops@example.com'], sendmail: sm.path, webhook: { url: hook.url, headers: { authorization: 'Bearer T' }, timeoutMs: 5000 } }), failed);
  expect(out).toEqual([
    { target: 'mail to root, ops@example.com', ok: true },
    { target: `webhook ${hook.url}`, ok: true },
  ]);
  const [call] = sm.calls();
  expect(call.args).toEqual(['-i', '--', 'root', 'ops@example.com']);
  expect(call.message).toMatch(/^To: root, ops@example.com\nFrom: .*\nSubject: pve-cbt on pve1: backup of VM 101 failed\n/);
  expect(hook.requests).toHaveLength(1);
  const [req] = hook.requests;
  expect(req).toMatchObject({ method: 'POST', url: '/pve-cbt', headers: { 'content-type': 'application/json', authorization: 'Bearer T' } });
  expect(JSON.parse(req.body)).toEqual(failed);
});

test('failing targets are reported and logged, never thrown', async () => {
  const broken = stubSendmail(tmp, { exitCode: 75, stderr: 'postdrop: warning: unable to look up public/pickup' });
  hook.status = 500;
  const logFile = path.join(tmp, 'log');
  const logger = createLogger({ logDir: logFile, console: false });
  const out = await sendNotification(notifyConfig({ sendmail: broken.path, webhook: { url: hook.url, headers: {}, timeoutMs: 5000 } }), failed, logger);
  expect(out).toEqual([
    { target: 'mail to root', ok: false, error: { code: 'CBT_NOTIFY_SENDMAIL_FAILED', message: `mail to root through ${broken.path} failed: exit status 75` } },
    { target: `webhook ${hook.url}`, ok: false, error: { code: 'CBT_NOTIFY_WEBHOOK_FAILED', message: `webhook ${hook.url} failed: HTTP 500 Internal Server Error` } },
  ]);
  await closeLogger(logger);
  const warned = fs
    .readdirSync(logFile)
    .filter((f) => f.endsWith('.log'))
    .flatMap((f) => fs.readFileSync(path.join(logFile, f), 'utf8').split('\n').filter(Boolean))
    .map((l) => JSON.parse(l) as { level: string; message: string; code: string; error: { details: { stderr?: string } } });
  expect(warned.map((w) => [w.level, w.message, w.code]).sort()).toEqual([
    ['warn', 'notification failed', 'CBT_NOTIFY_SENDMAIL_FAILED'],
    ['warn', 'notification failed', 'CBT_NOTIFY_WEBHOOK_FAILED'],
  ]);
  expect(warned.find((w) => w.code === 'CBT_NOTIFY_SENDMAIL_FAILED')?.error.details.stderr).toContain('unable to look up public/pickup');
});

test.each<[string, () => NotifyConfig, string]>([
  ['sendmail not installed', () => notifyConfig({ sendmail: path.join(tmp, 'no-sendmail') }), 'failed: not found'],
  ['nobody listens on the webhook port', () => notifyConfig({ mailto: [], webhook: { url: 'http://127.0.0.1:1/x', headers: {}, timeoutMs: 5000 } }), 'ECONNREFUSED'],
])('%s', async (_name, config, message) => {
  const [out] = await sendNotification(config(), failed);
  expect(out.ok).toBe(false);
  expect(out.error?.message).toContain(message);
});

test('notify.on: failure sends no ok notification; always does', async () => {
  const sm = stubSendmail(tmp);
  const ok = { ...failed, status: 'ok' as const, error: undefined };
  await notifyIfWanted(notifyConfig({ sendmail: sm.path }), ok);
  expect(sm.calls()).toHaveLength(0);
  await notifyIfWanted(notifyConfig({ sendmail: sm.path, on: 'always' }), ok);
  await notifyIfWanted(notifyConfig({ sendmail: sm.path }), failed);
  expect(sm.calls()).toHaveLength(2);
});

describe('pve-cbt notify test', () => {
  async function cli(notify: Record<string, unknown>, ...argv: string[]) {
    const file = path.join(tmp, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ stateDir: path.join(tmp, 'state'), repository: path.join(tmp, 'state', 'repo'), socketPath: path.join(tmp, 's.sock'), logDir: path.join(tmp, 'logs'), notify }));
    return runCliInProcess(['notify', 'test', '--config', file, ...argv], {});
  }

  test('sends to both targets, whatever notify.on says', async () => {
    const sm = stubSendmail(tmp);
    const r = await cli({ sendmail: sm.path, webhook: { url: hook.url } });
    expect(r).toEqual({ code: 0, stdout: `mail to root: sent\nwebhook ${hook.url}: sent\n`, stderr: '' });
    expect(sm.calls()[0].message).toMatch(/^Subject: pve-cbt on .+: test notification$/m);
    expect(JSON.parse(hook.requests[0].body)).toMatchObject({ kind: 'test', status: 'ok' });
    const json = await cli({ sendmail: sm.path }, '--json');
    expect(JSON.parse(json.stdout)).toEqual({ ok: true, targets: [{ target: 'mail to root', ok: true }] });
  });

  test('a failing target: exit 1 naming it', async () => {
    const r = await cli({ sendmail: path.join(tmp, 'missing-sendmail'), webhook: { url: hook.url } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^pve-cbt: notification test failed: mail to root: mail to root through .*missing-sendmail failed: not found\n/);
    expect(r.stderr).toContain('(CBT_NOTIFY_TEST_FAILED)');
    expect(hook.requests).toHaveLength(1);
  });

  test('no target configured', async () => {
    const r = await cli({ mailto: [] }, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_NOTIFY_NO_TARGETS', details: { hint: expect.stringContaining('notify.mailto') } } });
  });
});
