/**
 * Issue 17 points 8 and 11 with the built daemon as its own process, as systemd runs it: stdout is a
 * file named by JOURNAL_STREAM (device:inode, as systemd sets it), NOTIFY_SOCKET is a real AF_UNIX
 * datagram socket served by a small listener (fixtures/notify-socket-listener.py), and the real
 * `systemd-notify` carries the messages. Real QEMU, SQLite and file system.
 *
 * - READY=1 once the socket answers; STOPPING=1 on SIGTERM; exit 0.
 * - SIGHUP during a backup: RELOADING=1 then READY=1, the backup completes (restored byte for byte,
 *   job ok), and the new config is in effect: the reload log names the running task, a new job is
 *   scheduled, `notify.on: always` makes the webhook get that very backup's ok notification,
 *   `logLevel: debug` brings debug lines, a changed `concurrency` is named as needing a restart.
 * - SIGHUP with a broken config: refused and logged at error, the daemon runs on.
 * - Every stdout line carries its syslog priority: <6> info, <4> warn, <3> error, <7> debug.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ipcRequest } from '../../shared/ipc/ipc-client';
import { REQUESTS, type BackupOutcome, type TaskInfo } from '../../daemon/service/requests';
import type { NotificationSummary } from '../../daemon/notify/notification';
import { startWebhookServer, type WebhookServer } from '../daemon/notify/notify-fixtures';
import { freezeQemu, logBarrier, type QemuFreeze } from './qemu-hold';
import { addVm, CLI, createStack, MiB, type Stack } from './e2e-harness';

let stack: Stack;
let hook: WebhookServer;
let listener: ChildProcess | undefined;
let daemon: ChildProcess | undefined;
/** What the daemon told systemd, without systemd-notify's BARRIER=1 (counted in `barriers`). */
const messages: string[] = [];
let barriers = 0;

