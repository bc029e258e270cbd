/**
 * `pve-cbt repository unlock [LOCK] [--force]`: removes a stale repository lock by hand, the way
 * out for the locks a dead node leaves in a shared (S3) repository (daemon/repository/lock-unlock.ts
 * has the rules). Without LOCK it lists the locks (`vm-101`, `gc`, …) with holder host, pid,
 * purpose, age and state, and changes nothing. A lock of this host whose holder runs is never
 * removed; one of this host whose holder is gone is; one of another host only with --force, after
 * the refusal named that host, pid and age. Each removal is logged (component `cli`).
 * JSON (beside `ok`, output.ts): listing `{ locks: [{ lock, state, host, pid, what, ageMs }] }`;
 * removal `{ lock, removed: true, why, host, pid, what }` (why: stale | forced | unreadable | leftover).
 *
 * Registered as a subcommand of `repository` by command-loaders.ts (`withUnlock`).
 */
import { listLocks, lockAge, unlockLock, type LockEntry } from '../../repository/lock-unlock';
import { defineCommand, type CommandDefinition } from '../command';
import { withStores } from '../local-stores';
import { textTable } from '../text-table';

function entryView(l: LockEntry, nowMs: number) {
  return { lock: l.lock, state: l.state, host: l.info?.host ?? null, pid: l.info?.pid ?? null, what: l.info?.what ?? null, ageMs: typeof l.info?.startedAtMs === 'number' ? nowMs - l.info.startedAtMs : null };
}

export const unlockSub = defineCommand<{ force?: boolean }, { lock?: string }>({
  name: 'unlock',
  summary: "remove a stale repository lock (a dead node's: --force); without LOCK, list the locks",
  params: [{ name: 'lock', description: "lock name as listed (vm-101, gc); omitted: list the locks" }],
  options: [{ flags: '--force', description: "remove a lock of another host (make sure that host runs no pve-cbt for it)" }],
  examples: ['pve-cbt repository unlock', 'pve-cbt repository unlock vm-101', 'pve-cbt repository unlock vm-101 --force --json'],
  async run(ctx) {
    const lock = ctx.args.lock;
    const nowMs = Date.now();
    if (lock === undefined) {
      const locks = await withStores(ctx, (s) => listLocks(s.repo.storage), { readOnly: true });
      const views = locks.map((l) => entryView(l, nowMs));
      const rows = views.map((v) => [v.lock, v.state, v.host ?? '-', v.pid === null ? '-' : String(v.pid), v.what ?? '-', v.ageMs === null ? '-' : lockAge(v.ageMs)]);
      return { data: { locks: views }, text: views.length ? textTable(['LOCK', 'STATE', 'HOST', 'PID', 'WHAT', 'AGE'], rows) : 'no repository locks' };
    }
    const r = await withStores(ctx, async (s) => {
      const done = await unlockLock(s.repo.storage, lock, { force: ctx.opts.force === true, nowMs });
      s.logger.warn('repository lock removed by hand', { lock: done.lock, why: done.why, holderHost: done.info?.host, holderPid: done.info?.pid, what: done.info?.what });
      return done;
    });
    const holder = r.info ? ` (held by pid ${r.info.pid} on ${r.info.host}, ${r.info.what})` : '';
    return {
      data: { lock: r.lock, removed: true, why: r.why, host: r.info?.host ?? null, pid: r.info?.pid ?? null, what: r.info?.what ?? null },
      text: `removed ${r.why} lock ${r.lock}${holder}`,
    };
  },
});

/** `repository` with `unlock` beside its other subcommands (command-loaders.ts). */
export function withUnlock(repository: CommandDefinition): CommandDefinition {
  return { ...repository, summary: 'repository maintenance (upgrade, unlock)', subcommands: [...(repository.subcommands ?? []), unlockSub] };
}
