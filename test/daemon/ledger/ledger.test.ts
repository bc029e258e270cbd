import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { migration as ledgerMigration } from '../../../daemon/catalog/migrations/002-ledger';
import { migration as ledgerVolumesMigration } from '../../../daemon/catalog/migrations/003-ledger-volumes';
import { Ledger } from '../../../daemon/ledger/ledger';
import type { LifecycleEvent } from '../../../shared/ipc/messages';

const T = '2026-11-25T10:00:00.000Z';
const hook = (vmid: number, phase: string, extra: Partial<LifecycleEvent> = {}): LifecycleEvent => ({ vmid, phase, source: 'hookscript', time: T, ...extra });

describe('ledger store', () => {
  let dir: string;
  let dbFile: string;
  let db: Database.Database;
  let ledger: Ledger;
  const clock = { t: Date.parse('2026-11-25T12:00:00Z') };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    dbFile = path.join(dir, 'catalog.sqlite');
    // Only the ledger's own migration: it must not depend on the repository tables.
    db = openCatalog(dbFile, [ledgerMigration, ledgerVolumesMigration]);
    ledger = new Ledger(db, undefined, () => new Date(clock.t));
  });
  afterEach(() => {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const valid = (vmid: number, disk: string, format: string, qemuPid: number | null = 4242): void => {
    expect(ledger.markValid({ vmid, disk, format, bitmapName: `pve-cbt-${disk}-g1`, generation: 1, qemuPid, qemuStartTime: 123456 })).toBe(true);
  };

  test('a restart invalidates the raw disk only and survives reopening the database', () => {
    valid(100, 'scsi0', 'qcow2');
    valid(100, 'scsi1', 'raw');
    valid(101, 'scsi0', 'raw');
    expect(ledger.get(100, 'scsi1')).toEqual({
      vmid: 100, disk: 'scsi1', format: 'raw', state: 'valid', reason: null, changedAt: '2026-11-25T12:00:00.000Z',
      bitmapName: 'pve-cbt-scsi1-g1', generation: 1, qemuPid: 4242, qemuStartTime: 123456,
    });
    for (const phase of ['pre-stop', 'post-stop', 'pre-start']) ledger.recordEvent(hook(100, phase, { seq: `s-${phase}` }));
    ledger.recordEvent(hook(100, 'post-start', { seq: 's-post-start', qemuPid: 5000 }));
    db.close();
    db = openCatalog(dbFile, [ledgerMigration, ledgerVolumesMigration]);
    ledger = new Ledger(db);
    expect(ledger.list(100).map((r) => [r.disk, r.state])).toEqual([['scsi0', 'valid'], ['scsi1', 'invalid']]);
    expect(ledger.get(100, 'scsi1')?.reason).toBe('hookscript pre-stop: QEMU is stopping and takes the transient bitmap with it');
    expect(ledger.get(101, 'scsi0')?.state).toBe('valid');
    expect(ledger.list().length).toBe(3);
    expect(ledger.activity(100)).toMatchObject({ running: true, qemuPid: 5000 });
    const evs = ledger.events(100);
    expect(evs.map((e) => e.phase)).toEqual(['pre-stop', 'post-stop', 'pre-start', 'post-start']);
    expect(evs[0].effect.changes).toEqual([{ disk: 'scsi1', from: 'valid', to: 'invalid', reason: expect.any(String) }]);
    expect(evs[1].effect.changes).toEqual([]);
    expect(ledger.events(undefined, 2).map((e) => e.phase)).toEqual(['pre-start', 'post-start']);
  });

  test('exactly once by seq: a replayed event changes nothing and is stored once', () => {
    valid(100, 'scsi0', 'qcow2');
    const crash = hook(100, 'post-stop', { seq: 'abc' });
    expect(ledger.recordEvent(crash)).toEqual({ duplicate: false });
    expect(ledger.get(100, 'scsi0')?.state).toBe('suspect');
    valid(100, 'scsi0', 'qcow2');
    expect(ledger.recordEvent(crash)).toEqual({ duplicate: true });
    expect(ledger.get(100, 'scsi0')?.state).toBe('valid');
    expect(ledger.events(100)).toHaveLength(1);
    // Events without seq (not from a hook) are never deduplicated.
    ledger.recordEvent(hook(100, 'post-start'));
    ledger.recordEvent(hook(100, 'post-start'));
    expect(ledger.events(100)).toHaveLength(3);
  });

  test('a malformed event is refused before anything is stored', () => {
    expect(() => ledger.recordEvent(hook(100, 'explode', { seq: 'x' }))).toThrow(expect.objectContaining({ code: 'CBT_LEDGER_BAD_EVENT' }));
    expect(ledger.events()).toEqual([]);
    // The seq of a refused event is not burnt.
    expect(ledger.recordEvent(hook(100, 'pre-stop', { seq: 'x' }))).toEqual({ duplicate: false });
  });

  test('vzdump busy from backup-start until backup-end; job-end clears every VM', () => {
    const vz = (vmid: number | undefined, phase: string, seq: string): LifecycleEvent => ({
      ...(vmid === undefined ? {} : { vmid, mode: 'snapshot' as const }), phase, source: 'vzdump', time: T, seq,
    });
    ledger.recordEvent(vz(undefined, 'job-start', 'j1'));
    ledger.recordEvent(vz(100, 'backup-start', 'b1'));
    ledger.recordEvent(vz(101, 'backup-start', 'b2'));
    expect([ledger.isVzdumpBusy(100), ledger.isVzdumpBusy(101), ledger.isVzdumpBusy(102)]).toEqual([true, true, false]);
    ledger.recordEvent(vz(100, 'backup-end', 'b3'));
    expect([ledger.isVzdumpBusy(100), ledger.isVzdumpBusy(101)]).toEqual([false, true]);
    ledger.recordEvent(vz(undefined, 'job-abort', 'j2'));
    expect([ledger.isVzdumpBusy(100), ledger.isVzdumpBusy(101)]).toEqual([false, false]);
    expect(ledger.events().at(-1)).toMatchObject({ vmid: null, phase: 'job-abort', effect: { clearedVzdumpBusy: true } });
  });

  test('markInvalid: one disk, all disks, by format, and a disk not yet recorded', () => {
    valid(100, 'scsi0', 'qcow2');
    valid(100, 'scsi1', 'raw');
    valid(100, 'scsi2', 'vmdk');
    ledger.markInvalid(100, null, 'bitmap missing in QEMU', { formats: ['raw'] });
    expect(ledger.list(100).map((r) => r.state)).toEqual(['valid', 'invalid', 'valid']);
    ledger.markInvalid(100, 'scsi0', 'inconsistent');
    expect(ledger.get(100, 'scsi0')).toMatchObject({ state: 'invalid', reason: 'inconsistent' });
    ledger.markInvalid(100, null, 'restore');
    expect(ledger.list(100).every((r) => r.state === 'invalid' && r.reason === 'restore')).toBe(true);
    ledger.markInvalid(100, 'efidisk0', 'never backed up', { format: 'raw' });
    expect(ledger.get(100, 'efidisk0')).toMatchObject({ state: 'invalid', format: 'raw' });
  });

  test('markValid after a restart during the backup leaves the new transient bitmap invalid', () => {
    ledger.recordEvent(hook(100, 'post-start', { seq: 'a', qemuPid: 4242 }));
    const cursor = ledger.lastEventId();
    // The VM restarts while the first backup (which created the bitmaps) runs.
    for (const phase of ['pre-stop', 'post-stop', 'pre-start']) ledger.recordEvent(hook(100, phase, { seq: `b-${phase}` }));
    ledger.recordEvent(hook(100, 'post-start', { seq: 'c', qemuPid: 5000 }));
    const input = { vmid: 100, generation: 1, qemuPid: 4242, qemuStartTime: 1 };
    expect(ledger.markValid({ ...input, disk: 'scsi1', format: 'raw', bitmapName: 'pve-cbt-scsi1' }, { sinceEventId: cursor })).toBe(false);
    expect(ledger.get(100, 'scsi1')).toMatchObject({ state: 'invalid', reason: expect.stringMatching(/pre-stop/) });
    // A clean restart does not touch a persistent bitmap.
    expect(ledger.markValid({ ...input, disk: 'scsi0', format: 'qcow2', bitmapName: 'pve-cbt-scsi0' }, { sinceEventId: cursor })).toBe(true);
    // A crash during the backup makes it suspect.
    const cursor2 = ledger.lastEventId();
    ledger.recordEvent(hook(100, 'post-stop', { seq: 'd' }));
    expect(ledger.markValid({ ...input, disk: 'scsi0', format: 'qcow2', bitmapName: 'pve-cbt-scsi0' }, { sinceEventId: cursor2 })).toBe(false);
    expect(ledger.get(100, 'scsi0')?.state).toBe('suspect');
    // Only a pid change, seen by a later event: the transient bitmap was created under another QEMU.
    const cursor3 = ledger.lastEventId();
    ledger.recordEvent({ vmid: 100, phase: 'backup-start', source: 'vzdump', mode: 'snapshot', time: T, seq: 'e', qemuPid: 6000 });
    expect(ledger.markValid({ ...input, disk: 'scsi1', format: 'raw', bitmapName: 'pve-cbt-scsi1', qemuPid: 5000 }, { sinceEventId: cursor3 })).toBe(false);
    expect(ledger.get(100, 'scsi1')?.reason).toMatch(/pid changed from 5000 to 6000/);
    // Nothing since the cursor: valid.
    expect(ledger.markValid({ ...input, disk: 'scsi1', format: 'raw', bitmapName: 'pve-cbt-scsi1', qemuPid: 6000 }, { sinceEventId: ledger.lastEventId() })).toBe(true);
  });
});
