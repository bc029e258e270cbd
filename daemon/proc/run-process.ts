/**
 * Runs a tool (qemu-img) to its end and hands back its standard output; a failure, a non-zero exit
 * or the timeout is CBT_BACKUP_TOOL with the command line and the tool's own stderr (a timeout says
 * so: the bound matters for tools on RBD images, where librbd waits forever for a cluster that is down).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { BackupToolError } from '../backup/backup-errors';
import { traceNow, traceSince } from '../../shared/trace/trace-spans';

export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  const t0 = traceNow();
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      traceSince(`spawn.${path.basename(cmd)}`, t0, { args: args.slice(0, 2).join(' ') });
      const reason = (err as { killed?: boolean } | null)?.killed ? `timed out after ${timeoutMs} ms` : stderr.trim() || err?.message;
      if (err) reject(BackupToolError({ command: `${path.basename(cmd)} ${args.join(' ')}`, reason: reason ?? '' }, err));
      else resolve(stdout);
    });
  });
}