afterAll(async () => {
  for (const p of [daemon, listener]) if (p && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await stack?.cleanup();
  await hook?.close();
});

async function until<T>(what: string, fn: () => T | undefined | Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function startListener(socketPath: string): Promise<void> {
  listener = spawn('python3', [path.join(__dirname, 'fixtures', 'notify-socket-listener.py'), socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  let rest = '';
  return new Promise((resolve, reject) => {
    listener!.on('exit', (code) => reject(new Error(`notify socket listener exited ${code}`)));
    listener!.stdout!.on('data', (d: Buffer) => {
      const lines = (rest + d.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        const m = JSON.parse(l) as { listening?: string; message?: string };
        if (m.listening) resolve();
        if (m.message === 'BARRIER=1') barriers++;
        else if (m.message !== undefined) messages.push(m.message);
      }
    });
  });
}

const writeConfig = (raw: Record<string, unknown>): void => fs.writeFileSync(stack.configFile, `${JSON.stringify(raw, null, 2)}\n`);

test('Type=notify, journald priorities, SIGHUP reload during a backup', async () => {
  hook = await startWebhookServer();
  stack = await createStack({ config: { notify: { mailto: [], webhook: { url: hook.url } } } });
  const raw = JSON.parse(fs.readFileSync(stack.configFile, 'utf8')) as Record<string, unknown>;
  const vm = await addVm(stack, 751, 'qcow2', { sizeMiB: 32 });
  for (let i = 0; i < 24; i++) await vm.write('scsi0', { pattern: 0x30 + i, offset: (4 + i) * MiB, length: MiB });
  await vm.start();

  const notifySocket = path.join(stack.work, 'notify.sock');
  await startListener(notifySocket);
  const journal = path.join(stack.work, 'journal.txt');
  const fd = fs.openSync(journal, 'w');
  const st = fs.fstatSync(fd, { bigint: true });
  daemon = spawn(process.execPath, [CLI, 'daemon', '--config', stack.configFile], {
    stdio: ['ignore', fd, 'inherit'],
    env: { ...process.env, JOURNAL_STREAM: `${st.dev}:${st.ino}`, NOTIFY_SOCKET: notifySocket },
  });
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => daemon!.on('exit', (code) => resolve(code)));
  await until('READY=1', () => (messages.some((m) => m.startsWith('READY=1')) ? true : undefined));
  expect(messages[0]).toBe('READY=1\nSTATUS=ready');
  // Ready means ready: the socket answers.
  expect(await stack.request<TaskInfo[]>(REQUESTS.tasks, {})).toEqual([]);

  // SIGHUP at the first progress frame of a full backup, with a new config on disk.
  const ref = await vm.snapshotReference('scsi0');
  writeConfig({ ...raw, logLevel: 'debug', concurrency: 2, jobs: [{ id: 'weekly', vms: [751], schedule: 'sun 03:00' }], notify: { mailto: [], on: 'always', webhook: { url: hook.url } } });
  // QEMU is frozen at that frame and thawed once the daemon logged the reload, so the reload always
  // happens while the backup runs (its `running` names the task), however slowly a loaded machine
  // delivers the signal (qemu-hold.ts).
  let freeze: QemuFreeze | undefined;
  const reloadLogged = logBarrier(stack.config.logDir, 'config reloaded');
  let outcome: BackupOutcome;
  try {
    [outcome] = await ipcRequest<BackupOutcome[]>(stack.config.socketPath, REQUESTS.backup, { vmids: [751] }, {
      timeoutMs: 300_000,
      onProgress: () => {
        if (freeze) return;
        freeze = freezeQemu(vm.pid()!);
        daemon!.kill('SIGHUP');
        reloadLogged.reached(60_000).then(() => freeze!.thaw(), () => freeze!.thaw());
      },
    });
  } finally {
    freeze?.thaw();
  }
  expect(freeze).toBeDefined();
  expect(outcome.error).toBeUndefined();
  const result = outcome.result!;
  expect(result.disks.map((d) => d.mode)).toEqual(['full']);
  expect(await stack.compareRestore(result.id, 'scsi0', ref)).toBe(-1);
  fs.rmSync(ref);

  const entries = (): { level: string; message: string; [k: string]: unknown }[] =>
    fs
      .readdirSync(stack.config.logDir)
      .filter((f) => f.endsWith('.log'))
      .flatMap((f) => fs.readFileSync(path.join(stack.config.logDir, f), 'utf8').split('\n').filter(Boolean))
      .map((l) => JSON.parse(l) as { level: string; message: string });
  const reloaded = await until('config reloaded', () => entries().find((e) => e.message === 'config reloaded'));
  expect(reloaded.applied).toEqual(['jobs', 'logLevel', 'notify']);
  expect(reloaded.running).toEqual([expect.stringMatching(/^task-/)]);
  expect(reloaded.jobs).toEqual(expect.arrayContaining([expect.objectContaining({ jobId: 'weekly' })]));
  expect(entries().find((e) => e.message === 'config changes that need a restart (systemctl restart pve-cbtd) were not applied')).toMatchObject({ level: 'warn', keys: ['concurrency'] });
  await until('READY after the reload', () => (messages.length >= 3 ? true : undefined));
  expect(messages.slice(1, 3)).toEqual(['RELOADING=1\nSTATUS=reloading the config', 'READY=1\nSTATUS=ready (config reloaded)']);
  // The backup that ran across the reload finished under the new notify.on: always.
  await hook.waitFor(1);
  expect(JSON.parse(hook.requests[0].body) as NotificationSummary).toMatchObject({ kind: 'backup', status: 'ok', vmid: 751, backupId: result.id });
  const tasks = await stack.withStores(async (s) => s.catalog.listJobs({ vmid: 751 }));
  expect(tasks.map((j) => j.status)).toEqual(['ok']);

  // logLevel debug is in effect: the next backup's debug lines reach the journal as <7>.
  await vm.write('scsi0', { pattern: 0x7e, offset: 9 * MiB, length: 65536 });
  await stack.backupAndCheck([vm]);

  // A broken config on SIGHUP changes nothing and is said at error level; the daemon answers on.
  fs.writeFileSync(stack.configFile, '{ "logLevel": ');
  daemon.kill('SIGHUP');
  await until('the refused reload', () => entries().find((e) => e.message === 'config reload refused: running on with the previous config'));
  await until('READY after the refused reload', () => (messages.length >= 5 ? true : undefined));
  expect(messages.slice(3, 5)).toEqual(['RELOADING=1\nSTATUS=reloading the config', 'READY=1\nSTATUS=ready (config reload refused, see the log)']);
  expect(await stack.request<TaskInfo[]>(REQUESTS.tasks, {})).toEqual([]);

  daemon.kill('SIGTERM');
  expect(await exited).toBe(0);
  expect(messages[5]).toBe('STOPPING=1\nSTATUS=stopping: cancelling running backups');
  // systemd-notify waited for the manager to take each message (sd_notify_barrier).
  expect(barriers).toBe(messages.length);

  const lines = fs.readFileSync(journal, 'utf8').split('\n').filter(Boolean);
  expect(lines.every((l) => /^<[3467]>/.test(l))).toBe(true);
  expect(lines).toContainEqual(expect.stringMatching(/^<6>info {2}daemon ready /));
  expect(lines).toContainEqual(expect.stringMatching(/^<4>warn {2}config changes that need a restart/));
  expect(lines).toContainEqual(expect.stringMatching(/^<3>error config reload refused/));
  expect(lines).toContainEqual(expect.stringMatching(/^<7>debug vm=751 .*backup directory reserved/));
});
