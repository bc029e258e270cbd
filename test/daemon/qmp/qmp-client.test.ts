import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import winston from 'winston';
import { hmp } from '../../../daemon/qmp/hmp';
import { QmpClient, type QmpEvent } from '../../../daemon/qmp/qmp-client';
import {
  QmpBusyError,
  QmpCommandError,
  QmpConnectError,
  QmpDisconnectedError,
  QmpProtocolError,
  QmpTimeoutError,
} from '../../../daemon/qmp/qmp-errors';
import { withQmp } from '../../../daemon/qmp/qmp-session';
import { queryDisks } from '../../../daemon/qmp/query-disks';
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';

// Real QEMU 7.2 (TCG) through the node simulator; nothing here is mocked.
const execFileP = promisify(execFile);
const sim = usePveNode();
let vm: SimVm;
const open: QmpClient[] = [];

beforeAll(async () => {
  vm = await sim.node.addVm({ vmid: 200, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 8 }, { key: 'virtio1', format: 'raw', sizeMiB: 4 }] });
  await vm.start();
});

afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
  if (!vm.running()) await vm.start();
});

async function connect(opts?: Parameters<typeof QmpClient.connect>[1]): Promise<QmpClient> {
  const c = await QmpClient.connect(vm.qmpPath, opts);
  open.push(c);
  return c;
}

function errorOf(p: Promise<unknown>): Promise<any> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

