import { PassThrough } from 'node:stream';
import { createProgressReporter, formatBytes, formatDuration, formatReuse } from '../../../daemon/cli/progress';

function sink(isTTY: boolean): PassThrough & { text(): string; isTTY?: boolean } {
  const s = new PassThrough() as PassThrough & { text(): string; isTTY?: boolean };
  s.isTTY = isTTY;
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.text = () => Buffer.concat(chunks).toString('utf8');
  return s;
}

const MiB = 1024 * 1024;

test.each<[number, string]>([
  [0, '0 B'],
  [1023, '1023 B'],
  [1024, '1.0 KiB'],
  [64 * MiB, '64.0 MiB'],
  [1.5 * 1024 * MiB, '1.5 GiB'],
])('formatBytes(%i) = %s', (n, s) => expect(formatBytes(n)).toBe(s));

test.each<[number, string]>([
  [0, '0s'],
  [59_400, '59s'],
  [61_000, '1m01s'],
  [3_725_000, '1h02m'],
  [Infinity, '?'],
])('formatDuration(%i) = %s', (ms, s) => expect(formatDuration(ms)).toBe(s));

test('off a TTY: a line at most every interval, one at 100 %, none after finish', () => {
  const out = sink(false);
  let t = 0;
  const p = createProgressReporter({ label: 'scsi0', total: 100 * MiB, stream: out, now: () => t });
  t = 1000;
  p.update(10 * MiB); // before the 5 s interval: silent
  t = 5000;
  p.update(50 * MiB);
  t = 6000;
  p.update(60 * MiB); // silent again
  t = 10_000;
  p.update(100 * MiB); // complete
  p.finish();
  p.update(100 * MiB);
  const lines = out.text().trim().split('\n');
  expect(lines).toEqual(['scsi0: 50.0 MiB/100.0 MiB (50%), 10.0 MiB/s, ETA 5s', 'scsi0: 100.0 MiB/100.0 MiB (100%), 10.0 MiB/s, ETA 0s']);
});

test('throughput covers the last 10 s only, so the ETA follows the current speed', () => {
  const out = sink(false);
  let t = 0;
  const p = createProgressReporter({ label: 'd', total: 1000 * MiB, stream: out, now: () => t, intervalMs: 1 });
  for (t = 1000; t <= 20_000; t += 1000) p.update((t / 1000) * MiB); // 1 MiB/s
  for (let i = 1; i <= 10; i++) {
    t += 1000;
    p.update(20 * MiB + i * 10 * MiB); // now 10 MiB/s
  }
  const last = out.text().trim().split('\n').pop();
  expect(last).toBe('d: 120.0 MiB/1000.0 MiB (12%), 10.0 MiB/s, ETA 1m28s');
});

test('finish without reaching the total prints a summary line; unknown total shows bytes only', () => {
  const out = sink(false);
  let t = 0;
  const p = createProgressReporter({ label: 'gc', total: 0, stream: out, now: () => t });
  t = 5000;
  p.update(5 * MiB);
  t = 8000;
  p.finish();
  expect(out.text()).toBe('gc: 5.0 MiB, 1.0 MiB/s, ETA ?\ngc: 5.0 MiB in 8s (640.0 KiB/s)\n');
});

test('silent with --json', () => {
  const out = sink(true);
  const p = createProgressReporter({ label: 'x', total: 10, stream: out, json: true });
  p.update(10);
  p.finish();
  expect(out.text()).toBe('');
});

test('a bar with bytes, speed and ETA on a TTY', () => {
  const out = sink(true);
  let t = 0;
  const p = createProgressReporter({ label: 'scsi0', total: 10 * MiB, stream: out, now: () => t });
  t = 1000;
  p.update(5 * MiB);
  p.finish();
  const text = out.text();
  expect(text).toMatch(/scsi0 \[[^\]]+\] 50% \| 5\.0 MiB\/10\.0 MiB \| 5\.0 MiB\/s \| ETA 1s/);
});

test.each<[number, number, string]>([
  [0, 0, ''],
  [100, 0, 'reused 0%'],
  [100, 42, 'reused 42%'],
  [1000, 999, 'reused 99%'],
  [100, 100, 'reused 100%'],
])('formatReuse(%i chunk bytes, %i reused) = %p', (chunkBytes, reusedBytes, s) => expect(formatReuse({ chunkBytes, reusedBytes })).toBe(s));

test('reuse off a TTY: in every line and in the final line once every insert settled', () => {
  const out = sink(false);
  let t = 0;
  const p = createProgressReporter({ label: 'VM 101 scsi0 incremental', total: 40 * MiB, stream: out, now: () => t });
  t = 5000;
  p.update(20 * MiB, 40 * MiB, { chunkBytes: 16 * MiB, reusedBytes: 4 * MiB });
  t = 8000;
  p.update(40 * MiB, 40 * MiB, { chunkBytes: 32 * MiB, reusedBytes: 8 * MiB });
  p.update(40 * MiB, 40 * MiB, { chunkBytes: 40 * MiB, reusedBytes: 20 * MiB }); // the last inserts settled
  p.finish();
  expect(out.text().trim().split('\n')).toEqual([
    'VM 101 scsi0 incremental: 20.0 MiB/40.0 MiB (50%), 4.0 MiB/s, ETA 5s, reused 25%',
    'VM 101 scsi0 incremental: 40.0 MiB/40.0 MiB (100%), 5.0 MiB/s, ETA 0s, reused 25%',
    'VM 101 scsi0 incremental: 40.0 MiB in 8s (5.0 MiB/s), reused 50%',
  ]);
});

test('reuse on a TTY: on the bar, and on the bar left at the end', () => {
  const out = sink(true);
  const p = createProgressReporter({ label: 'VM 101 scsi0 full', total: 8 * MiB, stream: out });
  p.update(4 * MiB, 8 * MiB, { chunkBytes: 4 * MiB, reusedBytes: MiB });
  p.update(8 * MiB, 8 * MiB, { chunkBytes: 8 * MiB, reusedBytes: 6 * MiB });
  p.finish();
  const screen = out.text();
  expect(screen).toMatch(/VM 101 scsi0 full \[.*\] 100% \| 8\.0 MiB\/8\.0 MiB \| .* \| ETA \S+ \| reused 75%/);
});

test("finish('failed') prints no summary line: the error says what happened, not `0 B in 0s`", () => {
  const out = sink(false);
  let t = 0;
  const p = createProgressReporter({ label: 'restore scsi1', total: 8 * MiB, stream: out, now: () => t });
  t = 100;
  p.finish('failed');
  p.finish(); // idempotent: the first finish decided
  expect(out.text()).toBe('');
});

test('items (gc): counts shown as numbers, never as bytes, and no rate summary at the end', () => {
  const out = sink(false);
  let t = 0;
  const p = createProgressReporter({ label: 'gc mark', total: 19, stream: out, now: () => t, unit: 'items' });
  t = 5000;
  p.update(10);
  t = 6000;
  p.update(18);
  p.finish();
  expect(out.text()).toBe('gc mark: 10/19 (52%), 2.0/s, ETA 5s\n');
});
