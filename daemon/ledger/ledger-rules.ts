/**
 * The ledger's rules as a pure function: given one lifecycle event, what the VM remembers and the
 * bitmap records of its disks, decide which disks change state and what the VM remembers next.
 * Kept free of I/O so that every rule is checked by a table (test/daemon/ledger/ledger-rules.test.ts).
 *
 * States: `valid` (the bitmap can be used for an incremental), `invalid` (it cannot: full-compare),
 * `suspect` (a persistent qcow2 bitmap that may be inconsistent after a crash: check QEMU's
 * `inconsistent` flag before trusting it), `unknown` (nothing known: check from scratch).
 * A rule only ever makes a record less trusted; only the engine's `markValid` makes one valid.
 *
 * Rules (pve-qemu-facts.md has which operation fires which phase):
 * - any QEMU restart (hookscript pre-stop/post-stop/pre-start, vzdump stop-mode pre-stop/pre-restart/
 *   post-restart, a changed QEMU pid): transient bitmaps (every format but qcow2) are gone → invalid;
 * - post-stop without a preceding pre-stop (QEMU crashed or was killed), or a new QEMU seen while the
 *   old one was never seen stopping: qcow2 valid → suspect;
 * - pre-start with PVE_MIGRATED_FROM: a QEMU we know nothing about → every valid/suspect disk unknown;
 * - vzdump backup-start … backup-end/backup-abort: the VM is busy; job-end/job-abort clear every VM.
 */
import {
  GUEST_PHASES,
  VMID_MAX,
  VMID_MIN,
  VZDUMP_GUEST_PHASES,
  VZDUMP_JOB_PHASES,
  VZDUMP_MODES,
  type LifecycleEvent,
} from '../../shared/ipc/messages';
import { bitmapPersists } from '../backup/bitmap-persistence';

export type BitmapState = 'valid' | 'invalid' | 'suspect' | 'unknown';

export interface DiskBitmapRecord {
  vmid: number;
  disk: string;
  format: string;
  state: BitmapState;
  reason: string | null;
  changedAt: string;
  bitmapName: string | null;
  generation: number | null;
  qemuPid: number | null;
  qemuStartTime: number | null;
  /** Volume id and path of the disk the record was made for (null: made before they were recorded). */
  volid?: string | null;
  path?: string | null;
}

/** What the rules remember about a VM between events. */
export interface VmActivity {
  vmid: number;
  vzdumpBusy: boolean;
  vzdumpMode: string | null;
  vzdumpSince: string | null;
  /** QEMU is believed running: post-start seen, post-stop not yet. */
  running: boolean;
  /** A clean stop was announced (pre-stop), so the coming post-stop is not a crash. */
  stopExpected: boolean;
  qemuPid: number | null;
  lastPhase: string | null;
  lastEventAt: string | null;
}

export interface DiskChange {
  disk: string;
  from: BitmapState;
  to: BitmapState;
  reason: string;
}

/** A demotion as it would apply to any bitmap of a class of formats, whether or not one is recorded. */
export interface ClassEffect {
  to: BitmapState;
  reason: string;
}

export interface RuleOutcome {
  changes: DiskChange[];
  /**
   * What the event does to a valid bitmap of each class created before it (and with no QEMU pid
   * on record). Stored with the event so that a backup which created its bitmap before the event
   * and commits after it can be demoted the same way (Ledger.markValid).
   */
  classEffects: { transient: ClassEffect | null; persistent: ClassEffect | null };
  /** The VM's activity after the event; null for job-level vzdump events, which name no VM. */
  activity: VmActivity | null;
  /** vzdump job-end/job-abort: no VM of this node is busy with vzdump any more. */
  clearAllVzdumpBusy: boolean;
}

/** Formats whose QEMU bitmaps are lost with the QEMU process (bitmap-persistence.ts has the rule). */
export function isTransientFormat(format: string): boolean {
  return !bitmapPersists(format);
}

