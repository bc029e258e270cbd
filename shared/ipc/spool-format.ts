/**
 * The hooks' durable spool of lifecycle events the daemon did not acknowledge.
 *
 * Layout under the state directory:
 *   spool/events.jsonl     hooks append here: one LifecycleEvent as JSON per line, each with a `seq`
 *   spool/replaying.jsonl  the daemon renames events.jsonl to this name, applies it, then deletes it
 *   spool/rejected.jsonl   lines the daemon could not read or apply, kept for a human to look at
 *
 * Hand-over without locks (Node has no flock): a hook opens events.jsonl with O_APPEND, writes its
 * line in one write(), fsyncs, then checks that the path still names the inode it wrote to. If the
 * daemon renamed the file meanwhile, the hook appends its line again to a fresh events.jsonl. The
 * daemon reads replaying.jsonl only after the rename, so every line is either read there or written
 * again; a line read twice carries the same `seq` and the ledger applies it once.
 */
import path from 'node:path';

export function spoolPaths(stateDir: string): { dir: string; live: string; replaying: string; rejected: string } {
  const dir = path.join(stateDir, 'spool');
  return {
    dir,
    live: path.join(dir, 'events.jsonl'),
    replaying: path.join(dir, 'replaying.jsonl'),
    rejected: path.join(dir, 'rejected.jsonl'),
  };
}
