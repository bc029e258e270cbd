import {
  applyLifecycleEvent,
  checkEvent,
  newVmActivity,
  type BitmapState,
  type DiskBitmapRecord,
  type VmActivity,
} from '../../../daemon/ledger/ledger-rules';
import type { LifecycleEvent } from '../../../shared/ipc/messages';

const T = '2026-11-25T10:00:00.000Z';

function disk(name: string, format: string, state: BitmapState, qemuPid: number | null = null): DiskBitmapRecord {
  return { vmid: 100, disk: name, format, state, reason: null, changedAt: T, bitmapName: `pve-cbt-${name}`, generation: 1, qemuPid, qemuStartTime: null };
}
const hook = (phase: string, extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({ vmid: 100, phase, source: 'hookscript', time: T, ...extra });
const vz = (phase: string, mode: LifecycleEvent['mode'], extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({ vmid: 100, phase, source: 'vzdump', mode, time: T, ...extra });
const act = (a: Partial<VmActivity> = {}): VmActivity => ({ ...newVmActivity(100), ...a });

/** Three disks: raw and vmdk (transient bitmaps) and qcow2 (persistent), all valid under pid 4242. */
const DISKS = [disk('scsi0', 'qcow2', 'valid', 4242), disk('scsi1', 'raw', 'valid', 4242), disk('virtio0', 'vmdk', 'valid', 4242)];

type Row = [string, LifecycleEvent, VmActivity | null, { scsi0: BitmapState; scsi1: BitmapState; virtio0: BitmapState }, RegExp | null];

describe('ledger rules', () => {
  const rows: Row[] = [
    ['clean stop: pre-stop invalidates transient, qcow2 stays', hook('pre-stop'), act({ running: true, qemuPid: 4242 }), { scsi0: 'valid', scsi1: 'invalid', virtio0: 'invalid' }, /hookscript pre-stop: QEMU is stopping/],
    ['clean stop: post-stop after pre-stop keeps qcow2 valid', hook('post-stop'), act({ running: true, stopExpected: true }), { scsi0: 'valid', scsi1: 'invalid', virtio0: 'invalid' }, /QEMU stopped/],
    ['crash: post-stop without pre-stop makes qcow2 suspect', hook('post-stop'), act({ running: true, qemuPid: 4242 }), { scsi0: 'suspect', scsi1: 'invalid', virtio0: 'invalid' }, /without pre-stop \(crash or kill\)/],
    ['crash with no history at all is still a crash', hook('post-stop'), null, { scsi0: 'suspect', scsi1: 'invalid', virtio0: 'invalid' }, /crash/],
    ['start after a clean stop: transient invalid, qcow2 valid', hook('pre-start'), act({ running: false }), { scsi0: 'valid', scsi1: 'invalid', virtio0: 'invalid' }, /new QEMU process/],
    ['start while the old QEMU was never seen stopping: qcow2 suspect', hook('pre-start'), act({ running: true, qemuPid: 4242 }), { scsi0: 'suspect', scsi1: 'invalid', virtio0: 'invalid' }, /never seen stopping/],
    ['migration target: everything unknown', hook('pre-start', { migratedFrom: 'node2' }), act(), { scsi0: 'unknown', scsi1: 'unknown', virtio0: 'unknown' }, /migrated from node2/],
    ['post-start with the same pid changes nothing', hook('post-start', { qemuPid: 4242 }), act({ qemuPid: 4242 }), { scsi0: 'valid', scsi1: 'valid', virtio0: 'valid' }, null],
    ['post-start under a new pid: transient invalid', hook('post-start', { qemuPid: 5000 }), act({ running: false }), { scsi0: 'valid', scsi1: 'invalid', virtio0: 'invalid' }, /pid is 5000, bitmap was created under pid 4242/],
    ['pid change without a stop seen: transient invalid, qcow2 suspect', vz('backup-start', 'snapshot', { qemuPid: 5000 }), act({ running: true, qemuPid: 4242 }), { scsi0: 'suspect', scsi1: 'invalid', virtio0: 'invalid' }, /pid changed from 4242 to 5000/],
    ['vzdump stop mode pre-stop: transient invalid', vz('pre-stop', 'stop'), act({ running: true }), { scsi0: 'valid', scsi1: 'invalid', virtio0: 'invalid' }, /vzdump pre-stop \(stop mode\)/],
    ['vzdump stop mode pre-restart: transient invalid', vz('pre-restart', 'stop'), act(), { scsi0: 'valid', scsi1: 'invalid', virtio0: 'invalid' }, /restarted QEMU/],
    ['vzdump stop mode post-restart: transient invalid', vz('post-restart', 'stop'), act(), { scsi0: 'valid', scsi1: 'invalid', virtio0: 'invalid' }, /restarted QEMU/],
    ['vzdump suspend mode keeps the same QEMU', vz('pre-restart', 'suspend'), act({ running: true }), { scsi0: 'valid', scsi1: 'valid', virtio0: 'valid' }, null],
    ['vzdump snapshot backup-start changes no bitmap', vz('backup-start', 'snapshot'), act({ running: true }), { scsi0: 'valid', scsi1: 'valid', virtio0: 'valid' }, null],
  ];

  test.each(rows)('%s', (_name, ev, before, expected, reason) => {
    expect(checkEvent(ev)).toBeNull();
    const out = applyLifecycleEvent(ev, before, DISKS);
    const states = Object.fromEntries(DISKS.map((d) => [d.disk, out.changes.find((c) => c.disk === d.disk)?.to ?? d.state]));
    expect(states).toEqual(expected);
    for (const c of out.changes) expect(c.from).toBe('valid');
    if (reason) expect(out.changes.map((c) => c.reason)).toContainEqual(expect.stringMatching(reason));
    else expect(out.changes).toEqual([]);
  });

  test('rules only lower trust: invalid stays invalid, unknown never becomes suspect', () => {
    const disks = [disk('scsi0', 'qcow2', 'unknown'), disk('scsi1', 'raw', 'invalid'), disk('scsi2', 'qcow2', 'invalid')];
    const crash = applyLifecycleEvent(hook('post-stop'), act({ running: true }), disks);
    expect(crash.changes).toEqual([]);
    const migrated = applyLifecycleEvent(hook('pre-start', { migratedFrom: 'n2' }), null, disks);
    expect(migrated.changes).toEqual([]);
  });

  test('class effects describe the event for bitmaps not yet recorded', () => {
    expect(applyLifecycleEvent(hook('post-stop'), act({ stopExpected: true }), []).classEffects).toEqual({
      transient: { to: 'invalid', reason: expect.stringMatching(/QEMU stopped/) },
      persistent: null,
    });
    expect(applyLifecycleEvent(hook('post-stop'), act(), []).classEffects).toEqual({
      transient: { to: 'invalid', reason: expect.any(String) },
      persistent: { to: 'suspect', reason: expect.any(String) },
    });
    expect(applyLifecycleEvent(vz('backup-end', 'snapshot'), act(), []).classEffects).toEqual({ transient: null, persistent: null });
  });

  const activityRows: Array<[string, LifecycleEvent[], Partial<VmActivity>]> = [
    ['qm start', [hook('pre-start'), hook('post-start', { qemuPid: 7 })], { running: true, qemuPid: 7, stopExpected: false }],
    ['qm stop', [hook('post-start', { qemuPid: 7 }), hook('pre-stop', { qemuPid: 7 })], { running: true, stopExpected: true }],
    ['post-stop resets', [hook('pre-stop', { qemuPid: 7 }), hook('post-stop')], { running: false, stopExpected: false, qemuPid: null }],
    ['vzdump busy', [vz('backup-start', 'snapshot')], { vzdumpBusy: true, vzdumpMode: 'snapshot', vzdumpSince: T }],
    ['vzdump done', [vz('backup-start', 'snapshot'), vz('backup-end', 'snapshot')], { vzdumpBusy: false, vzdumpMode: null }],
    ['vzdump aborted', [vz('backup-start', 'stop'), vz('backup-abort', 'stop')], { vzdumpBusy: false }],
  ];
  test.each(activityRows)('activity after %s', (_name, events, expected) => {
    let a: VmActivity | null = null;
    for (const ev of events) a = applyLifecycleEvent(ev, a, []).activity;
    expect(a).toMatchObject(expected);
  });

  test('job-level vzdump events name no VM; job-end and job-abort clear every busy flag', () => {
    for (const phase of ['job-init', 'job-start', 'job-end', 'job-abort']) {
      const ev: LifecycleEvent = { phase, source: 'vzdump', time: T };
      expect(checkEvent(ev)).toBeNull();
      const out = applyLifecycleEvent(ev, null, DISKS);
      expect(out).toMatchObject({ changes: [], activity: null, clearAllVzdumpBusy: phase === 'job-end' || phase === 'job-abort' });
    }
  });

  const badEvents: Array<[string, LifecycleEvent, RegExp]> = [
    ['unknown guest phase', hook('pre-explode'), /unknown hookscript phase/],
    ['vzdump phase under the guest source', hook('backup-start'), /unknown hookscript phase/],
    ['guest event without vmid', { phase: 'pre-start', source: 'hookscript', time: T }, /needs a vmid/],
    ['job event with vmid', { vmid: 100, phase: 'job-end', source: 'vzdump', time: T }, /carries no vmid/],
    ['vzdump guest event without mode', vz('backup-start', undefined), /needs a mode/],
    ['bad time', hook('pre-start', { time: 'yesterday' }), /ISO 8601/],
    ['bad pid', hook('post-start', { qemuPid: -1 }), /qemuPid/],
    ['bad source', { vmid: 100, phase: 'pre-start', source: 'cron' as 'vzdump', time: T }, /unknown source/],
    ['vmid out of range', hook('pre-start', { vmid: 0 }), /needs a vmid/],
  ];
  test.each(badEvents)('refuses %s', (_name, ev, reason) => {
    expect(checkEvent(ev)).toMatch(reason);
  });
});
