/**
 * Issue 17 point 10 with the real daemon (in-process), real QEMU, SQLite and file system: failures
 * notify through a stub sendmail (recording its input, path set in the config) and a local HTTP
 * webhook. A backup of a VM without disks: one mail to root and one POST, both naming the VM
 * and the error. A successful backup (restored byte for byte) with `on: failure`: nothing. A
 * scheduled job run with one good and one missing VM: one notification for the job. A webhook that
 * answers 500 and a sendmail that fails never fail the backup.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobConfig } from '../../daemon/config/config-schema';
import type { NotificationSummary } from '../../daemon/notify/notification';
import { REQUESTS, type BackupOutcome } from '../../daemon/service/requests';
import { runScheduledJob } from '../../daemon/service/scheduled-job';
import { startWebhookServer, stubSendmail, type StubSendmail, type WebhookServer } from '../daemon/notify/notify-fixtures';
import { addVm, createStack, type Stack } from './e2e-harness';

let stack: Stack;
let hook: WebhookServer;
let sendmail: StubSendmail;
let dir: string;
beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  sendmail = stubSendmail(dir);
  hook = await startWebhookServer();
  stack = await createStack({
    config: {
      notify: { sendmail: sendmail.path, webhook: { url: hook.url } },
      jobs: [{ id: 'nightly', vms: [741, 749], schedule: 'daily 02:00' }],
    },
  });
  // VM 749 exists on the node but its disk's volume file is gone: its backup fails (a VM with no
  // disk at all is skipped by a scheduled job, not failed).
  fs.writeFileSync(path.join(stack.config.qemuServerConfigDir, '749.conf'), 'name: lost-disk\nmemory: 128\nscsi0: local:749/vm-749-disk-0.raw,size=4M\n');
  await stack.startDaemon();
}, 60_000);
afterAll(async () => {
  await stack?.cleanup();
  await hook?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const posted = (i: number): NotificationSummary => JSON.parse(hook.requests[i].body) as NotificationSummary;

test('a failed backup: one mail to root, one webhook POST', async () => {
  const [outcome] = await stack.request<BackupOutcome[]>(REQUESTS.backup, { vmids: [749] });
  expect(outcome.error?.code).toEqual(expect.any(String));
  await hook.waitFor(1);
  expect(posted(0)).toMatchObject({ kind: 'backup', status: 'failed', vmid: 749, error: { code: outcome.error!.code }, title: expect.stringContaining('backup of VM 749 failed') });
  for (let i = 0; i < 400 && sendmail.calls().length < 1; i++) await new Promise((r) => setTimeout(r, 50));
  const mails = sendmail.calls();
  expect(mails).toHaveLength(1);
  expect(mails[0].args).toEqual(['-i', '--', 'root']);
  expect(mails[0].message).toMatch(/^To: root$/m);
  expect(mails[0].message).toMatch(/^Subject: pve-cbt on .+: backup of VM 749 failed$/m);
  expect(mails[0].message).toContain(`error: ${outcome.error!.code}: `);
});

test('a good backup with on: failure notifies no one; a scheduled job with a VM that fails notifies once', async () => {
  const vm = await addVm(stack, 741, 'raw', { sizeMiB: 8 });
  await vm.start();
  const before = hook.requests.length;
  await stack.backupAndCheck([vm]);

  const report = await runScheduledJob(stack.services, stack.config.jobs[0] as JobConfig);
  expect(report).toMatchObject({ ok: [741], failed: [{ vmid: 749 }] });
  const [b] = (await stack.services.repo.listBackups(741)).slice(-1);
  expect(await stack.compareRestore(b.id, 'scsi0', await vm.snapshotReference('scsi0'))).toBe(-1);
  await hook.waitFor(before + 1);
  // Let any stray notification of the job's per-VM tasks arrive: there must be none.
  await new Promise((r) => setTimeout(r, 300));
  expect(hook.requests.slice(before).map((r) => (JSON.parse(r.body) as NotificationSummary).kind)).toEqual(['job']);
  expect(posted(before)).toMatchObject({ kind: 'job', status: 'failed', jobId: 'nightly', title: expect.stringContaining('job nightly: 1 of 2 VMs failed'), details: { ok: [741], failed: [{ vmid: 749 }] } });
  expect(sendmail.calls().map((c) => /^Subject: (.*)$/m.exec(c.message)?.[1])).toEqual([expect.stringContaining('backup of VM 749 failed'), expect.stringContaining('job nightly: 1 of 2 VMs failed')]);
});

test('failing notifiers never fail the backup; they log', async () => {
  hook.status = 500;
  const before = hook.requests.length;
  const [outcome] = await stack.request<BackupOutcome[]>(REQUESTS.backup, { vmids: [748] });
  expect(outcome.error).toBeDefined();
  await hook.waitFor(before + 1);
  const vm = stack.node.vm(741);
  const res = await stack.backupAndCheck([vm]);
  expect(res.get(741)?.id).toEqual(expect.any(String));
  const warnings = (): { message: string; code?: string; vmid?: number }[] =>
    fs
      .readdirSync(stack.config.logDir)
      .filter((f) => f.endsWith('.log'))
      .flatMap((f) => fs.readFileSync(path.join(stack.config.logDir, f), 'utf8').split('\n').filter(Boolean))
      .map((l) => JSON.parse(l) as { level: string; message: string; code?: string; vmid?: number })
      .filter((e) => e.level === 'warn' && e.message === 'notification failed');
  for (let i = 0; i < 400 && !warnings().some((w) => w.code === 'CBT_NOTIFY_WEBHOOK_FAILED'); i++) await new Promise((r) => setTimeout(r, 50));
  expect(warnings()).toContainEqual(expect.objectContaining({ code: 'CBT_NOTIFY_WEBHOOK_FAILED', vmid: 748 }));
});
