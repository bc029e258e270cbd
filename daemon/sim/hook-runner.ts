/**
 * Runs hook scripts the way Proxmox does: guest hookscripts as `SCRIPT VMID PHASE` with the
 * inherited environment, vzdump hooks as `SCRIPT PHASE [MODE VMID]` with an emptied environment.
 * No timeout (Proxmox has none); every run is recorded with its result.
 */
import { spawn } from 'node:child_process';

export interface HookRun {
  kind: 'guest' | 'vzdump';
  script: string;
  argv: string[];
  /** The phase argument (`pre-start`, `backup-end`, ...). */
  phase: string;
  env: Record<string, string>;
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Epoch milliseconds when the script was started. */
  time: number;
}

export function runHook(
  kind: HookRun['kind'],
  script: string,
  argv: string[],
  phase: string,
  env: Record<string, string>,
): Promise<HookRun> {
  const time = Date.now();
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let done = false;
    const finish = (exitCode: number, extraErr = ''): void => {
      if (done) return;
      done = true;
      resolve({ kind, script, argv, phase, env, exitCode, stdout, stderr: stderr + extraErr, time });
    };
    const child = spawn(script, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // 126/127 like a shell: not executable / not found.
    child.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ENOENT' ? 127 : 126, `${err.message}\n`));
    child.on('close', (code, signal) => finish(code ?? (signal ? 128 : 1)));
  });
}
