import type { CatalogJob } from '../../../daemon/catalog/backup-catalog';
import { mergeTasks, type LiveTask, type TaskStatus } from '../../../daemon/service/task-records';

const T0 = new Date('2026-12-05T03:00:00.000Z');
const row = (id: string, status: CatalogJob['status'], extra: Partial<CatalogJob> = {}): CatalogJob => ({
  id,
  kind: 'backup',
  vmid: 101,
  startedAt: '2026-12-05T02:00:00.000Z',
  endedAt: status === 'running' ? null : '2026-12-05T02:10:00.000Z',
  status,
  backupId: null,
  errorCode: null,
  errorMessage: null,
  result: null,
  ...extra,
});
const live = (id: string, state: LiveTask['state'], started: boolean): LiveTask => ({
  id,
  vmid: 101,
  kind: 'backup',
  state,
  queuedAt: T0,
  startedAt: started ? new Date(T0.getTime() + 1000) : undefined,
  progress: started ? { done: 5, total: 10, disk: 'scsi0', phase: 'full' } : undefined,
});

test.each<[string, LiveTask[], CatalogJob[], { id: string; status: TaskStatus; startedAt: string | null; progress: boolean }[]]>([
  ['history only, newest first as the catalog lists it', [], [row('b', 'ok', { backupId: 'vm/101/x' }), row('a', 'failed', { errorCode: 'CBT_X' })], [
    { id: 'b', status: 'ok', startedAt: '2026-12-05T02:00:00.000Z', progress: false },
    { id: 'a', status: 'failed', startedAt: '2026-12-05T02:00:00.000Z', progress: false },
  ]],
  ['a job the previous daemon left running is interrupted', [], [row('a', 'failed', { errorCode: 'CBT_JOB_INTERRUPTED' })], [{ id: 'a', status: 'interrupted', startedAt: '2026-12-05T02:00:00.000Z', progress: false }]],
  ['a running task: the live view wins over its `running` row, with progress', [live('r', 'running', true)], [row('r', 'running'), row('a', 'ok')], [
    { id: 'r', status: 'running', startedAt: '2026-12-05T03:00:01.000Z', progress: true },
    { id: 'a', status: 'ok', startedAt: '2026-12-05T02:00:00.000Z', progress: false },
  ]],
  ['a queued task has no row yet', [live('q', 'queued', false)], [], [{ id: 'q', status: 'queued', startedAt: null, progress: false }]],
  ['a task that just ended: its row says how', [live('c', 'cancelled', true)], [row('c', 'cancelled')], [{ id: 'c', status: 'cancelled', startedAt: '2026-12-05T03:00:01.000Z', progress: false }]],
])('%s', (_what, liveTasks, rows, expected) => {
  const out = mergeTasks(liveTasks, rows);
  expect(out.map((t) => ({ id: t.id, status: t.status, startedAt: t.startedAt, progress: t.progress !== null }))).toEqual(expected);
});

test('a record carries the backup, the error and the times of its row', () => {
  const [t] = mergeTasks([], [row('b', 'ok', { backupId: 'vm/101/2026-12-05T02:00:00Z', result: { id: 'vm/101/2026-12-05T02:00:00Z' } })]);
  expect(t).toEqual({
    id: 'b',
    vmid: 101,
    kind: 'backup',
    status: 'ok',
    queuedAt: null,
    startedAt: '2026-12-05T02:00:00.000Z',
    endedAt: '2026-12-05T02:10:00.000Z',
    backupId: 'vm/101/2026-12-05T02:00:00Z',
    error: null,
    progress: null,
    result: { id: 'vm/101/2026-12-05T02:00:00Z' },
  });
  const [f] = mergeTasks([], [row('f', 'failed', { errorCode: 'CBT_BACKUP_READ', errorMessage: 'read failed' })]);
  expect(f.error).toEqual({ code: 'CBT_BACKUP_READ', message: 'read failed' });
});
