import { JobCancelledError, JobQueueClosedError } from '../../../daemon/jobs/job-errors';
import { createJobQueue, type JobProgress } from '../../../daemon/jobs/job-queue';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A job that records when it starts and ends, takes `ms`, and stops early when aborted. */
function recorder() {
  const events: string[] = [];
  let active = 0;
  let maxActive = 0;
  const job = (name: string, ms: number, result: unknown = name) => async (signal: AbortSignal) => {
    events.push(`start ${name}`);
    maxActive = Math.max(maxActive, ++active);
    try {
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(resolve, ms);
        signal.addEventListener('abort', () => {
          clearTimeout(t);
          events.push(`abort ${name}`);
          reject(signal.reason);
        });
      });
      return result;
    } finally {
      active--;
      events.push(`end ${name}`);
    }
  };
  return { events, job, maxActive: () => maxActive };
}

test('runs up to the global concurrency limit at once', async () => {
  const r = recorder();
  const q = createJobQueue({ concurrency: 2 });
  const handles = [101, 102, 103, 104].map((vmid) => q.enqueue({ vmid, kind: 'backup', run: r.job(String(vmid), 30) }));
  expect(handles.map((h) => h.state)).toEqual(['running', 'running', 'queued', 'queued']);
  expect(await Promise.all(handles.map((h) => h.promise))).toEqual(['101', '102', '103', '104']);
  expect(r.maxActive()).toBe(2);
  expect(handles.map((h) => h.state)).toEqual(['done', 'done', 'done', 'done']);
});

test('one job per VM: a second request for the same VM waits; other VMs overtake it', async () => {
  const r = recorder();
  const q = createJobQueue({ concurrency: 2 });
  const a1 = q.enqueue({ vmid: 101, kind: 'backup', run: r.job('a1', 40) });
  const a2 = q.enqueue({ vmid: 101, kind: 'backup', run: r.job('a2', 10) });
  const b = q.enqueue({ vmid: 102, kind: 'backup', run: r.job('b', 10) });
  expect([a1.state, a2.state, b.state]).toEqual(['running', 'queued', 'running']);
  await Promise.all([a1.promise, a2.promise, b.promise]);
  expect(r.events.indexOf('start a2')).toBeGreaterThan(r.events.indexOf('end a1'));
  expect(r.events.indexOf('start b')).toBeLessThan(r.events.indexOf('end a1'));
});

test.each<[string, boolean, string, number]>([
  ['join: same VM and kind, still queued → same handle', true, 'backup', 1],
  ['no join flag → a second job', false, 'backup', 2],
  ['join but other kind → a second job', true, 'verify', 2],
])('%s', async (_name, join, kind, expectedRuns) => {
  const r = recorder();
  const q = createJobQueue({ concurrency: 1 });
  const running = q.enqueue({ vmid: 101, kind: 'backup', run: r.job('running', 20) });
  const first = q.enqueue({ vmid: 101, kind: 'backup', run: r.job('first', 5), join: true });
  const second = q.enqueue({ vmid: 101, kind, run: r.job('second', 5), join });
  expect(second === first).toBe(expectedRuns === 1);
  await Promise.all([running.promise, first.promise, second.promise]);
  expect(r.events.filter((e) => e.startsWith('start')).length).toBe(1 + expectedRuns);
});

test('a running job is never joined', async () => {
  const r = recorder();
  const q = createJobQueue({ concurrency: 1 });
  const a = q.enqueue({ vmid: 101, kind: 'backup', run: r.job('a', 20) });
  const b = q.enqueue({ vmid: 101, kind: 'backup', run: r.job('b', 5), join: true });
  expect(b).not.toBe(a);
  await Promise.all([a.promise, b.promise]);
});

test('progress is kept on the handle and pushed to listeners', async () => {
  const q = createJobQueue({ concurrency: 1 });
  const seen: JobProgress[] = [];
  const h = q.enqueue({
    vmid: 101,
    kind: 'backup',
    run: async (_signal, progress) => {
      progress({ done: 1, total: 4, disk: 'scsi0' });
      await sleep(5);
      progress({ done: 4, total: 4, disk: 'scsi0' });
      return 'ok';
    },
  });
  h.onProgress((p) => seen.push(p));
  await h.promise;
  expect(seen).toEqual([{ done: 4, total: 4, disk: 'scsi0' }]); // the first came before the listener
  expect(h.progress).toEqual({ done: 4, total: 4, disk: 'scsi0' });
});

