/**
 * A tiny bash hookscript for tests: appends its arguments (one line per call) to a log file and
 * exits non-zero for the phases listed in `failPhases`. Usable as guest hookscript (via its
 * `local:snippets/NAME` volid) and as vzdump hook (absolute path; it needs no PATH).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { PveNode } from './pve-node';

export interface LoggingHook {
  volid: string;
  path: string;
  logPath: string;
  /** Lines logged so far, e.g. ['100 pre-start', '100 post-start']. */
  lines(): string[];
}

export function installLoggingHook(
  node: PveNode,
  name: string,
  opts: { failPhases?: string[]; /** share one log between hooks to see their interleaving */ logPath?: string } = {},
): LoggingHook {
  const scriptPath = path.join(node.snippetsDir, name);
  const logPath = opts.logPath ?? path.join(node.root, `${name}.log`);
  const failPhases = opts.failPhases ?? [];
  const fail =
    failPhases.length === 0
      ? ''
      : `for a in "$@"; do case "$a" in ${failPhases.join('|')}) echo "failing $a" >&2; exit 1 ;; esac; done\n`;
  fs.writeFileSync(scriptPath, `#!/bin/bash\necho "$*" >> '${logPath}'\n${fail}exit 0\n`, { mode: 0o755 });
  return {
    volid: `local:snippets/${name}`,
    path: scriptPath,
    logPath,
    lines: () => (fs.existsSync(logPath) ? fs.readFileSync(logPath, 'utf8').split('\n').filter((l) => l !== '') : []),
  };
}