describe('QmpClient against a real QEMU', () => {
  it('negotiates capabilities and correlates concurrent commands by id', async () => {
    const qmp = await connect();
    expect(qmp.greeting.QMP.version.qemu.major).toBeGreaterThanOrEqual(7);
    const [status, name, disks] = await Promise.all([
      qmp.execute<{ status: string; running: boolean }>('query-status'),
      qmp.execute<{ name: string }>('query-name'),
      queryDisks(qmp),
    ]);
    expect(status).toMatchObject({ status: 'running', running: true });
    expect(name.name).toBe('vm200');
    expect(disks.map((d) => [d.drive, d.format])).toEqual([['scsi0', 'qcow2'], ['virtio1', 'raw']]);
  });

  it('delivers asynchronous events to listeners', async () => {
    const qmp = await connect();
    const events: QmpEvent[] = [];
    qmp.on('event', (ev) => events.push(ev));
    await qmp.execute('stop');
    await qmp.execute('cont');
    await waitFor(() => events.some((e) => e.event === 'RESUME'));
    expect(events.map((e) => e.event)).toEqual(['STOP', 'RESUME']);
    expect(events[0].timestamp?.seconds).toBeGreaterThan(0);
  });

  it('keeps QEMU error class and description on a failed command', async () => {
    const qmp = await connect();
    const err = await errorOf(qmp.execute('block-dirty-bitmap-add', { node: 'drive-virtio1', name: 'pve-cbt-x', persistent: true }));
    expect(QmpCommandError.is(err)).toBe(true);
    expect(err.code).toBe('CBT_QMP_COMMAND');
    expect(err.details).toMatchObject({ command: 'block-dirty-bitmap-add', errorClass: 'GenericError' });
    expect(err.details.desc).toMatch(/Can't store persistent bitmaps to drive-virtio1/);
    const unknown = await errorOf(qmp.execute('no-such-command'));
    expect(unknown.details).toMatchObject({ errorClass: 'CommandNotFound' });
    // The session stays usable after errors.
    await expect(qmp.execute('query-status')).resolves.toMatchObject({ running: true });
  });

  it('returns HMP output as text', async () => {
    const qmp = await connect();
    expect(await hmp(qmp, 'info status')).toMatch(/VM status: running/);
  });

  it('retries while another client holds the socket, then fails with CBT_QMP_BUSY', async () => {
    await connect();
    const { logger, attempts } = attemptLogger();
    const started = Date.now();
    const err = await errorOf(QmpClient.connect(vm.qmpPath, { connectAttempts: 3, greetingTimeoutMs: 150, retryBaseDelayMs: 50, logger }));
    const elapsed = Date.now() - started;
    expect(QmpBusyError.is(err)).toBe(true);
    expect(err.details).toEqual({ socketPath: vm.qmpPath, attempts: 3 });
    // Busy shows as a missing greeting, or as EAGAIN once QEMU's one-slot listen backlog is taken.
    expect(attempts.map((a) => a.attempt)).toEqual([1, 2, 3]);
    for (const a of attempts) expect(a.reason).toMatch(/no greeting within 150 ms|EAGAIN/);
    expect(attempts[0].reason).toMatch(/no greeting/);
    // Back-off 50 + 100 ms between the attempts, and no hang.
    expect(elapsed).toBeGreaterThanOrEqual(150 + 150 - 20);
    expect(elapsed).toBeLessThan(10_000);
  });

  it('gets the socket once the holder lets go during the back-off', async () => {
    const holder = await connect();
    setTimeout(() => void holder.close(), 300);
    const qmp = await connect({ connectAttempts: 6, greetingTimeoutMs: 150, retryBaseDelayMs: 50 });
    await expect(qmp.execute('query-status')).resolves.toMatchObject({ running: true });
  });

  it('withQmp releases the socket even when the callback throws', async () => {
    await expect(withQmp(vm.qmpPath, async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    const qmp = await connect({ connectAttempts: 1, greetingTimeoutMs: 500 });
    await expect(qmp.execute('query-status')).resolves.toMatchObject({ running: true });
  });

  it('times out a command QEMU does not answer, and still matches later replies by id', async () => {
    const qmp = await connect();
    const pid = vm.pid()!;
    process.kill(pid, 'SIGSTOP');
    let err: any;
    try {
      err = await errorOf(qmp.execute('query-status', undefined, { timeoutMs: 200 }));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(QmpTimeoutError.is(err)).toBe(true);
    expect(err.details).toMatchObject({ command: 'query-status', timeoutMs: 200 });
    // The late query-status reply arrives now and must not be taken for query-name's.
    await expect(qmp.execute('query-name')).resolves.toEqual({ name: 'vm200' });
  });

  it('fails a pending command with CBT_QMP_DISCONNECTED when QEMU dies mid-command', async () => {
    const qmp = await connect();
    const pid = vm.pid()!;
    process.kill(pid, 'SIGSTOP');
    const pending = errorOf(qmp.execute('query-status', undefined, { timeoutMs: 30_000 }));
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    process.kill(pid, 'SIGKILL');
    const err = await pending;
    // Well below the command's 30 s timeout: the disconnect ended it, not the timer.
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(QmpDisconnectedError.is(err)).toBe(true);
    expect(err.details).toMatchObject({ command: 'query-status' });
    expect(qmp.closed).toBe(true);
    await expect(qmp.execute('query-status')).rejects.toMatchObject({ code: 'CBT_QMP_DISCONNECTED' });
    await vm.crash().catch(() => undefined);
  });

  it('fails fast with CBT_QMP_CONNECT when there is no socket', async () => {
    const missing = path.join(sim.node.runDir, '999.qmp');
    const { logger, attempts } = attemptLogger();
    // A retry would wait a minute first: "fast" is shown by the one attempt, not by a clock on a busy machine.
    const started = Date.now();
    const err = await errorOf(QmpClient.connect(missing, { connectAttempts: 5, retryBaseDelayMs: 60_000, maxRetryDelayMs: 60_000, logger }));
    expect(QmpConnectError.is(err)).toBe(true);
    expect(err.details).toMatchObject({ socketPath: missing, attempts: 5 });
    expect(err.details.reason).toMatch(/ENOENT/);
    expect(attempts.map((a) => a.attempt)).toEqual([1]);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('retries and fails with CBT_QMP_CONNECT on a stale socket left by a killed QEMU', async () => {
    const pid = vm.pid()!;
    process.kill(pid, 'SIGKILL');
    await waitFor(() => !vm.running());
    expect(fs.existsSync(vm.qmpPath)).toBe(true);
    const err = await errorOf(QmpClient.connect(vm.qmpPath, { connectAttempts: 2, retryBaseDelayMs: 10 }));
    expect(QmpConnectError.is(err)).toBe(true);
    expect(err.details.reason).toMatch(/ECONNREFUSED/);
    await vm.crash().catch(() => undefined);
  });

  it('fails with CBT_QMP_PROTOCOL, without retrying, when the socket is a human monitor, not QMP', async () => {
    const hmpPath = path.join(sim.node.root, 'hmp.sock');
    const pidFile = path.join(sim.node.root, 'hmp.pid');
    await execFileP('qemu-system-x86_64', [
      '-machine', 'accel=tcg', '-m', '16', '-nographic', '-nodefaults', '-daemonize', '-S', '-pidfile', pidFile,
      '-chardev', `socket,id=hmp,path=${hmpPath},server=on,wait=off`, '-mon', 'chardev=hmp,mode=readline',
    ]);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    try {
      const { logger, attempts } = attemptLogger();
      // A retry would wait a minute first: no failed attempt is logged, none is retried.
      const started = Date.now();
      const err = await errorOf(QmpClient.connect(hmpPath, { connectAttempts: 5, retryBaseDelayMs: 60_000, maxRetryDelayMs: 60_000, logger }));
      expect(QmpProtocolError.is(err)).toBe(true);
      expect(err.details).toMatchObject({ socketPath: hmpPath, reason: 'reply is not JSON' });
      expect(err.details.line).toMatch(/^QEMU .* monitor/);
      expect(attempts).toEqual([]);
      expect(Date.now() - started).toBeLessThan(30_000);
    } finally {
      process.kill(pid, 'SIGKILL');
    }
  });

  it('rejects commands after close()', async () => {
    const qmp = await connect();
    await qmp.close();
    await qmp.close();
    await expect(qmp.execute('query-status')).rejects.toMatchObject({ code: 'CBT_QMP_DISCONNECTED', details: { reason: 'closed by client' } });
  });
});

/** A debug logger collecting the client's per-attempt connect log lines (JSON). */
function attemptLogger(): { logger: winston.Logger; attempts: { attempt: number; reason: string }[] } {
  const attempts: { attempt: number; reason: string }[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      const line = JSON.parse(String(chunk)) as { attempt?: number; reason: string };
      if (line.attempt !== undefined) attempts.push({ attempt: line.attempt, reason: line.reason });
      done();
    },
  });
  const logger = winston.createLogger({ level: 'debug', format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] });
  return { logger, attempts };
}

async function waitFor(cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
