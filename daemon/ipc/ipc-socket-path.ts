/**
 * The control socket's place in the file system (ipc-server.ts): an absolute path in a directory of
 * mode 0700 owned by the daemon's user. The directory is created if missing, an existing one with
 * looser rights is refused rather than changed (it may be shared, e.g. /run), and a stale socket
 * file left by a crashed daemon is removed.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { IpcSocketDirInsecureError, IpcSocketInUseError, IpcSocketPathError } from '../../shared/ipc/ipc-errors';

/**
 * Creates the 0700 directory, refuses an insecure existing one, and clears a stale socket file left
 * by a crashed daemon (but never a live one, nor anything that is not a socket).
 */
export async function prepareSocketPath(socketPath: string): Promise<void> {
  if (!path.isAbsolute(socketPath)) throw IpcSocketPathError({ socketPath, reason: 'path must be absolute' });
  const dir = path.dirname(socketPath);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  const uid = process.getuid ? process.getuid() : 0;
  if (st.uid !== uid || (st.mode & 0o077) !== 0) {
    throw IpcSocketDirInsecureError({ dir, mode: `0${(st.mode & 0o777).toString(8)}`, uid: st.uid, expectedUid: uid });
  }
  let existing: fs.Stats | undefined;
  try {
    existing = fs.lstatSync(socketPath);
  } catch {
    return;
  }
  if (!existing.isSocket()) throw IpcSocketPathError({ socketPath, reason: 'a file that is not a socket is in the way' });
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw IpcSocketInUseError({ socketPath });
  fs.rmSync(socketPath, { force: true });
}
