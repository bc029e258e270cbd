/**
 * `pvesm path VOLID` — resolves a Proxmox volume id to the file or block device QEMU opens.
 * Runs the configured binary (absolute path: hooks and daemons may run without PATH) with a
 * timeout, because a hung storage (NFS, iSCSI) must not hang a backup forever.
 */
import { execFile } from 'node:child_process';
import { PvesmFailedError } from './pve-errors';

export interface PvesmOptions {
  readonly timeoutMs?: number;
}

export function pvesmPath(pvesmBin: string, volid: string, options: PvesmOptions = {}): Promise<string> {
  // Pass-through devices and absolute paths in the config are already paths.
  if (volid.startsWith('/')) return Promise.resolve(volid);
  const timeout = options.timeoutMs ?? 15_000;
  return new Promise((resolve, reject) => {
    execFile(pvesmBin, ['path', volid], { timeout, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const reason = err.killed ? `timed out after ${timeout} ms` : (stderr.trim() || err.message);
        reject(PvesmFailedError({ pvesm: pvesmBin, volid, reason }, err));
        return;
      }
      const out = stdout.trim().split('\n').pop()?.trim() ?? '';
      if (out === '') {
        reject(PvesmFailedError({ pvesm: pvesmBin, volid, reason: 'empty output' }));
        return;
      }
      resolve(out);
    });
  });
}
