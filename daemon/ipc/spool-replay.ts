/**
 * Replays the hooks' spool (shared/ipc/spool-format.ts) into the ledger: at daemon start, before the
 * IPC server accepts connections, and whenever a hook reaches the daemon again (the lifecycle event
 * handler calls it before applying the live event, so spooled events keep their order).
 *
 * Crash safety: events.jsonl is renamed to replaying.jsonl before it is read and deleted only after
 * every line was applied; a replaying.jsonl found at start belongs to an interrupted replay and goes
 * first. Lines applied before a crash are applied again and dropped by the ledger as duplicates (seq).
 * Every line is checked against the lifecycle event schema (lifecycle-event-schema.ts, the one the
 * socket uses) before it reaches the ledger, so a line of the wrong types (`"seq": true`) never gets
 * to an SQLite bind. A line that is not JSON, fails the schema, or that the ledger refuses as
 * malformed is copied to rejected.jsonl, logged, and skipped; the replay goes on with the next line.
 * rejected.jsonl holds each rejected line once: a line already there is not appended again, so a
 * replay repeated after an interruption adds no duplicates. Any other failure (the catalog's disk is
 * full, SQLite is busy) is not the line's fault: it stops the replay with the file left in place for
 * the next attempt.
 */
import fs from 'node:fs';
import type { Logger } from 'winston';
import type { LifecycleEvent } from '../../shared/ipc/messages';
import { spoolPaths } from '../../shared/ipc/spool-format';
import { LedgerBadEventError } from '../ledger/ledger-errors';
import { lifecycleEventValidator } from './lifecycle-event-schema';
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
  const rejects = new RejectedLines(rejectedFile, logger);
  const validate = lifecycleEventValidator();
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
      rejects.add(line, 'not a JSON object');
      result.rejected++;
      continue;
    }
    if (!validate(ev)) {
      const why = (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`).join('; ');
      rejects.add(line, `not a lifecycle event: ${why}`);
      result.rejected++;
      continue;
    }
    try {
      apply(ev as LifecycleEvent);
      result.applied++;
    } catch (err) {
      if (!LedgerBadEventError.is(err)) throw err;
      rejects.add(line, err.message);
      result.rejected++;
    }
  }
  return result;
}

/** rejected.jsonl, appended to at most once per distinct line. */
class RejectedLines {
  private known: Set<string> | undefined;

  constructor(
    private readonly file: string,
    private readonly logger?: Logger,
  ) {}

  add(line: string, reason: string): void {
    this.known ??= this.load();
    if (this.known.has(line)) {
      this.logger?.debug('spooled event already in rejected.jsonl', { reason, rejectedFile: this.file });
      return;
    }
    this.logger?.warn('spooled event rejected', { reason, line: line.slice(0, 500), rejectedFile: this.file });
    const fd = fs.openSync(this.file, 'a', 0o600);
    try {
      fs.writeSync(fd, `${line}\n`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    this.known.add(line);
  }

  private load(): Set<string> {
    try {
      return new Set(fs.readFileSync(this.file, 'utf8').split('\n').filter((l) => l !== ''));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Set();
      throw err;
    }
  }
}
