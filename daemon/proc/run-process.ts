/**
 * Runs a tool (qemu-img) to its end and hands back its standard output; a failure, a non-zero exit
 * or the timeout is CBT_BACKUP_TOOL with the command line and the tool's own stderr.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { BackupToolError } from '../backup/backup-errors';

export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(BackupToolError({ command: `${path.basename(cmd)} ${args.join(' ')}`, reason: stderr.trim() || err.message }, err));
      else resolve(stdout);
    });
  });
}
