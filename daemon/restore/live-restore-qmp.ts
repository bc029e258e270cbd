/**
 * The QMP side of a live restore, each step a short session (the VM's one QMP socket stays free for
 * qemu-server and others between the polls):
 *
 *   waitRunning      `query-status` until the guest's CPUs run;
 *   startMove        one mirror job per disk, `restore-drive-KEY` (qemu-server's job name for live
 *                    restore), `sync: full` from the overlay (whose backing is the NBD export) into
 *                    the allocated volume, `auto-dismiss: false` so its error can be read, and
 *                    with a speed limit a `buf-size` of about one second of it (QEMU's limit acts
 *                    between iterations, and one iteration copies up to 16 MiB by default):
 *                    - `drive` layout (PVE 7/8): `drive-mirror {device: drive-KEY, target: PATH,
 *                      format, mode: existing}`;
 *                    - `blockdev` layout (PVE 9): `blockdev-add` of the volume's format node over its
 *                      file node (names hashed from the new volid as Blockdev.pm does), then
 *                      `blockdev-mirror {device: drive-KEY, target, replaces: the overlay's node}`;
 *                    as `qm disk move` does it while running (daemon/sim/qm-disk-move.ts);
 *   jobs             `query-jobs`, these jobs only: status, progress, error;
 *   setSpeed         `block-job-set-speed` (the --bwlimit, or lifting it);
 *   complete         `job-complete`: QEMU switches the device to the volume, the overlay and the NBD
 *                    node under it are closed;
 *   dismiss          `job-dismiss` of a concluded job;
 *   exportLeft       the block nodes still on the export (an `nbd` driver or the overlay file) and
 *                    where each device's image now is, to prove nothing of the export is left.
 *
 * Upstream QEMU has no `alloc-track` (a Proxmox patch: Proxmox's live restore block-streams into the
 * volume under it), so the overlay takes the guest's writes and the mirror carries them along: a
 * write during the restore is in the volume when the job completes.
 */
import { queryDisks, type QemuDisk } from '../qmp/query-disks';
import type { QmpConnectOptions } from '../qmp/qmp-client';
import { withQmp } from '../qmp/qmp-session';
import { blockdevNodeName, type DiskLayout } from '../sim/qemu-command';

/** Patient, as qemu-server's callers are: someone else may hold the socket for a moment. */
const QMP_OPTS: QmpConnectOptions = { connectAttempts: 20, retryBaseDelayMs: 50, maxRetryDelayMs: 500 };

export interface JobState {
  readonly id: string;
  readonly status: string;
  readonly done: number;
  readonly total: number;
  readonly error?: string;
}

export interface MoveTarget {
  readonly disk: string;
  readonly volid: string;
  readonly path: string;
  readonly format: 'raw' | 'qcow2';
}

export function jobIdOf(disk: string): string {
  return `restore-drive-${disk}`;
}

const MIRROR_GRANULE = 64 * 1024;
const QEMU_DEFAULT_BUF = 16 * 1024 * 1024;

/**
 * The mirror's `buf-size` for a speed limit (bytes/s): QEMU rate-limits between iterations, and one
 * iteration copies up to buf-size (16 MiB by default) at once, so with a limit the burst is bounded
 * too, to about one second of it in 64 KiB steps (at least 64 KiB, at most QEMU's default).
 * No limit: undefined (QEMU's default).
 */
export function mirrorBufSize(speed: number): number | undefined {
  if (!(speed > 0)) return undefined;
  return Math.min(QEMU_DEFAULT_BUF, Math.max(MIRROR_GRANULE, Math.ceil(speed / MIRROR_GRANULE) * MIRROR_GRANULE));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class LiveRestoreQmp {
  constructor(
    readonly qmpPath: string,
    private readonly layout: DiskLayout,
  ) {}

  private session<T>(fn: Parameters<typeof withQmp<T>>[1]): Promise<T> {
    return withQmp(this.qmpPath, fn, QMP_OPTS);
  }

  async waitRunning(timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const { status } = await this.session((q) => q.execute<{ status: string }>('query-status'));
      if (status === 'running') return;
      if (Date.now() > end) throw new Error(`the guest is ${status}, not running, after ${timeoutMs} ms`);
      await sleep(50);
    }
  }

  async startMove(t: MoveTarget, speed: number): Promise<void> {
    const jobId = jobIdOf(t.disk);
    const device = `drive-${t.disk}`;
    const buf = mirrorBufSize(speed);
    const burst = buf === undefined ? {} : { 'buf-size': buf };
    const common = { 'job-id': jobId, device, sync: 'full', speed, 'auto-dismiss': false, ...burst };
    if (this.layout === 'drive') {
      await this.session((q) => q.execute('drive-mirror', { ...common, target: t.path, format: t.format, mode: 'existing' }));
      return;
    }
    await this.session(async (q) => {
      const source = (await queryDisks(q)).find((d) => d.drive === t.disk);
      if (!source) throw new Error(`${device} is not attached in QEMU`);
      const cache = { direct: false, 'no-flush': false };
      const target = {
        driver: t.format,
        'node-name': blockdevNodeName('fmt', t.disk, t.volid),
        cache,
        file: { driver: 'file', filename: t.path, 'node-name': blockdevNodeName('file', t.disk, t.volid), cache, aio: 'threads' },
      };
      await q.execute('blockdev-add', target);
      await q.execute('blockdev-mirror', { ...common, target: target['node-name'], replaces: source.nodeName });
    });
  }

  async jobs(ids: readonly string[]): Promise<Map<string, JobState>> {
    type Raw = { id: string; status: string; 'current-progress': number; 'total-progress': number; error?: string };
    const all = await this.session((q) => q.execute<Raw[]>('query-jobs'));
    const out = new Map<string, JobState>();
    for (const j of all) {
      if (!ids.includes(j.id)) continue;
      out.set(j.id, { id: j.id, status: j.status, done: j['current-progress'], total: j['total-progress'], ...(j.error ? { error: j.error } : {}) });
    }
    return out;
  }

  async setSpeed(jobId: string, speed: number): Promise<void> {
    await this.session((q) => q.execute('block-job-set-speed', { device: jobId, speed }));
  }

  async complete(jobId: string): Promise<void> {
    await this.session((q) => q.execute('job-complete', { id: jobId }));
  }

  async dismiss(jobId: string): Promise<void> {
    await this.session((q) => q.execute('job-dismiss', { id: jobId }));
  }

  /** Cancels a job (failure path); a job that no longer exists is fine. */
  async cancel(jobId: string): Promise<void> {
    await this.session((q) => q.execute('block-job-cancel', { device: jobId, force: true })).catch(() => undefined);
  }

  /** The nodes still reading the export or an overlay, and every restored device's disk. */
  async exportLeft(overlays: readonly string[]): Promise<{ nodes: string[]; disks: QemuDisk[] }> {
    return this.session(async (q) => {
      const named = await q.execute<Array<{ 'node-name': string; drv: string; file: string }>>('query-named-block-nodes', { flat: true });
      const nodes = named.filter((n) => n.drv === 'nbd' || n.file.startsWith('nbd') || overlays.includes(n.file)).map((n) => `${n['node-name']} (${n.drv}: ${n.file})`);
      return { nodes, disks: await queryDisks(q) };
    });
  }
}
