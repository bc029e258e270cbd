/**
 * The journal of a live restore: one JSON file per VMID, `<stateDir>/live-restore/VMID.json`,
 * written (atomically, fsynced with its folder) before the restore allocates anything and again at
 * each step that leaves something behind, removed once the restore has ended either way. It is what
 * the next daemon start needs to resolve a restore its process did not finish
 * (live-restore-recovery.ts): which volumes were allocated, where the overlays and sockets are,
 * which QEMU runs on them, and, from the switch on, the config to write and the volumes it replaces.
 *
 * The state directory, not qemu-server's run folder (tmpfs on a node): after a reboot the VM is gone
 * but its allocated volumes are not, and they must still be freed.
 *
 * Phases as the restore records them (LivePhase): `allocate` (the journal exists; each volid is added
 * as soon as `pvesm alloc` returns it), `serve`, `start`, `mirror`, `switch` (written just before the
 * first `job-complete`, with `finish`), `config` (written once the switch is proven — every device on
 * its volume, no node on the export — and the export is closed).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir } from '../../shared/fs/fsync-dir';
import type { LivePhase } from './live-restore-errors';
import { writeFileAtomic } from './restore-vm';

export interface JournalTarget {
  readonly disk: string;
  readonly volid: string;
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
  readonly size: number;
}

export interface LiveJournal {
  readonly version: 1;
  /** The daemon task running the restore (the catalog's job id); null outside the daemon. */
  readonly taskId: string | null;
  readonly backupId: string;
  readonly vmid: number;
  readonly storage: string;
  readonly startedAt: string;
  phase: LivePhase;
  /** RUN/VMID.live-restore-XXXXXX: the NBD sockets and the overlays. */
  workDir: string | null;
  /** Volids allocated so far, in order. */
  allocated: string[];
  targets: JournalTarget[];
  /** The restore's QEMU once it runs (pid and /proc start time). */
  qemu: { pid: number; startTime: number } | null;
  readonly confPath: string;
  /** The VMID's config before the restore (with --force), null when there was none. */
  readonly existing: string | null;
  /** From the switch on: what the restore writes last and what it frees after. */
  finish: { conf: string; firewall: string | null; firewallBefore: string | null; replaced: string[]; dropped: unknown[] } | null;
}

export function liveRestoreJournalDir(stateDir: string): string {
  return path.join(stateDir, 'live-restore');
}

export function journalFile(dir: string, vmid: number): string {
  return path.join(dir, `${vmid}.json`);
}

export function writeJournal(dir: string, j: LiveJournal): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(journalFile(dir, j.vmid), `${JSON.stringify(j, null, 2)}\n`);
  fsyncDir(dir);
}

export function removeJournal(dir: string, vmid: number): void {
  fs.rmSync(journalFile(dir, vmid), { force: true });
  if (fs.existsSync(dir)) fsyncDir(dir);
}

export type JournalEntry = { file: string; vmid: number; journal: LiveJournal } | { file: string; vmid: number; problem: string };

/** Every journal in `dir` (none when it does not exist); one that cannot be read is named with its problem. */
export function readJournals(dir: string): JournalEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const out: JournalEntry[] = [];
  for (const name of names.sort()) {
    const m = /^(\d+)\.json$/.exec(name);
    if (!m) continue;
    const file = path.join(dir, name);
    const vmid = Number(m[1]);
    try {
      const j = JSON.parse(fs.readFileSync(file, 'utf8')) as LiveJournal;
      if (j.version !== 1 || j.vmid !== vmid || !Array.isArray(j.allocated)) throw new Error('not a version-1 live-restore journal of this VMID');
      out.push({ file, vmid, journal: j });
    } catch (err) {
      out.push({ file, vmid, problem: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}
