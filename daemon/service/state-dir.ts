/**
 * The daemon's state directory (`stateDir`: catalog, spool, scratch files, locks) is private to the
 * daemon's user whatever the umask: created 0700, and an existing one of ours is set back to 0700.
 * Files below it that hold backup metadata are created 0600 by their writers (open-catalog.ts).
 */
import fs from 'node:fs';
import { StateDirInsecureError } from './service-errors';

export const PRIVATE_DIR_MODE = 0o700;
export const PRIVATE_FILE_MODE = 0o600;

/** Creates `dir` (and missing parents) and makes it 0700; fails with CBT_STATE_DIR_INSECURE otherwise. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw StateDirInsecureError({ dir, reason: 'not a directory' });
  const uid = process.getuid ? process.getuid() : st.uid;
  if (st.uid !== uid) throw StateDirInsecureError({ dir, reason: `owned by uid ${st.uid}, not ${uid}` });
  if ((st.mode & 0o777) !== PRIVATE_DIR_MODE) fs.chmodSync(dir, PRIVATE_DIR_MODE);
}
