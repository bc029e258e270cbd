import { formatTime } from '../../../daemon/cli/format-time';
import { progressText, taskListText, taskShowText } from '../../../daemon/cli/task-text';
import type { TaskRecord } from '../../../daemon/service/task-records';

test.each<[string | number | Date | null | undefined, string]>([
  ['2026-12-05T03:00:00.123Z', '2026-12-05T03:00:00Z'],
  [new Date(Date.UTC(2026, 11, 5, 3, 0, 0)), '2026-12-05T03:00:00Z'],
  [Date.UTC(2026, 0, 2, 23, 59, 59), '2026-01-02T23:59:59Z'],
  ['2026-12-05T04:00:00+01:00', '2026-12-05T03:00:00Z'],
  [null, '-'],
  [undefined, '-'],
  ['not a time', 'not a time'],
])('formatTime(%p) = %s', (t, s) => expect(formatTime(t)).toBe(s));

const MiB = 1024 * 1024;
const task = (over: Partial<TaskRecord>): TaskRecord => ({
  id: 'task-mi8x2k-1',
  vmid: 101,
  kind: 'backup',
  status: 'ok',
  queuedAt: null,
  startedAt: '2026-12-05T02:00:03.411Z',
  endedAt: '2026-12-05T02:01:10.002Z',
  backupId: 'vm/101/2026-12-05T02:00:03Z',
  error: null,
  progress: null,
  result: null,
  ...over,
});

test('progress of a running task: disk, mode, percent, bytes and reuse', () => {
  expect(progressText({ done: 12 * MiB, total: 48 * MiB, disk: 'scsi0', phase: 'incremental', chunkBytes: 8 * MiB, reusedBytes: 6 * MiB })).toBe('scsi0 incremental 25% 12.0 MiB/48.0 MiB, reused 75%');
  expect(progressText({ done: 0, total: 0 })).toBe('0 B/0 B');
  expect(progressText(null)).toBe('');
});

test('task list: one row per task like the Proxmox task list, ISO times', () => {
  const text = taskListText([
    task({ id: 'task-mi8x2k-2', status: 'running', endedAt: null, backupId: null, progress: { done: MiB, total: 4 * MiB, disk: 'scsi0', phase: 'full' } }),
    task({}),
    task({ id: 'task-mi8x2k-0', status: 'interrupted', backupId: null, error: { code: 'CBT_JOB_INTERRUPTED', message: 'x' } }),
  ]);
  expect(text.split('\n')).toEqual([
    'ID             VM   KIND    STATUS       START                 END                   INFO',
    'task-mi8x2k-2  101  backup  running      2026-12-05T02:00:03Z  -                     scsi0 full 25% 1.0 MiB/4.0 MiB',
    'task-mi8x2k-1  101  backup  ok           2026-12-05T02:00:03Z  2026-12-05T02:01:10Z  vm/101/2026-12-05T02:00:03Z',
    'task-mi8x2k-0  101  backup  interrupted  2026-12-05T02:00:03Z  2026-12-05T02:01:10Z  CBT_JOB_INTERRUPTED',
  ]);
  expect(taskListText([])).toBe('no tasks');
});

test('task show: fields, the error, the disks of its backup', () => {
  const text = taskShowText(
    task({ status: 'failed', backupId: null, error: { code: 'CBT_BACKUP_READ', message: 'read failed' }, result: null }),
  );
  expect(text).toContain('status:  failed');
  expect(text).toContain('started: 2026-12-05T02:00:03Z');
  expect(text).toContain('error:   CBT_BACKUP_READ: read failed');
  const ok = taskShowText(task({ result: { disks: [{ disk: 'scsi0', mode: 'incremental', bytesRead: 2 * MiB, bytesStored: MiB }] } }));
  expect(ok).toContain('disk scsi0: incremental, read 2.0 MiB, stored 1.0 MiB');
  expect(ok).toContain('backup:     vm/101/2026-12-05T02:00:03Z');
});
