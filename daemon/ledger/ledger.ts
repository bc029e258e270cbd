/**
 * The bitmap validity ledger: the daemon's SQLite record of every VM lifecycle event and, per disk,
 * whether pve-cbt's dirty bitmap may be trusted (tables in catalog/migrations/002-ledger.ts, rules in
 * ledger-rules.ts).
 *
 * Exactly once: an event with a `seq` already stored is a duplicate and changes nothing, so the hook's
 * live send and its spooled copy can both arrive. Each event is applied in one transaction together
 * with its row, so a crash never leaves an event stored but not applied or the other way round.
 *
 * The ledger is one of two witnesses: before an incremental the engine also asks QEMU itself (bitmap
 * present, recording, not inconsistent, same QEMU pid/start time) and falls back to full-compare when
 * either side disagrees. A missed event thus costs speed, never correctness.
 *
 * Races with a running backup: the engine reads `lastEventId()` when it creates the new bitmap and
 * passes it to `markValid`; events stored since then are applied to the new record as they would
 * have been to any bitmap of its format (their stored class effects, plus a different QEMU pid for
 * transient bitmaps), so a VM restarted during the backup does not end up `valid`.
 */
import type Database from 'better-sqlite3';
import type { Logger } from 'winston';
import type { LifecycleEvent } from '../../shared/ipc/messages';
import { LedgerBadEventError } from './ledger-errors';
import {
  applyLifecycleEvent,
  checkEvent,
  demoteState,
  isTransientFormat,
  type RuleOutcome,
  type BitmapState,
  type DiskBitmapRecord,
  type DiskChange,
  type VmActivity,
} from './ledger-rules';

export type { BitmapState, DiskBitmapRecord, VmActivity } from './ledger-rules';

export interface LifecycleEventRow {
  id: number;
  seq: string | null;
  vmid: number | null;
  phase: string;
  source: string;
  mode: string | null;
  time: string;
  receivedAt: string;
  migratedFrom: string | null;
  qemuPid: number | null;
  effect: EventEffect;
}

export interface EventEffect {
  changes: DiskChange[];
  classEffects: RuleOutcome['classEffects'];
  clearedVzdumpBusy?: boolean;
}

export interface MarkValidInput {
  vmid: number;
  disk: string;
  format: string;
  bitmapName: string;
  generation: number;
  qemuPid: number | null;
  qemuStartTime: number | null;
  /** The config's volume id and its path when the bitmap was made (compared at the next backup). */
  volid?: string | null;
  path?: string | null;
}

interface BitmapRow {
  vmid: number;
  disk: string;
  format: string;
  state: BitmapState;
  reason: string | null;
  changed_at: string;
  bitmap_name: string | null;
  generation: number | null;
  qemu_pid: number | null;
  qemu_start_time: number | null;
  volid: string | null;
  path: string | null;
}

interface ActivityRow {
  vmid: number;
  vzdump_busy: number;
  vzdump_mode: string | null;
  vzdump_since: string | null;
  running: number;
  stop_expected: number;
  qemu_pid: number | null;
  last_phase: string | null;
  last_event_at: string | null;
}

interface EventRow {
  id: number;
  seq: string | null;
  vmid: number | null;
  phase: string;
  source: string;
  mode: string | null;
  event_time: string;
  received_at: string;
  migrated_from: string | null;
  qemu_pid: number | null;
  effect: string;
}

export class Ledger {
  private readonly db: Database.Database;
  private readonly logger?: Logger;
  private readonly now: () => Date;

  constructor(db: Database.Database, logger?: Logger, now: () => Date = () => new Date()) {
    this.db = db;
    this.logger = logger;
    this.now = now;
  }