export function newVmActivity(vmid: number): VmActivity {
  return {
    vmid,
    vzdumpBusy: false,
    vzdumpMode: null,
    vzdumpSince: null,
    running: false,
    stopExpected: false,
    qemuPid: null,
    lastPhase: null,
    lastEventAt: null,
  };
}

/** Why an event cannot be applied, or null when it is well-formed (the spool bypasses the IPC schema). */
export function checkEvent(ev: LifecycleEvent): string | null {
  const phases: readonly string[] =
    ev.source === 'hookscript' ? GUEST_PHASES : ev.source === 'vzdump' ? [...VZDUMP_JOB_PHASES, ...VZDUMP_GUEST_PHASES] : [];
  if (phases.length === 0) return `unknown source "${String(ev.source)}"`;
  if (!phases.includes(ev.phase)) return `unknown ${ev.source} phase "${String(ev.phase)}"`;
  const jobLevel = ev.source === 'vzdump' && (VZDUMP_JOB_PHASES as readonly string[]).includes(ev.phase);
  if (jobLevel && ev.vmid !== undefined) return `vzdump ${ev.phase} concerns the whole job and carries no vmid`;
  if (!jobLevel && (!Number.isInteger(ev.vmid) || (ev.vmid as number) < VMID_MIN || (ev.vmid as number) > VMID_MAX)) {
    return `${ev.source} ${ev.phase} needs a vmid between ${VMID_MIN} and ${VMID_MAX}`;
  }
  if (ev.source === 'vzdump' && !jobLevel && !(VZDUMP_MODES as readonly string[]).includes(ev.mode as string)) {
    return `vzdump ${ev.phase} needs a mode (stop, suspend or snapshot)`;
  }
  if (typeof ev.time !== 'string' || Number.isNaN(Date.parse(ev.time))) return 'time must be an ISO 8601 date';
  if (ev.qemuPid !== undefined && (!Number.isInteger(ev.qemuPid) || ev.qemuPid < 1)) return 'qemuPid must be a positive integer';
  return null;
}

export function eventLabel(ev: LifecycleEvent): string {
  return `${ev.source} ${ev.phase}${ev.mode ? ` (${ev.mode} mode)` : ''}`;
}

/** Applies one well-formed event (see checkEvent). Does not mutate its arguments. */
export function applyLifecycleEvent(ev: LifecycleEvent, before: VmActivity | null, disks: readonly DiskBitmapRecord[]): RuleOutcome {
  if (ev.vmid === undefined) {
    const clear = ev.phase === 'job-end' || ev.phase === 'job-abort';
    return { changes: [], classEffects: { transient: null, persistent: null }, activity: null, clearAllVzdumpBusy: clear };
  }
  const vmEvent = { ...ev, vmid: ev.vmid };
  const probe = (format: string, disk: string): DiskBitmapRecord => ({
    vmid: vmEvent.vmid,
    disk,
    format,
    state: 'valid',
    reason: null,
    changedAt: ev.time,
    bitmapName: null,
    generation: null,
    qemuPid: null,
    qemuStartTime: null,
  });
  // Disk names never contain a NUL, so the probes cannot collide with a real disk.
  const probes = [probe('raw', '\0transient'), probe('qcow2', '\0persistent')];
  const { changes, activity } = decide(vmEvent, before, [...disks, ...probes]);
  const effectOf = (disk: string): ClassEffect | null => {
    const c = changes.find((x) => x.disk === disk);
    return c ? { to: c.to, reason: c.reason } : null;
  };
  return {
    changes: changes.filter((c) => !c.disk.startsWith('\0')),
    classEffects: { transient: effectOf('\0transient'), persistent: effectOf('\0persistent') },
    activity,
    clearAllVzdumpBusy: false,
  };
}

