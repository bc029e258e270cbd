/**
 * Checks of the configured paths against the real file system, so that `config check` refuses what
 * the daemon would otherwise die on later with a misleading error:
 *
 * - stateDir, logDir, repository: an existing path must be a directory, and a missing one must be
 *   creatable (its nearest existing ancestor is a directory, not a file).
 * - socketPath: at most 107 bytes (sun_path holds 108 with the NUL; Node would bind a truncated path
 *   outside the checked directory); its directory, when it exists, must be what the IPC server
 *   accepts (ipc-server.ts): a directory owned by root (or this user) with no group/other access,
 *   as the daemon creates it (0700). A socket directly in /tmp (world-writable, sticky) is refused.
 *
 * A path this process cannot even inspect (EACCES for a non-root caller) is not a problem here: the
 * daemon, as root, will see it. Every problem names the key path and gives a hint.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ConfigProblem } from './config-errors';
import type { CbtConfig } from './config-schema';

/** sun_path is 108 bytes on Linux, one of them the terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

type Stat = fs.Stats | 'missing' | 'unknown';

function statOf(p: string): Stat {
  try {
    return fs.statSync(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' || code === 'ENOTDIR' ? 'missing' : 'unknown';
  }
}

/** `dir` must be a directory or creatable as one; undefined when it is fine. */
export function directoryProblem(keyPath: string, dir: string): ConfigProblem | undefined {
  const key = keyPath.slice(1);
  for (let p = dir; ; p = path.dirname(p)) {
    const st = statOf(p);
    if (st === 'unknown') return undefined;
    if (st !== 'missing') {
      if (st.isDirectory()) return undefined;
      if (p === dir) return { keyPath, problem: `${dir} exists and is not a directory`, hint: `remove it, or point ${key} at a directory` };
      return { keyPath, problem: `${p} is not a directory, so ${dir} cannot be created`, hint: `point ${key} at a path below a directory` };
    }
    if (p === path.dirname(p)) return undefined;
  }
}

export function socketPathProblems(socketPath: string, uid: number): ConfigProblem[] {
  const keyPath = '/socketPath';
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    return [
      {
        keyPath,
        problem: `${socketPath} is ${bytes} bytes; a unix socket path holds at most ${MAX_SOCKET_PATH_BYTES}`,
        hint: 'use a shorter path, e.g. /run/pve-cbt/pve-cbt.sock',
      },
    ];
  }
  const dir = path.dirname(socketPath);
  const notDir = directoryProblem(keyPath, dir);
  if (notDir) return [notDir];
  const st = statOf(dir);
  if (typeof st === 'string') return [];
  const mode = st.mode & 0o7777;
  const flaws = [
    // The daemon runs as root; a non-root caller of `config check` may still look at root's directory.
    ...(st.uid !== uid && st.uid !== 0 ? [`owned by uid ${st.uid}, not ${uid}`] : []),
    ...(mode & 0o002 ? ['world-writable'] : []),
    ...(mode & 0o1000 ? ['sticky (a shared directory like /tmp)'] : []),
    ...(mode & 0o075 && !(mode & 0o002) ? ['open to group or others'] : []),
  ];
  if (flaws.length === 0) return [];
  return [
    {
      keyPath,
      problem: `the socket's directory ${dir} (mode 0${mode.toString(8)}) is ${flaws.join(', ')}: another user could replace the socket`,
      hint: 'put the socket in a directory of its own, e.g. /run/pve-cbt/pve-cbt.sock; the daemon creates a missing one with mode 0700',
    },
  ];
}

/** All file-system problems of an (otherwise valid) config. */
export function configPathProblems(config: CbtConfig, uid: number = process.getuid?.() ?? 0): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const key of ['stateDir', 'logDir'] as const) {
    const p = directoryProblem(`/${key}`, config[key]);
    if (p) problems.push(p);
  }
  problems.push(...socketPathProblems(config.socketPath, uid));
  return problems;
}
