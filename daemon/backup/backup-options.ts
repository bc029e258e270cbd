/**
 * What a backup of one VM is given (config, repository, ledger, callbacks) and what it hands back
 * (per disk: mode, reason, bytes read and stored, consistency).
 */
import path from 'node:path';
import type { Logger } from 'winston';
import type { ExecRunner } from '../proc/exec-off-thread';
import { DEFAULTS } from '../../shared/config/defaults';
import type { Ledger } from '../ledger/ledger';
import type { BackupRepository } from './last-backups';
import type { BackupMode, Consistency } from '../repository/manifest';

export interface BackupVmConfig {
  readonly qemuServerConfigDir: string;
  readonly qemuServerRunDir: string;
  /**
   * Parking of a stopped VM's bitmaps (daemon/parking/): with both set, an offline backup holds
   * Proxmox's VM lock, puts parked bitmaps back first and parks them again after.
   */
  readonly stateDir?: string;
  readonly qemuServerLockDir?: string;
  readonly pvesmPath: string;
  /** How pvesm is run: the daemon runs it off its event loop (daemon/proc/exec-off-thread.ts). Default execFile. */
  readonly pvesmExec?: ExecRunner;
  /** Chunk size of new indexes; an existing disk keeps its base's. */
  readonly chunkSize?: number;
  /** Private dir for scratch images and NBD sockets (default `<stateDir>/work`). */
  readonly workDir?: string;
  /** Dirty bitmap granularity (default 64 KiB). */
  readonly granularity?: number;
  readonly nbdBusyTimeoutMs?: number;
  /** How long to wait for a running vzdump of the VM to end before failing (default 0: fail at once). */
  readonly vzdumpWaitMs?: number;
  /** How long a backup waits while qemu-server keeps the VM config locked (wait-config-lock.ts, default 30 s). */
  readonly configLockWaitMs?: number;
  readonly freezeTimeoutMs?: number;
  readonly jobPollMs?: number;
  readonly qemuImg?: string;
  readonly qemuNbd?: string;
  /** Bound on every wait for the NBD server (default: the client's 30 s): a hung QEMU fails the backup, not the daemon. */
  readonly nbdTimeoutMs?: number;
  /** NBD reader tuning (defaults: the reader's). */
  readonly nbdConnections?: number;
  readonly nbdInFlight?: number;
  readonly nbdRequestSize?: number;
}

export type { BackupRepository } from './last-backups';
export type BackupLedger = Pick<Ledger, 'get' | 'markValid' | 'isVzdumpBusy' | 'lastEventId' | 'markInvalid'>;

export interface BackupProgress {
  readonly vmid: number;
  readonly disk: string;
  readonly mode: BackupMode;
  readonly bytesDone: number;
  readonly bytesTotal: number;
  /** Chunk bytes the repository has taken so far, and of those the ones it already had (reuse). */
  readonly chunkBytes: number;
  readonly reusedBytes: number;
}

export interface BackupVmOptions {
  readonly vmid: number;
  readonly config: BackupVmConfig;
  readonly repo: BackupRepository;
  readonly ledger: BackupLedger;
  readonly logger?: Logger;
  readonly signal?: AbortSignal;
  /** Back every disk up in full (`pve-cbt backup --mode full`); the manifest's reason says so. */
  readonly forceFull?: boolean;
  /** Called after every chunk; a returned promise is awaited (reading pauses meanwhile). */
  readonly onProgress?: (p: BackupProgress) => void | Promise<void>;
}

export type { Consistency };

export interface DiskResult {
  readonly disk: string;
  readonly format: string;
  readonly mode: BackupMode;
  readonly reason: string;
  readonly size: number;
  readonly bytesRead: number;
  readonly bytesStored: number;
  readonly durationMs: number;
  readonly consistency: Consistency;
}

export interface BackupResult {
  readonly id: string;
  readonly vmid: number;
  readonly disks: DiskResult[];
  /** Set when the guest agent was configured but could not freeze. */
  readonly freezeNote?: string;
}

/** Dirty bitmap granularity unless the config sets one. */
export const DEFAULT_GRANULARITY = 65536;

export function workDirOf(config: BackupVmConfig): string {
  return config.workDir ?? path.join(DEFAULTS.stateDir, 'work');
}
