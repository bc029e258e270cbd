/**
 * `pvesm path VOLID` — resolves a Proxmox volume id to the file or block device QEMU opens.
 * Runs the configured binary (absolute path: hooks and daemons may run without PATH) with a
 * timeout, because a hung storage (NFS, iSCSI) must not hang a backup forever.
 * What it prints is not trusted: only an absolute path (normalized) or a real storage's protocol
 * form passes (image-path.ts), anything else is CBT_PVE_PATH_REFUSED before any tool sees it. A
 * volid that is itself an absolute path (pass-through device) is checked the same way.
 */
import { inThreadExec, type ExecRunner } from '../proc/exec-off-thread';
import { checkImagePath } from './image-path';
import { PvePathRefusedError, PvesmFailedError } from './pve-errors';

export interface PvesmOptions {
  readonly timeoutMs?: number;
  /** The VM the volume belongs to, for the error details. */
  readonly vmid?: number;
  /** How pvesm is run (default: execFile on this thread; the daemon runs it off its event loop, exec-off-thread.ts). */
  readonly exec?: ExecRunner;
}

function checked(volid: string, printed: string, options: PvesmOptions): string {
  const check = checkImagePath(printed);
  if (!check.ok) throw PvePathRefusedError({ vmid: options.vmid ?? null, volid, path: printed, refusal: check.refusal, problem: check.problem });
  return check.path;
}

export function pvesmPath(pvesmBin: string, volid: string, options: PvesmOptions = {}): Promise<string> {
  // Pass-through devices and absolute paths in the config are already paths.
  if (volid.startsWith('/')) return new Promise((resolve) => resolve(checked(volid, volid, options)));
  const timeout = options.timeoutMs ?? 15_000;
  const exec = options.exec ?? inThreadExec;
  return exec(pvesmBin, ['path', volid], { timeoutMs: timeout }).then(
    ({ stdout, stderr, error }) => {
      if (error) {
        const reason = error.killed ? `timed out after ${timeout} ms` : (stderr.trim() || error.message);
        throw PvesmFailedError({ pvesm: pvesmBin, volid, reason }, error);
      }
      const out = stdout.trim().split('\n').pop()?.trim() ?? '';
      if (out === '') throw PvesmFailedError({ pvesm: pvesmBin, volid, reason: 'empty output' });
      return checked(volid, out, options);
    },
    (err: Error) => {
      throw PvesmFailedError({ pvesm: pvesmBin, volid, reason: err.message }, err);
    },
  );
}
