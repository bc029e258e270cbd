/**
 * Messages on pve-cbt's control socket, shared by the hooks, the CLI and the daemon.
 *
 * Wire format: one JSON document per line (UTF-8, `\n`-terminated; JSON.stringify never emits a raw
 * newline). A client sends a request envelope; the daemon answers with zero or more progress frames
 * carrying the same id, then exactly one final reply. Several requests may be in flight on one
 * connection; ids only need to be unique per connection.
 *
 * This file holds types and plain constants only: the hooks import it and must not pull in ajv.
 */

export const IPC_PROTOCOL_VERSION = 1;

export interface RequestEnvelope<P = unknown> {
  v: 1;
  id: string;
  type: string;
  payload: P;
}

export interface ReplyError {
  code: string;
  message: string;
  details: Record<string, unknown>;
}

export interface OkReply<R = unknown> {
  v: 1;
  id: string;
  ok: true;
  result: R;
}

/** `id` is null when the request was too broken to carry a usable id. */
export interface ErrorReply {
  v: 1;
  id: string | null;
  ok: false;
  error: ReplyError;
}

export interface ProgressFrame<P = unknown> {
  v: 1;
  id: string;
  progress: P;
}

export type ServerFrame = OkReply | ErrorReply | ProgressFrame;

/** Request types known to pve-cbt; the daemon registers one handler per type. */
export const MESSAGE_TYPES = Object.freeze({
  lifecycleEvent: 'lifecycle-event',
});

export const GUEST_PHASES = ['pre-start', 'post-start', 'pre-stop', 'post-stop'] as const;
export const VZDUMP_JOB_PHASES = ['job-init', 'job-start', 'job-end', 'job-abort'] as const;
export const VZDUMP_GUEST_PHASES = [
  'backup-start',
  'backup-end',
  'backup-abort',
  'log-end',
  'pre-stop',
  'pre-restart',
  'post-restart',
] as const;
export const VZDUMP_MODES = ['stop', 'suspend', 'snapshot'] as const;

export type GuestPhase = (typeof GUEST_PHASES)[number];
export type VzdumpJobPhase = (typeof VZDUMP_JOB_PHASES)[number];
export type VzdumpGuestPhase = (typeof VZDUMP_GUEST_PHASES)[number];
export type VzdumpMode = (typeof VZDUMP_MODES)[number];
export type EventSource = 'hookscript' | 'vzdump';

/**
 * Payload of `lifecycle-event`. `vmid` is absent only for vzdump job phases (job-init ... job-abort),
 * which concern the whole job. `seq` is unique per event (the hook makes it) so that an event that
 * reaches the daemon both live and through the spool is applied exactly once.
 */
export interface LifecycleEvent {
  vmid?: number;
  phase: string;
  source: EventSource;
  mode?: VzdumpMode;
  /** ISO 8601 time at which the hook ran. */
  time: string;
  migratedFrom?: string;
  qemuPid?: number;
  seq?: string;
}

/** What the daemon answers to a lifecycle event. */
export interface LifecycleEventResult {
  duplicate: boolean;
}

/** Proxmox VMIDs are 100 .. 999999999; lower ids are refused by PVE, but tests and old setups use them. */
export const VMID_MIN = 1;
export const VMID_MAX = 999_999_999;
