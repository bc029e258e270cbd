import { defineError } from '../../shared/errors/cbt-error';

/** Error codes of `pve-cbt repository unlock` (lock-unlock.ts): a lock removed by hand, or refused. */

/** No lock of that name in the repository's `.locks/` (the message lists the ones there are). */
export const RepoLockNotFoundError = defineError<{ lock: string; present: string[] }>(
  'CBT_REPO_LOCK_NOT_FOUND',
  (d) => `repository lock ${d.lock} does not exist${d.present.length ? ` (locks now: ${d.present.join(', ')})` : ' (no locks now)'}`,
);
/** The lock's holder is a process of this host that still runs: never removed, --force or not. */
export const RepoLockHolderAliveError = defineError<{ lock: string; holderPid: number; holderHost: string; what: string; ageMs: number; age: string }>(
  'CBT_REPO_LOCK_HOLDER_ALIVE',
  (d) => `repository lock ${d.lock} is held by pid ${d.holderPid} on this host (${d.holderHost}, ${d.what}, taken ${d.age} ago), which still runs: wait for it or stop it; it is never removed by hand`,
);
/** The lock belongs to another host, whose processes this host cannot see: only with --force. */
export const RepoLockOtherHostError = defineError<{ lock: string; holderPid: number; holderHost: string; what: string; ageMs: number; age: string }>(
  'CBT_REPO_LOCK_OTHER_HOST',
  (d) =>
    `repository lock ${d.lock} belongs to host ${d.holderHost} (pid ${d.holderPid}, ${d.what}, taken ${d.age} ago); this host cannot tell whether it still runs. ` +
    `If ${d.holderHost} is down or has no pve-cbt process ${d.holderPid}, run again with --force`,
);
/** Between reading the lock and removing it, another process replaced it: it was put back. */
export const RepoLockChangedError = defineError<{ lock: string }>(
  'CBT_REPO_LOCK_CHANGED',
  (d) => `repository lock ${d.lock} was taken by another process while it was being removed; it is left to that process (run again to see it)`,
);
