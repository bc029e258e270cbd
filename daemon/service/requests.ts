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

export interface BackupRequest {
  vmids: number[];
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
}

export interface TaskInfo {
  id: string;
  vmid: number;
  kind: string;
  state: string;
  queuedAt: string;
  startedAt: string | null;
  progress: { done: number; total: number; disk?: string; phase?: string } | null;
}
