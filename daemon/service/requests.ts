/**
 * Control-socket requests the CLI sends to the daemon (the hooks' `lifecycle-event` is declared in
 * shared/ipc/messages.ts). Payload schemas live with the daemon's handlers; these are the names and
 * shapes both sides agree on.
 */
import type { BackupResult, DiskResult } from '../backup/backup-options';

export const REQUESTS = Object.freeze({
  backup: 'backup',
  status: 'status',
  tasks: 'tasks',
});

/** Exactly one of `vmids`, `all`, `pool` (backup-selection.ts). `mode: 'full'` forces full backups. */
export interface BackupRequest {
  vmids?: number[];
  all?: boolean;
  pool?: string;
  mode?: 'auto' | 'full';
  /** Answer at once with the task ids (BackupStarted[]) instead of waiting for the outcomes. */
  detach?: boolean;
}

export interface BackupStarted {
  vmid: number;
  taskId: string;
}

/** A backup's result travels as the engine returns it (JSON). */
export type { BackupResult, DiskResult };

export interface BackupOutcome {
  vmid: number;
  result?: BackupResult;
  error?: { code: string; message: string; details?: Record<string, unknown> };
}

/** A progress frame of a running backup task (the engine's per-disk BackupProgress, per task). */
export interface TaskProgress {
  vmid: number;
  taskId: string;
  disk?: string;
  phase?: string;
  done: number;
  total: number;
  /** A live restore's mirror frame: the bytes moved of `disk` (done/total are over all its disks). */
  diskDone?: number;
  diskTotal?: number;
  /** Chunk bytes the repository took so far, and of those the ones it already had (reuse). */
  chunkBytes?: number;
  reusedBytes?: number;
}

export interface TaskInfo {
  id: string;
  vmid: number;
  kind: string;
  state: string;
  queuedAt: string;
  startedAt: string | null;
  progress: { done: number; total: number; disk?: string; phase?: string; chunkBytes?: number; reusedBytes?: number } | null;
}