function decide(
  ev: LifecycleEvent & { vmid: number },
  before: VmActivity | null,
  disks: readonly DiskBitmapRecord[],
): { changes: DiskChange[]; activity: VmActivity } {
  const label = eventLabel(ev);
  const act: VmActivity = { ...(before ?? newVmActivity(ev.vmid)), lastPhase: ev.phase, lastEventAt: ev.time };
  const next = new Map<string, DiskChange>();
  const demote = (d: DiskBitmapRecord, to: BitmapState, reason: string): void => {
    const current = next.get(d.disk)?.to ?? d.state;
    if (demoteState(current, to) === current) return;
    next.set(d.disk, { disk: d.disk, from: d.state, to, reason });
  };
  const invalidateTransient = (why: string): void => {
    for (const d of disks) if (isTransientFormat(d.format)) demote(d, 'invalid', `${label}: ${why}`);
  };
  const suspectPersistent = (why: string): void => {
    for (const d of disks) if (!isTransientFormat(d.format)) demote(d, 'suspect', `${label}: ${why}`);
  };

  // A pid different from the one a bitmap (or the VM) was last seen with means another QEMU process.
  if (ev.qemuPid !== undefined) {
    if (act.qemuPid !== null && act.qemuPid !== ev.qemuPid) {
      invalidateTransient(`QEMU pid changed from ${act.qemuPid} to ${ev.qemuPid}`);
      suspectPersistent(`QEMU pid changed from ${act.qemuPid} to ${ev.qemuPid} without a stop being seen`);
    }
    for (const d of disks) {
      if (isTransientFormat(d.format) && d.qemuPid !== null && d.qemuPid !== ev.qemuPid) {
        demote(d, 'invalid', `${label}: QEMU pid is ${ev.qemuPid}, bitmap was created under pid ${d.qemuPid}`);
      }
    }
    act.qemuPid = ev.qemuPid;
  }

  if (ev.source === 'hookscript') {
    switch (ev.phase) {
      case 'pre-start':
        if (ev.migratedFrom !== undefined) {
          for (const d of disks) demote(d, 'unknown', `${label}: VM migrated from ${ev.migratedFrom}, bitmaps must be checked from scratch`);
        } else {
          invalidateTransient('a new QEMU process starts without the transient bitmap');
          if (act.running) suspectPersistent('a new QEMU starts but the previous one was never seen stopping');
        }
        act.running = false;
        act.stopExpected = false;
        act.qemuPid = null;
        break;
      case 'post-start':
        act.running = true;
        break;
      case 'pre-stop':
        invalidateTransient('QEMU is stopping and takes the transient bitmap with it');
        act.stopExpected = true;
        break;
      case 'post-stop':
        if (act.stopExpected) {
          invalidateTransient('QEMU stopped and took the transient bitmap with it');
        } else {
          invalidateTransient('QEMU exited without pre-stop (crash or kill); the transient bitmap is gone');
          suspectPersistent('QEMU exited without pre-stop (crash or kill); the persistent bitmap may be inconsistent');
        }
        act.running = false;
        act.stopExpected = false;
        act.qemuPid = null;
        break;
    }
  } else {
    switch (ev.phase) {
      case 'backup-start':
        act.vzdumpBusy = true;
        act.vzdumpMode = ev.mode ?? null;
        act.vzdumpSince = ev.time;
        break;
      case 'backup-end':
      case 'backup-abort':
        act.vzdumpBusy = false;
        act.vzdumpMode = null;
        act.vzdumpSince = null;
        break;
      case 'pre-stop':
        if (ev.mode === 'stop') {
          invalidateTransient('vzdump stops QEMU and the transient bitmap goes with it');
          act.stopExpected = true;
        }
        break;
      case 'pre-restart':
      case 'post-restart':
        if (ev.mode === 'stop') invalidateTransient('vzdump restarted QEMU; the transient bitmap is gone');
        break;
    }
  }
  return { changes: [...next.values()], activity: act };
}

/** Applies a demotion to a state: rules only ever lower trust. */
export function demoteState(current: BitmapState, to: BitmapState): BitmapState {
  return rank(to) > rank(current) ? to : current;
}

/** How little a state is trusted; rules only move a record to a higher rank. */
function rank(s: BitmapState): number {
  return { valid: 0, suspect: 1, unknown: 2, invalid: 3 }[s];
}
