import { spawn, type ChildProcess } from 'node:child_process';
import { Writable } from 'node:stream';
import winston from 'winston';
import { retryCleanup, stopCleanupRetry } from '../../../daemon/backup/cleanup-retry';
import { processStartTime } from '../../../daemon/pve/qemu-process';

/** A real process standing in for QEMU: its pid and start time are what the retry watches. */
function standIn(): { child: ChildProcess; qemu: { pid: number; startTime: number } } {
  const child = spawn('sleep', ['600'], { stdio: 'ignore' });
  const pid = child.pid as number;
  return { child, qemu: { pid, startTime: processStartTime(pid) as number } };
}

function recordingLogger(): { logger: winston.Logger; messages: string[] } {
  const messages: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      messages.push(String((JSON.parse(String(chunk)) as { message: string }).message));
      done();
    },
  });
  return { logger: winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.Stream({ stream })] }), messages };
}

async function waitFor(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const children: ChildProcess[] = [];
afterAll(() => children.forEach((c) => c.kill('SIGKILL')));

test('retries with a growing, bounded delay until an attempt succeeds', async () => {
  const { child, qemu } = standIn();
  children.push(child);
  const { logger, messages } = recordingLogger();
  const at: number[] = [];
  retryCleanup({
    vmid: 9001,
    qemu,
    firstDelayMs: 10,
    maxDelayMs: 40,
    logger,
    attempt: async () => {
      at.push(Date.now());
      if (at.length < 5) throw new Error('QEMU does not answer');
    },
  });
  await waitFor(() => messages.includes('leftovers of the failed backup cleaned in the background'));
  expect(at).toHaveLength(5);
  expect(messages.filter((m) => m === 'cleanup of the failed backup failed; retrying')).toHaveLength(4);
  const gaps = at.slice(1).map((t, i) => t - at[i]);
  expect(gaps[1]).toBeGreaterThanOrEqual(35); // 20, then 40, 40: doubled and capped
  expect(gaps[3]).toBeGreaterThanOrEqual(35);
});

test('ends without another attempt once the QEMU process is gone', async () => {
  const { child, qemu } = standIn();
  const { logger, messages } = recordingLogger();
  let attempts = 0;
  retryCleanup({ vmid: 9002, qemu, firstDelayMs: 10, maxDelayMs: 20, logger, attempt: async () => {
    attempts++;
    throw new Error('QEMU does not answer');
  } });
  await waitFor(() => attempts >= 2);
  child.kill('SIGKILL');
  await waitFor(() => messages.includes('QEMU is gone; its leftovers of the failed backup went with it'));
  const final = attempts;
  expect(final).toBeGreaterThanOrEqual(2);
  expect(messages.filter((m) => m.startsWith('leftovers of the failed backup cleaned'))).toEqual([]);
});

test('stopCleanupRetry waits for a running attempt and no attempt follows', async () => {
  const { child, qemu } = standIn();
  children.push(child);
  let running = 0;
  let attempts = 0;
  let release: () => void = () => undefined;
  retryCleanup({ vmid: 9003, qemu, firstDelayMs: 10, maxDelayMs: 10, attempt: () => {
    attempts++;
    running++;
    return new Promise<void>((_resolve, reject) => {
      release = () => {
        running--;
        reject(new Error('QEMU does not answer'));
      };
    });
  } });
  await waitFor(() => running === 1);
  const stopped = stopCleanupRetry(9003);
  let done = false;
  void stopped.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  expect(done).toBe(false);
  release();
  await stopped;
  expect(running).toBe(0);
  const seen = attempts;
  // Nothing is scheduled any more: while another VM's retry with the same delay makes three
  // attempts, the stopped one makes none.
  let other = 0;
  retryCleanup({ vmid: 9004, qemu, firstDelayMs: 10, maxDelayMs: 10, attempt: async () => {
    if (++other < 3) throw new Error('QEMU does not answer');
  } });
  await waitFor(() => other === 3);
  expect(attempts).toBe(seen);
});
