import { createJobQueue } from '../../../daemon/jobs/job-queue';
import { createScheduler, MAX_TIMER_MS, type Clock, type SchedulableJob } from '../../../daemon/schedule/scheduler';

/** A clock under test control: time moves only through advance(), timers fire in due order. */
class FakeClock implements Clock {
  private timers: { at: number; fn: () => void; seq: number }[] = [];
  private seq = 0;
  constructor(private t: number) {}
  now(): Date {
    return new Date(this.t);
  }
  setTimer(ms: number, fn: () => void): () => void {
    if (ms > MAX_TIMER_MS) throw new Error(`timer of ${ms} ms would overflow setTimeout`);
    const timer = { at: this.t + ms, fn, seq: this.seq++ };
    this.timers.push(timer);
    return () => {
      this.timers = this.timers.filter((x) => x !== timer);
    };
  }
  /** Moves time forward, firing every timer due on the way at its own time. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const due = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (!due) break;
      this.timers = this.timers.filter((x) => x !== due);
      this.t = Math.max(this.t, due.at);
      due.fn();
    }
    this.t = end;
  }
  /** Sets the clock without firing timers (host suspended, or clock stepped). */
  jump(to: number): void {
    this.t = to;
  }
  pending(): number {
    return this.timers.length;
  }
}

const HOUR = 3_600_000;
const MIN = 60_000;
const start = new Date(2026, 10, 25, 12, 0, 0).getTime(); // Wed 12:00 local

function setup(jobs: SchedulableJob[]) {
  const clock = new FakeClock(start);
  const fired: { id: string; at: string; now: number }[] = [];
  const s = createScheduler({
    jobs,
    clock,
    onFire: (job, at) => {
      fired.push({ id: job.id, at: new Date(at).toTimeString().slice(0, 5), now: clock.now().getTime() });
    },
  });
  return { clock, fired, s };
}

test('fires each job at its next run, in order, and re-arms', () => {
  const { clock, fired, s } = setup([
    { id: 'quarter', schedule: '*/15' },
    { id: 'nightly', schedule: 'daily 02:00' },
    { id: 'off', schedule: '*/5', enabled: false },
  ]);
  s.start();
  expect(s.nextRuns()).toEqual([
    { jobId: 'quarter', at: new Date(start + 15 * MIN) },
    { jobId: 'nightly', at: new Date(2026, 10, 26, 2, 0, 0) },
  ]);
  clock.advance(14 * HOUR + 1);
  const quarters = fired.filter((f) => f.id === 'quarter');
  expect(quarters).toHaveLength(14 * 4);
  expect(quarters[0]).toEqual({ id: 'quarter', at: '12:15', now: start + 15 * MIN });
  expect(fired.filter((f) => f.id === 'nightly')).toEqual([{ id: 'nightly', at: '02:00', now: new Date(2026, 10, 26, 2).getTime() }]);
  expect(fired.some((f) => f.id === 'off')).toBe(false);
  for (const f of fired) expect(f.now).toBe(new Date(new Date(f.now).setHours(...(f.at.split(':').map(Number) as [number, number]), 0, 0)).getTime());
});

test('stop cancels every timer; start again resumes from now', () => {
  const { clock, fired, s } = setup([{ id: 'hourly', schedule: 'hourly' }]);
  s.start();
  clock.advance(HOUR);
  s.stop();
  expect(clock.pending()).toBe(0);
  clock.advance(5 * HOUR);
  expect(fired).toHaveLength(1);
  s.start();
  clock.advance(HOUR);
  expect(fired.map((f) => f.at)).toEqual(['13:00', '19:00']); // restarted exactly at 18:00: next is strictly later
});

test('a run missed while the host slept fires once, late, then the schedule continues', () => {
  const { clock, fired, s } = setup([{ id: 'quarter', schedule: '*/15' }]);
  s.start();
  clock.jump(start + 3 * HOUR + 7 * MIN); // timers did not run while suspended
  clock.advance(1);
  expect(fired).toEqual([{ id: 'quarter', at: '12:15', now: start + 3 * HOUR + 7 * MIN }]);
  clock.advance(8 * MIN);
  expect(fired.map((f) => f.at)).toEqual(['12:15', '15:15']);
});

test('a timer that fires early (clock stepped back) waits for the rest instead of firing', () => {
  const clock = new FakeClock(start);
  const fired: number[] = [];
  let armed: { fn: () => void; cancel: () => void } | undefined;
  const stepped: Clock = {
    now: () => clock.now(),
    setTimer: (ms, fn) => {
      const cancel = clock.setTimer(ms, fn);
      armed = { fn, cancel };
      return cancel;
    },
  };
  const s = createScheduler({ jobs: [{ id: 'h', schedule: 'hourly' }], clock: stepped, onFire: () => void fired.push(clock.now().getTime()) });
  s.start();
  // The timer goes off at 12:00, an hour early, as if the wall clock had been stepped back.
  armed?.cancel();
  armed?.fn();
  expect(fired).toEqual([]);
  clock.advance(HOUR);
  expect(fired).toEqual([start + HOUR]);
  s.stop();
});

test('waits longer than setTimeout allows are chained', () => {
  const { clock, fired, s } = setup([{ id: 'yearly', schedule: 'yearly' }]);
  s.start();
  clock.advance(40 * 24 * HOUR); // to 4 Jan 2027: several chained timers
  expect(fired.map((f) => new Date(f.now).toDateString())).toEqual([new Date(2027, 0, 1).toDateString()]);
  s.stop();
});

test('errors thrown by onFire do not stop the scheduler', () => {
  const clock = new FakeClock(start);
  let calls = 0;
  const s = createScheduler({
    jobs: [{ id: 'q', schedule: '*/15' }],
    clock,
    onFire: () => {
      calls++;
      throw new Error('queue closed');
    },
  });
  s.start();
  clock.advance(HOUR);
  expect(calls).toBe(4);
  s.stop();
});

test('a bad schedule fails at creation', () => {
  expect(() => createScheduler({ jobs: [{ id: 'x', schedule: 'dayly' }], clock: new FakeClock(start), onFire: () => undefined })).toThrow(
    expect.objectContaining({ code: 'CBT_SCHEDULE_INVALID' }),
  );
});

test('with the job queue: three VMs due at once run one at a time with concurrency 1', async () => {
  const clock = new FakeClock(start);
  const queue = createJobQueue({ concurrency: 1 });
  let active = 0;
  let maxActive = 0;
  const order: number[] = [];
  const done: Promise<unknown>[] = [];
  const jobs = [101, 102, 103].map((vmid) => ({ id: `vm${vmid}`, schedule: '12:30', vmid }));
  const s = createScheduler({
    jobs,
    clock,
    onFire: (job) => {
      const h = queue.enqueue({
        vmid: job.vmid,
        kind: 'backup',
        join: true,
        meta: { jobId: job.id },
        run: async () => {
          maxActive = Math.max(maxActive, ++active);
          order.push(job.vmid);
          await new Promise((r) => setTimeout(r, 10));
          active--;
        },
      });
      done.push(h.promise);
    },
  });
  s.start();
  clock.advance(29 * MIN);
  expect(done).toHaveLength(0);
  clock.advance(MIN);
  expect(done).toHaveLength(3);
  await Promise.all(done);
  expect(order).toEqual([101, 102, 103]);
  expect(maxActive).toBe(1);
  s.stop();
});
