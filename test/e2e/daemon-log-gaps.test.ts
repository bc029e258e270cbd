/**
 * Issue 17 point 9 with the real daemon (in-process), real QEMU and real SQLite: a scheduled job's
 * story in the log is complete and said once. Two runs of a job with keepLast 1 on one running VM:
 * `pve-cbt log --job nightly` shows per backup exactly one `backup started`, one `backup finished`
 * and one `backup committed`, and the pruned backup's `backup removed` — all with the job's id. The
 * queue's own lines are `task started` / `task finished`. Every backup is restored byte for byte.
 */
import { PassThrough } from 'node:stream';
import { COMMANDS } from '../../daemon/cli/registry';
import { runCli } from '../../daemon/cli/run-cli';
import type { JobConfig } from '../../daemon/config/config-schema';
import type { LogEntry } from '../../daemon/log/log-entry';
import { runScheduledJob } from '../../daemon/service/scheduled-job';
import { addVm, createStack, MiB, type Stack } from './e2e-harness';

let stack: Stack;
afterAll(async () => {
  await stack?.cleanup();
});

async function logJson(argv: string[]): Promise<LogEntry[]> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  const code = await runCli({ argv: ['log', '--json', '--config', stack.configFile, ...argv], commands: COMMANDS, stdout: out, stderr: new PassThrough(), env: {} });
  expect(code).toBe(0);
  return Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogEntry);
}

test('two runs of a job with keepLast 1: each message once per backup, all with the job id', async () => {
  stack = await createStack({ config: { jobs: [{ id: 'nightly', vms: [731], schedule: 'daily 02:00', retention: { keepLast: 1 } }] } });
  const vm = await addVm(stack, 731, 'qcow2', { sizeMiB: 8 });
  await vm.start();
  const s = await stack.startDaemon();
  const job = stack.config.jobs[0] as JobConfig;

  const refs: string[] = [];
  refs.push(await vm.snapshotReference('scsi0'));
  const first = await runScheduledJob(s, job);
  expect(first).toMatchObject({ ok: [731], failed: [], pruned: [] });
  const [b1] = await s.repo.listBackups(731);
  expect(await stack.compareRestore(b1.id, 'scsi0', refs[0])).toBe(-1);

  await vm.write('scsi0', { pattern: 0x5c, offset: 3 * MiB, length: 65536 });
  refs.push(await vm.snapshotReference('scsi0'));
  // A backup id has one-second resolution: the second must not reuse the first's second.
  await new Promise((r) => setTimeout(r, 1100));
  const second = await runScheduledJob(s, job);
  expect(second).toMatchObject({ ok: [731], failed: [], pruned: [b1.id] });
  const [b2] = await s.repo.listBackups(731);
  expect(await stack.compareRestore(b2.id, 'scsi0', refs[1])).toBe(-1);

  const entries = await logJson(['--job', 'nightly']);
  expect(entries.every((e) => e.jobId === 'nightly')).toBe(true);
  const count = (message: string, backupId?: string): number =>
    entries.filter((e) => e.message === message && (backupId === undefined || e.backupId === backupId)).length;
  for (const id of [b1.id, b2.id]) {
    expect([count('backup started', id), count('backup finished', id), count('backup committed', id)]).toEqual([1, 1, 1]);
  }
  expect(count('backup removed', b1.id)).toBe(1);
  expect(entries.find((e) => e.message === 'backup removed')).toMatchObject({ vmid: 731, jobId: 'nightly' });
  expect([count('task started'), count('task finished')]).toEqual([2, 2]);
  expect(count('scheduled job finished')).toBe(2);
  // The whole log has no second copy either (none written without the job id).
  const all = await logJson([]);
  expect(all.filter((e) => e.message === 'backup started')).toHaveLength(2);
  expect(all.filter((e) => e.message === 'backup finished')).toHaveLength(2);
});
