/**
 * `pvesm alloc STORAGE VMID NAME SIZE --format FMT` and `pvesm free VOLID`: create and remove VM
 * volumes the way qmrestore does (through the storage layer, so every storage type names and places
 * its volumes itself). SIZE goes in KiB (pvesm's unit without suffix), rounded up. `alloc` prints
 * `successfully created 'VOLID'`; that volid is what the config names. Timeouts as for `pvesm path`:
 * a hung storage fails the restore instead of hanging it.
 */
import { execFile } from 'node:child_process';
import { PvesmCommandFailedError } from './pve-errors';

export interface PvesmCallOptions {
  readonly timeoutMs?: number;
}

function runPvesm(pvesmBin: string, args: string[], opts: PvesmCallOptions): Promise<string> {
  const timeout = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    execFile(pvesmBin, args, { timeout, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const reason = err.killed ? `timed out after ${timeout} ms` : (stderr.trim() || err.message);
      reject(PvesmCommandFailedError({ pvesm: pvesmBin, args, reason, exists: /already exists/i.test(stderr) }, err));
    });
  });
}

/** Allocates a volume of at least `sizeBytes` and returns its volid. */
export async function pvesmAlloc(
  pvesmBin: string,
  v: { storage: string; vmid: number; name: string; sizeBytes: number; format: 'raw' | 'qcow2' },
  opts: PvesmCallOptions = {},
): Promise<string> {
  const args = ['alloc', v.storage, String(v.vmid), v.name, String(Math.ceil(v.sizeBytes / 1024)), '--format', v.format];
  const out = await runPvesm(pvesmBin, args, opts);
  const m = /successfully created '([^']+)'/.exec(out);
  if (!m) throw PvesmCommandFailedError({ pvesm: pvesmBin, args, reason: `no volume id in its output: ${JSON.stringify(out.trim())}`, exists: false });
  return m[1];
}

export async function pvesmFree(pvesmBin: string, volid: string, opts: PvesmCallOptions = {}): Promise<void> {
  await runPvesm(pvesmBin, ['free', volid], opts);
}
