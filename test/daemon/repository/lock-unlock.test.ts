/**
 * `repository unlock`'s rules (lock-unlock.ts `decideUnlock`) as a table, and the removal on a real
 * local-directory repository (lock-unlock-cases.ts; test/ceph/s3-lock-unlock.test.ts runs the same
 * cases on radosgw).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { decideUnlock, lockAge, lockName, type UnlockFacts } from '../../../daemon/repository/lock-unlock';
import type { LockInfo } from '../../../daemon/repository/repository-lock';
import { LocalDirStorage } from '../../../daemon/repository/storage';
import { unlockCases } from './lock-unlock-cases';

const NOW = 1_800_000_000_000;
const info = (over: Partial<LockInfo> = {}): LockInfo => ({ pid: 4242, procStart: '123', host: 'node-a', what: 'backup', startedAtMs: NOW - 3 * 3600_000 - 5 * 60_000, vmid: 101, ...over });
const base: UnlockFacts = { lock: 'vm-101', info: info(), leftover: false, thisHost: 'node-a', holderRuns: false, force: false, nowMs: NOW };

test.each<[string, Partial<UnlockFacts>, { remove: true; why: string } | { remove: false; code: string; message?: RegExp }]>([
  ['this host, holder gone: stale, removed', {}, { remove: true, why: 'stale' }],
  ['this host, holder gone, --force: still just stale', { force: true }, { remove: true, why: 'stale' }],
  ['this host, holder runs: refused', { holderRuns: true }, { remove: false, code: 'CBT_REPO_LOCK_HOLDER_ALIVE', message: /held by pid 4242 on this host \(node-a, backup, taken 3h05m ago\), which still runs/ }],
  ['this host, holder runs, --force: refused all the same', { holderRuns: true, force: true }, { remove: false, code: 'CBT_REPO_LOCK_HOLDER_ALIVE' }],
  ['another host: refused without --force, naming host, pid and age', { thisHost: 'node-b' }, { remove: false, code: 'CBT_REPO_LOCK_OTHER_HOST', message: /belongs to host node-a \(pid 4242, backup, taken 3h05m ago\).*If node-a is down or has no pve-cbt process 4242, run again with --force/ }],
  ['another host, --force: removed', { thisHost: 'node-b', force: true }, { remove: true, why: 'forced' }],
  ['another host, holderRuns is not asked (cannot be known)', { thisHost: 'node-b', holderRuns: true }, { remove: false, code: 'CBT_REPO_LOCK_OTHER_HOST' }],
  ['another host, no start time recorded: age unknown', { thisHost: 'node-b', info: info({ startedAtMs: undefined as unknown as number }) }, { remove: false, code: 'CBT_REPO_LOCK_OTHER_HOST', message: /taken an unknown time ago/ }],
  ['unreadable lock: no one can hold it', { info: null }, { remove: true, why: 'unreadable' }],
  ['unreadable lock of another host file: the same', { info: null, thisHost: 'node-b' }, { remove: true, why: 'unreadable' }],
  ['take-over leftover: removed', { leftover: true, holderRuns: true }, { remove: true, why: 'leftover' }],
])('%s', (_what, over, expected) => {
  const v = decideUnlock({ ...base, ...over });
  if (expected.remove) {
    expect(v).toEqual({ remove: true, why: expected.why });
    return;
  }
  expect(v.remove).toBe(false);
  if (v.remove) return;
  expect(v.error.code).toBe(expected.code);
  if (expected.message) expect(v.error.message).toMatch(expected.message);
});

test.each([
  [0, '0s'],
  [-5000, '0s'],
  [59_999, '59s'],
  [65_000, '1m05s'],
  [3 * 3600_000 + 2 * 60_000, '3h02m'],
  [3 * 86400_000 + 5 * 3600_000, '3d05h'],
])('lockAge(%d) = %s', (ms, text) => expect(lockAge(ms)).toBe(text));

test.each([
  ['vm-101', 'vm-101'],
  ['vm-101.lock', 'vm-101'],
  ['.locks/gc.lock', 'gc'],
  ['vm-101.lock.stale-0a1b2c3d', 'vm-101.lock.stale-0a1b2c3d'],
])('lockName(%s) = %s', (arg, name) => expect(lockName(arg)).toBe(name));

describe('on a local directory repository', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-unlock-'));
    fs.mkdirSync(path.join(dir, '.locks'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  unlockCases(() => new LocalDirStorage(dir));
});
