/**
 * The live restore task's progress frames (`progressOf`, live-restore-task.ts): the task's last
 * frame is what `pve-cbt tasks` shows, so every frame carries the bytes moved of the total over
 * all disks so far, while a mirror frame also carries its own disk's bytes for the CLI's bars.
 * Two disks mirrored at once, their frames interleaved as QMP query-jobs answers them.
 */
import type { JobProgress } from '../../../daemon/jobs/job-queue';
import type { LiveRestoreEvent } from '../../../daemon/restore/live-restore';
import { progressOf } from '../../../daemon/restore/live-restore-task';

const MiB = 1024 * 1024;

type Row = [string, LiveRestoreEvent, Partial<JobProgress>];

const rows: Row[] = [
  ['first disk starts', { type: 'progress', disk: 'scsi0', done: 0, total: 4 * MiB }, { phase: 'mirror', disk: 'scsi0', done: 0, total: 4 * MiB, diskDone: 0, diskTotal: 4 * MiB }],
  ['second disk starts: the total is both', { type: 'progress', disk: 'scsi1', done: 1 * MiB, total: 2 * MiB }, { phase: 'mirror', disk: 'scsi1', done: 1 * MiB, total: 6 * MiB, diskDone: 1 * MiB, diskTotal: 2 * MiB }],
  ['first disk moves on', { type: 'progress', disk: 'scsi0', done: 3 * MiB, total: 4 * MiB }, { phase: 'mirror', disk: 'scsi0', done: 4 * MiB, total: 6 * MiB, diskDone: 3 * MiB, diskTotal: 4 * MiB }],
  ['second disk done', { type: 'progress', disk: 'scsi1', done: 2 * MiB, total: 2 * MiB }, { phase: 'mirror', disk: 'scsi1', done: 5 * MiB, total: 6 * MiB, diskDone: 2 * MiB, diskTotal: 2 * MiB }],
  ['first disk switched: counted whole', { type: 'switched', disk: 'scsi0', volid: 'local:9/vm-9-disk-0.raw' }, { phase: 'switched', disk: 'scsi0', done: 6 * MiB, total: 6 * MiB }],
  ['the export closed: a step of all disks', { type: 'export-closed' }, { phase: 'export-closed', done: 6 * MiB, total: 6 * MiB }],
];

test('frames of a two-disk live restore: done/total over both disks, the mirror frame with its own disk', () => {
  const frames: JobProgress[] = [];
  const onEvent = progressOf(9, (p) => frames.push(p));
  rows.forEach(([what, event, want], k) => {
    onEvent(event);
    expect({ what, frame: frames[k] }).toEqual({ what, frame: expect.objectContaining(want) });
  });
  expect(frames).toHaveLength(rows.length);
  expect(frames.filter((f) => f.phase !== 'mirror').every((f) => f.diskDone === undefined && f.diskTotal === undefined)).toBe(true);
});
