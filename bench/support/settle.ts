import { execFileSync } from 'node:child_process';

/**
 * Flushes dirty pages (sync(1)) before a timed step, so that no step pays for the write-back of
 * files an earlier step or the setup left in the page cache.
 */
export function settle(): void {
  execFileSync('sync');
}
