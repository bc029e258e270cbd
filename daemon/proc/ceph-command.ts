/**
 * Runs the `rbd` CLI against the cluster and identity named by an RBD volume (rbd-volume.ts),
 * always with a bound: Ceph clients block forever while the monitors are unreachable. The process
 * is killed when the bound expires (CBT_CEPH_TIMEOUT); a non-zero exit is CBT_CEPH_COMMAND_FAILED
 * with rbd's own stderr. `--format json` output is parsed by `rbdJson`.
 */
import { execFile } from 'node:child_process';
import { programPath } from './external-programs';
import { CephCommandFailedError, CephOutputError, CephTimeoutError } from './ceph-errors';
import { rbdCliArgs, type RbdImage } from '../pve/rbd-volume';

/** Default bound of one rbd call: a snapshot or a diff of a healthy cluster takes well under a second. */
export const RBD_TIMEOUT_MS = 60_000;

export interface CephCallOptions {
  readonly timeoutMs?: number;
  /** The rbd binary (default: `rbd` on PATH). */
  readonly rbd?: string;
}

export function rbd(img: RbdImage, args: readonly string[], opts: CephCallOptions = {}): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? RBD_TIMEOUT_MS;
  const bin = opts.rbd ?? programPath('rbd');
  const argv = [...rbdCliArgs(img), ...args];
  const command = `rbd ${args.join(' ')}`;
  return new Promise((resolve, reject) => {
    execFile(bin, argv, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      if ((err as { killed?: boolean }).killed) return reject(CephTimeoutError({ command, timeoutMs }, err));
      const code = typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null;
      reject(CephCommandFailedError({ command, exitCode: code, stderr: stderr.trim() || err.message }, err));
    });
  });
}

export async function rbdJson<T>(img: RbdImage, args: readonly string[], opts: CephCallOptions = {}): Promise<T> {
  const out = await rbd(img, [...args, '--format', 'json'], opts);
  try {
    return JSON.parse(out.trim() === '' ? 'null' : out) as T;
  } catch (err) {
    throw CephOutputError({ command: `rbd ${args.join(' ')} --format json`, output: out.slice(0, 500) }, err);
  }
}