  /** Stores and applies one event unless its seq was seen before. Throws CBT_LEDGER_BAD_EVENT. */
  recordEvent(ev: LifecycleEvent): { duplicate: boolean } {
    const bad = checkEvent(ev);
    if (bad) throw LedgerBadEventError({ reason: bad, event: ev });
    return this.db.transaction((): { duplicate: boolean } => {
      if (ev.seq !== undefined && this.db.prepare('SELECT 1 FROM lifecycle_events WHERE seq = ?').get(ev.seq)) {
        this.logger?.debug('duplicate lifecycle event ignored', { vmid: ev.vmid, phase: ev.phase, seq: ev.seq });
        return { duplicate: true };
      }
      const nowIso = this.now().toISOString();
      const before = ev.vmid === undefined ? null : this.activity(ev.vmid) ?? null;
      const disks = ev.vmid === undefined ? [] : this.list(ev.vmid);
      const outcome = applyLifecycleEvent(ev, before, disks);
      const setState = this.db.prepare('UPDATE bitmap_state SET state = ?, reason = ?, changed_at = ? WHERE vmid = ? AND disk = ?');
      for (const c of outcome.changes) setState.run(c.to, c.reason, nowIso, ev.vmid, c.disk);
      if (outcome.activity) this.saveActivity(outcome.activity);
      if (outcome.clearAllVzdumpBusy) {
        this.db.prepare('UPDATE vm_activity SET vzdump_busy = 0, vzdump_mode = NULL, vzdump_since = NULL WHERE vzdump_busy = 1').run();
      }
      const effect: EventEffect = {
        changes: outcome.changes,
        classEffects: outcome.classEffects,
        ...(outcome.clearAllVzdumpBusy ? { clearedVzdumpBusy: true } : {}),
      };
      this.db
        .prepare(
          `INSERT INTO lifecycle_events (seq, vmid, phase, source, mode, event_time, received_at, migrated_from, qemu_pid, effect)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(ev.seq ?? null, ev.vmid ?? null, ev.phase, ev.source, ev.mode ?? null, ev.time, nowIso, ev.migratedFrom ?? null, ev.qemuPid ?? null, JSON.stringify(effect));
      for (const c of outcome.changes) {
        this.logger?.info(`bitmap ${c.from} -> ${c.to}: ${c.reason}`, { vmid: ev.vmid, disk: c.disk, phase: ev.phase, source: ev.source });
      }
      return { duplicate: false };
    })();
  }

  get(vmid: number, disk: string): DiskBitmapRecord | undefined {
    const row = this.db.prepare('SELECT * FROM bitmap_state WHERE vmid = ? AND disk = ?').get(vmid, disk) as BitmapRow | undefined;
    return row && toRecord(row);
  }

  list(vmid?: number): DiskBitmapRecord[] {
    const rows = (
      vmid === undefined
        ? this.db.prepare('SELECT * FROM bitmap_state ORDER BY vmid, disk').all()
        : this.db.prepare('SELECT * FROM bitmap_state WHERE vmid = ? ORDER BY disk').all(vmid)
    ) as BitmapRow[];
    return rows.map(toRecord);
  }

  /** The id of the newest stored event (0 when none): the cursor markValid's race check compares to. */
  lastEventId(): number {
    const row = this.db.prepare('SELECT MAX(id) AS id FROM lifecycle_events').get() as { id: number | null };
    return row.id ?? 0;
  }

  /**
   * The id of the newest event stored before `iso` (0 when none). Startup recovery settling a
   * backup whose daemon was killed after the commit uses it with the job's start time: every event
   * since then is applied to the new record (a superset of what the engine would have applied).
   */
  lastEventIdBefore(iso: string): number {
    const row = this.db.prepare('SELECT MAX(id) AS id FROM lifecycle_events WHERE received_at < ?').get(iso) as { id: number | null };
    return row.id ?? 0;
  }

  /**
   * The engine calls this once a backup is committed and a fresh bitmap records from its start.
   * With `sinceEventId` (lastEventId() read when that bitmap was created), events stored since then
   * are applied to the new record. Returns whether the disk ended up valid.
   */
  markValid(r: MarkValidInput, opts: { sinceEventId?: number } = {}): boolean {
    return this.db.transaction((): boolean => {
      let state: BitmapState = 'valid';
      let reason: string | null = null;
      if (opts.sinceEventId !== undefined) {
        const since = this.db
          .prepare('SELECT qemu_pid, effect FROM lifecycle_events WHERE vmid = ? AND id > ? ORDER BY id')
          .all(r.vmid, opts.sinceEventId) as Array<{ qemu_pid: number | null; effect: string }>;
        const transient = isTransientFormat(r.format);
        for (const ev of since) {
          const eff = (JSON.parse(ev.effect) as EventEffect).classEffects[transient ? 'transient' : 'persistent'];
          if (eff && demoteState(state, eff.to) !== state) [state, reason] = [eff.to, eff.reason];
          if (transient && ev.qemu_pid !== null && r.qemuPid !== null && ev.qemu_pid !== r.qemuPid && state !== 'invalid') {
            [state, reason] = ['invalid', `QEMU pid changed from ${r.qemuPid} to ${ev.qemu_pid} during the backup`];
          }
        }
      }
      this.db
        .prepare(
          `INSERT INTO bitmap_state (vmid, disk, format, state, reason, changed_at, bitmap_name, generation, qemu_pid, qemu_start_time, volid, path)
           VALUES (@vmid, @disk, @format, @state, @reason, @changedAt, @bitmapName, @generation, @qemuPid, @qemuStartTime, @volid, @path)
           ON CONFLICT (vmid, disk) DO UPDATE SET format = excluded.format, state = excluded.state, reason = excluded.reason,
             changed_at = excluded.changed_at, bitmap_name = excluded.bitmap_name, generation = excluded.generation,
             qemu_pid = excluded.qemu_pid, qemu_start_time = excluded.qemu_start_time, volid = excluded.volid, path = excluded.path`,
        )
        .run({ ...r, volid: r.volid ?? null, path: r.path ?? null, state, reason, changedAt: this.now().toISOString() });
      if (state !== 'valid') {
        this.logger?.warn(`new bitmap is ${state} already: ${reason}`, { vmid: r.vmid, disk: r.disk });
      }
      return state === 'valid';
    })();
  }

  /**
   * Marks one disk (or, with disk null, every recorded disk of the VM, optionally only those of the
   * given formats) invalid. A disk without a record gets one, with `opts.format` or 'unknown'.
   */
  markInvalid(vmid: number, disk: string | null, reason: string, opts: { formats?: string[]; format?: string } = {}): void {
    const nowIso = this.now().toISOString();
    this.db.transaction(() => {
      const targets = disk === null ? this.list(vmid) : [this.get(vmid, disk)];
      if (disk !== null && targets[0] === undefined) {
        this.db
          .prepare(`INSERT INTO bitmap_state (vmid, disk, format, state, reason, changed_at) VALUES (?, ?, ?, 'invalid', ?, ?)`)
          .run(vmid, disk, opts.format ?? 'unknown', reason, nowIso);
        return;
      }
      const update = this.db.prepare(`UPDATE bitmap_state SET state = 'invalid', reason = ?, changed_at = ? WHERE vmid = ? AND disk = ?`);
      for (const t of targets) {
        if (!t || (opts.formats && !opts.formats.includes(t.format))) continue;
        update.run(reason, nowIso, vmid, t.disk);
        this.logger?.info(`bitmap ${t.state} -> invalid: ${reason}`, { vmid, disk: t.disk });
      }
    })();
  }

  /** Every VM the ledger holds a bitmap record or activity of. */
  knownVmids(): number[] {
    const rows = this.db.prepare('SELECT vmid FROM bitmap_state UNION SELECT vmid FROM vm_activity ORDER BY vmid').all() as Array<{ vmid: number }>;
    return rows.map((r) => r.vmid);
  }

  /**
   * Drops a VM's bitmap records and activity (it runs on another node now: daemon/migration/).
   * Its events stay, as history. Returns how many disk records went.
   */
  forgetVm(vmid: number, reason: string): number {
    return this.db.transaction((): number => {
      const disks = this.db.prepare('DELETE FROM bitmap_state WHERE vmid = ?').run(vmid).changes;
      this.db.prepare('DELETE FROM vm_activity WHERE vmid = ?').run(vmid);
      this.logger?.info(`ledger rows dropped: ${reason}`, { vmid, disks });
      return disks;
    })();
  }

  /**
   * Drops the records of one disk (or, with disk null, of the whole VM, and what the rules remember
   * of it) once it is no longer in the VM's config: detached, removed, VM destroyed. Backups stay;
   * the event history stays. Returns the disks whose records were dropped.
   */
  forget(vmid: number, disk: string | null): string[] {
    return this.db.transaction((): string[] => {
      const gone = (disk === null ? this.list(vmid) : [this.get(vmid, disk)]).filter((r): r is DiskBitmapRecord => r !== undefined).map((r) => r.disk);
      if (disk === null) {
        this.db.prepare('DELETE FROM bitmap_state WHERE vmid = ?').run(vmid);
        this.db.prepare('DELETE FROM vm_activity WHERE vmid = ?').run(vmid);
      } else {
        this.db.prepare('DELETE FROM bitmap_state WHERE vmid = ? AND disk = ?').run(vmid, disk);
      }
      return gone;
    })();
  }

  isVzdumpBusy(vmid: number): boolean {
    return this.activity(vmid)?.vzdumpBusy ?? false;
  }

  activity(vmid: number): VmActivity | undefined {
    const row = this.db.prepare('SELECT * FROM vm_activity WHERE vmid = ?').get(vmid) as ActivityRow | undefined;
    if (!row) return undefined;
    return {
      vmid: row.vmid,
      vzdumpBusy: row.vzdump_busy === 1,
      vzdumpMode: row.vzdump_mode,
      vzdumpSince: row.vzdump_since,
      running: row.running === 1,
      stopExpected: row.stop_expected === 1,
      qemuPid: row.qemu_pid,
      lastPhase: row.last_phase,
      lastEventAt: row.last_event_at,
    };
  }

  /** The newest `limit` events (of one VM, or all), oldest first. */
  events(vmid?: number, limit = 100): LifecycleEventRow[] {
    const rows = (
      vmid === undefined
        ? this.db.prepare('SELECT * FROM lifecycle_events ORDER BY id DESC LIMIT ?').all(limit)
        : this.db.prepare('SELECT * FROM lifecycle_events WHERE vmid = ? ORDER BY id DESC LIMIT ?').all(vmid, limit)
    ) as EventRow[];
    return rows.reverse().map((r) => ({
      id: r.id,
      seq: r.seq,
      vmid: r.vmid,
      phase: r.phase,
      source: r.source,
      mode: r.mode,
      time: r.event_time,
      receivedAt: r.received_at,
      migratedFrom: r.migrated_from,
      qemuPid: r.qemu_pid,
      effect: JSON.parse(r.effect) as LifecycleEventRow['effect'],
    }));
  }

  private saveActivity(a: VmActivity): void {
    this.db
      .prepare(
        `INSERT INTO vm_activity (vmid, vzdump_busy, vzdump_mode, vzdump_since, running, stop_expected, qemu_pid, last_phase, last_event_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (vmid) DO UPDATE SET vzdump_busy = excluded.vzdump_busy, vzdump_mode = excluded.vzdump_mode,
           vzdump_since = excluded.vzdump_since, running = excluded.running, stop_expected = excluded.stop_expected,
           qemu_pid = excluded.qemu_pid, last_phase = excluded.last_phase, last_event_at = excluded.last_event_at`,
      )
      .run(a.vmid, a.vzdumpBusy ? 1 : 0, a.vzdumpMode, a.vzdumpSince, a.running ? 1 : 0, a.stopExpected ? 1 : 0, a.qemuPid, a.lastPhase, a.lastEventAt);
  }
}

function toRecord(r: BitmapRow): DiskBitmapRecord {
  return {
    vmid: r.vmid,
    disk: r.disk,
    format: r.format,
    state: r.state,
    reason: r.reason,
    changedAt: r.changed_at,
    bitmapName: r.bitmap_name,
    generation: r.generation,
    qemuPid: r.qemu_pid,
    qemuStartTime: r.qemu_start_time,
    // Only when recorded (records made before migration 003, or by markInvalid, have none).
    ...(r.volid != null ? { volid: r.volid } : {}),
    ...(r.path != null ? { path: r.path } : {}),
  };
}