test('a failing job rejects its promise and frees the VM and the slot', async () => {
  const q = createJobQueue({ concurrency: 1 });
  const bad = q.enqueue({ vmid: 101, kind: 'backup', run: async () => Promise.reject(new Error('disk gone')) });
  const next = q.enqueue({ vmid: 101, kind: 'backup', run: async () => 'ok' });
  await expect(bad.promise).rejects.toThrow('disk gone');
  expect(bad.state).toBe('failed');
  await expect(next.promise).resolves.toBe('ok');
});

test('cancel: a queued job is removed, a running one is aborted through its signal', async () => {
  const r = recorder();
  const q = createJobQueue({ concurrency: 1 });
  const a = q.enqueue({ vmid: 101, kind: 'backup', run: r.job('a', 5000) });
  const b = q.enqueue({ vmid: 102, kind: 'backup', run: r.job('b', 5) });
  b.cancel('not needed');
  await expect(b.promise).rejects.toMatchObject({ code: JobCancelledError.code, details: { vmid: 102, reason: 'not needed' } });
  a.cancel();
  await expect(a.promise).rejects.toMatchObject({ code: JobCancelledError.code, details: { vmid: 101 } });
  expect(a.state).toBe('cancelled');
  expect(r.events).toEqual(['start a', 'abort a', 'end a']);
  expect(q.list()).toEqual([]);
});

test('cancelAll (SIGTERM) aborts running jobs, drops queued ones, waits for cleanup, refuses new work', async () => {
  const r = recorder();
  const q = createJobQueue({ concurrency: 2 });
  const cleaned: string[] = [];
  const slowCleanup = q.enqueue({
    vmid: 101,
    kind: 'backup',
    run: async (signal) => {
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      await sleep(30); // e.g. removing a partial snapshot, merging a bitmap back
      cleaned.push('101');
      throw signal.reason;
    },
  });
  const other = q.enqueue({ vmid: 102, kind: 'backup', run: r.job('102', 5000) });
  const waiting = q.enqueue({ vmid: 103, kind: 'backup', run: r.job('103', 5) });
  const t0 = Date.now();
  await q.cancelAll();
  expect(Date.now() - t0).toBeGreaterThanOrEqual(25);
  expect(cleaned).toEqual(['101']);
  expect([slowCleanup.state, other.state, waiting.state]).toEqual(['cancelled', 'cancelled', 'cancelled']);
  expect(r.events).not.toContain('start 103');
  await expect(waiting.promise).rejects.toMatchObject({ code: JobCancelledError.code });
  expect(() => q.enqueue({ vmid: 104, kind: 'backup', run: async () => 1 })).toThrow(expect.objectContaining({ code: JobQueueClosedError.code }));
});

test('list and get show running then queued jobs', () => {
  const q = createJobQueue({ concurrency: 1, newId: (() => { let n = 0; return () => `t${++n}`; })() });
  const a = q.enqueue({ vmid: 101, kind: 'backup', run: () => sleep(20) });
  const b = q.enqueue({ vmid: 102, kind: 'verify', run: () => sleep(1) });
  expect(q.list().map((h) => [h.id, h.state])).toEqual([['t1', 'running'], ['t2', 'queued']]);
  expect(q.get('t2')).toBe(b);
  return Promise.all([a.promise, b.promise]);
});

test('an ignored rejected promise does not become an unhandled rejection', async () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const q = createJobQueue({ concurrency: 1 });
    q.enqueue({ vmid: 101, kind: 'backup', run: async () => Promise.reject(new Error('ignored')) });
    await sleep(20);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  expect(unhandled).toEqual([]);
});

test('concurrency must be a positive integer', () => {
  expect(() => createJobQueue({ concurrency: 0 })).toThrow(RangeError);
});
