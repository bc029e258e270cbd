/**
 * Replays the hooks' spool (shared/ipc/spool-format.ts) into the ledger: at daemon start, before the
 * IPC server accepts connections, and whenever a hook reaches the daemon again (the lifecycle event
 * handler calls it before applying the live event, so spooled events keep their order).
 *
 * Crash safety: events.jsonl is renamed to replaying.jsonl before it is read and deleted only after
 * every line was applied; a replaying.jsonl found at start belongs to an interrupted replay and goes
 * first. Lines applied before a crash are applied again and dropped by the ledger as duplicates (seq).
 * A line that is not JSON, or that the ledger refuses as malformed, is moved to rejected.jsonl and
 * logged; any other failure stops the replay with the file left in place for the next attempt.
 */
import fs from 'node:fs';
import type { Logger } from 'winston';
import type { LifecycleEvent } from '../../shared/ipc/messages';
import { spoolPaths } from '../../shared/ipc/spool-format';
import { LedgerBadEventError } from '../ledger/ledger-errors';
import { fsyncDir } from '../../shared/fs/fsync-dir';

export interface SpoolReplayResult {
  applied: number;
  rejected: number;
}

export function replaySpool(
  stateDir: string,
  apply: (ev: LifecycleEvent) => void,
  logger?: Logger,
): SpoolReplayResult {
  const paths = spoolPaths(stateDir);
  const total: SpoolReplayResult = { applied: 0, rejected: 0 };
  if (!fs.existsSync(paths.dir)) return total;
  // An interrupted replay's file, then the live file, then once more for lines that hooks wrote
  // again after seeing their file renamed away (see spool-format.ts).
  for (let round = 0; round < 3; round++) {
    if (!fs.existsSync(paths.replaying)) {
      try {
        fs.renameSync(paths.live, paths.replaying);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
        throw err;
      }
      fsyncDir(paths.dir);
    }
    const r = replayFile(paths.replaying, paths.rejected, apply, logger);
    total.applied += r.applied;
    total.rejected += r.rejected;
    fs.unlinkSync(paths.replaying);
    fsyncDir(paths.dir);
  }
  if (total.applied + total.rejected > 0) logger?.info('spool replayed', { ...total });
  return total;
}

function replayFile(file: string, rejectedFile: string, apply: (ev: LifecycleEvent) => void, logger?: Logger): SpoolReplayResult {
  const result: SpoolReplayResult = { applied: 0, rejected: 0 };
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  for (const line of lines) {
    if (line.trim() === '') continue;
    let ev: unknown;
    try {
      ev = JSON.parse(line);
    } catch {
      ev = undefined;
    }
    if (typeof ev !== 'object' || ev === null || Array.isArray(ev)) {
      reject(rejectedFile, line, 'not a JSON object', logger);
      result.rejected++;
      continue;
    }
    try {
      apply(ev as LifecycleEvent);
      result.applied++;
    } catch (err) {
      if (!LedgerBadEventError.is(err)) throw err;
      reject(rejectedFile, line, err.message, logger);
      result.rejected++;
    }
  }
  return result;
}

function reject(rejectedFile: string, line: string, reason: string, logger?: Logger): void {
  logger?.warn('spooled event rejected', { reason, line: line.slice(0, 500), rejectedFile });
  const fd = fs.openSync(rejectedFile, 'a', 0o600);
  try {
    fs.writeSync(fd, `${line}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
