/**
 * The removal of repository locks by hand (lock-unlock.ts `unlockLock`, `listLocks`) against a real
 * storage: run on a local directory (lock-unlock.test.ts) and on radosgw (test/ceph/). Locks are
 * taken by RepositoryLocks itself (this process: a live holder) or written as another process or
 * host would have left them; that a removed lock frees its name is shown by taking it again.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { listLocks, unlockLock } from '../../../daemon/repository/lock-unlock';
import { processStartTime, RepositoryLocks, type LockInfo } from '../../../daemon/repository/repository-lock';
import type { RepositoryStorage } from '../../../daemon/repository/storage';

/** A pid that ran on this host and has exited (so a lock naming it is stale). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '0']);
  return r.pid!;
}

const HOUR = 3600_000;

export function unlockCases(storageOf: () => RepositoryStorage): void {
  const write = (s: RepositoryStorage, name: string, info: Partial<LockInfo>) =>
    s.writeAtomic(`.locks/${name}.lock`, Buffer.from(JSON.stringify({ pid: 1, procStart: null, host: os.hostname(), what: 'backup', startedAtMs: Date.now(), ...info })));

  test('a lock whose holder runs on this host is never removed, --force or not', async () => {
    const s = storageOf();
    const held = await new RepositoryLocks(s).acquire('vm-101', { what: 'backup', vmid: 101 });
    for (const force of [false, true]) {
      await expect(unlockLock(s, 'vm-101', { force })).rejects.toMatchObject({ code: 'CBT_REPO_LOCK_HOLDER_ALIVE', details: { holderPid: process.pid, what: 'backup' } });
    }
    expect(JSON.parse((await s.read('.locks/vm-101.lock'))!.toString())).toEqual(held.info);
    expect(await listLocks(s)).toEqual([{ lock: 'vm-101', info: held.info, state: 'live' }]);
    await new RepositoryLocks(s).release(held);
  });

  test("a dead process's lock of this host is removed without --force", async () => {
    const s = storageOf();
    const pid = deadPid();
    await write(s, 'vm-102', { pid, procStart: processStartTime(process.pid), vmid: 102 });
    expect((await listLocks(s)).map((l) => l.state)).toEqual(['stale']);
    expect(await unlockLock(s, 'vm-102', { force: false })).toMatchObject({ lock: 'vm-102', why: 'stale', info: { pid } });
    expect(await s.read('.locks/vm-102.lock')).toBeNull();
    expect(await listLocks(s)).toEqual([]);
  });

  test("a dead node's lock blocks that VM until removed with --force; the refusal names host, pid and age", async () => {
    const s = storageOf();
    await write(s, 'vm-103', { host: 'pve-dead-node', pid: 31337, startedAtMs: Date.now() - 2 * HOUR - 60_000, vmid: 103 });
    const locks = new RepositoryLocks(s);
    await expect(locks.acquire('vm-103', { what: 'backup', vmid: 103 })).rejects.toMatchObject({ code: 'CBT_REPO_LOCKED' });
    expect((await listLocks(s)).map((l) => [l.lock, l.state])).toEqual([['vm-103', 'other-host']]);
    const refused = unlockLock(s, '.locks/vm-103.lock', { force: false });
    await expect(refused).rejects.toMatchObject({ code: 'CBT_REPO_LOCK_OTHER_HOST', details: { holderHost: 'pve-dead-node', holderPid: 31337 } });
    await expect(refused).rejects.toThrow(/belongs to host pve-dead-node \(pid 31337, backup, taken 2h01m ago\).*run again with --force/);
    expect(await s.read('.locks/vm-103.lock')).not.toBeNull();
    expect(await unlockLock(s, 'vm-103', { force: true })).toMatchObject({ why: 'forced', info: { host: 'pve-dead-node' } });
    const mine = await locks.acquire('vm-103', { what: 'backup', vmid: 103 });
    await locks.release(mine);
  });

  test('a lock taken by another process between the check and the removal is put back, not removed', async () => {
    const real = storageOf();
    await write(real, 'gc', { host: 'pve-dead-node', what: 'gc' });
    const fresh = Buffer.from(JSON.stringify({ pid: process.pid, procStart: processStartTime(process.pid), host: os.hostname(), what: 'gc', startedAtMs: Date.now() }));
    // The storage as it is, but another taker rewrites the lock just before unlock's rename.
    const racing: RepositoryStorage = Object.create(real, {
      rename: { value: async (from: string, to: string) => (await real.writeAtomic(from, fresh), real.rename(from, to)) },
    });
    await expect(unlockLock(racing, 'gc', { force: true })).rejects.toMatchObject({ code: 'CBT_REPO_LOCK_CHANGED' });
    expect((await real.read('.locks/gc.lock'))!.equals(fresh)).toBe(true);
    expect((await real.list('.locks')).filter((f) => f.includes('stale'))).toEqual([]);
  });

  test('unreadable locks and take-over leftovers are removed; a missing lock lists the present ones', async () => {
    const s = storageOf();
    await s.writeAtomic('.locks/vm-104.lock', Buffer.from('{"pid":'));
    await s.writeAtomic('.locks/vm-105.lock.stale-0a1b2c3d', Buffer.from('{}'));
    expect((await listLocks(s)).map((l) => [l.lock, l.state])).toEqual([['vm-104', 'unreadable'], ['vm-105.lock.stale-0a1b2c3d', 'leftover']]);
    await expect(unlockLock(s, 'vm-999', { force: true })).rejects.toThrow(/repository lock vm-999 does not exist \(locks now: vm-104, vm-105.lock.stale-0a1b2c3d\)/);
    expect(await unlockLock(s, 'vm-104', { force: false })).toMatchObject({ why: 'unreadable' });
    expect(await unlockLock(s, 'vm-105.lock.stale-0a1b2c3d', { force: false })).toMatchObject({ why: 'leftover' });
    expect(await listLocks(s)).toEqual([]);
  });
}
