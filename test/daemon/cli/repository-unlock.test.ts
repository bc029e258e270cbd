/**
 * `pve-cbt repository unlock` through the real CLI in-process on a real repository: a dead node's
 * lock blocks that VM's backups (CBT_REPO_LOCKED); the listing shows it; without --force the
 * refusal names host, pid and age (exit 1, nothing removed); with --force it goes, and the next
 * backup of the VM runs and restores byte-exact.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from '../repository/repo-test-helpers';
import { runCliInProcess, writeLocalRepoConfig } from './in-process-cli';

const CHUNK = 64 * 1024;
let tmp: string;
let configFile: string;
let repoDir: string;

const run = (argv: string[]) => runCliInProcess(argv, { PVE_CBT_CONFIG: configFile });

beforeEach(() => {
  tmp = tempDir();
  ({ repoDir, configFile } = writeLocalRepoConfig(tmp, CHUNK));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

test("a dead node's lock: listed, refused without --force, removed with it; then the VM backs up again", async () => {
  const repo = await Repository.open(repoDir, { create: true, chunkSize: CHUNK });
  const img = path.join(tmp, 'a.raw');
  fs.writeFileSync(img, seededBytes('a', 16 * CHUNK));
  const lock = { pid: 4711, procStart: '99', host: 'pve-node-dead', what: 'backup', startedAtMs: Date.now() - 26 * 60_000, vmid: 101 };
  fs.writeFileSync(path.join(repoDir, '.locks', 'vm-101.lock'), JSON.stringify(lock));
  await expect(backupImage(repo, img, { vmid: 101 })).rejects.toMatchObject({ code: 'CBT_REPO_LOCKED' });

  const list = await run(['repository', 'unlock', '--json']);
  expect(list.code).toBe(0);
  expect(JSON.parse(list.stdout)).toMatchObject({ ok: true, locks: [{ lock: 'vm-101', state: 'other-host', host: 'pve-node-dead', pid: 4711, what: 'backup' }] });
  const text = await run(['repository', 'unlock']);
  expect(text.stdout).toMatch(/^LOCK\s+STATE\s+HOST\s+PID\s+WHAT\s+AGE\nvm-101\s+other-host\s+pve-node-dead\s+4711\s+backup\s+26m0\ds/);

  const refused = await run(['repository', 'unlock', 'vm-101']);
  expect(refused.code).toBe(1);
  expect(refused.stderr).toMatch(/CBT_REPO_LOCK_OTHER_HOST/);
  expect(refused.stderr).toMatch(/belongs to host pve-node-dead \(pid 4711, backup, taken 26m0\ds ago\)/);
  expect(fs.existsSync(path.join(repoDir, '.locks', 'vm-101.lock'))).toBe(true);

  const forced = await run(['repository', 'unlock', 'vm-101', '--force', '--json']);
  expect(forced.code).toBe(0);
  expect(JSON.parse(forced.stdout)).toMatchObject({ ok: true, lock: 'vm-101', removed: true, why: 'forced', host: 'pve-node-dead', pid: 4711 });
  expect(fs.readdirSync(path.join(repoDir, '.locks'))).toEqual([]);

  const b = await backupImage(repo, img, { vmid: 101 });
  const out = path.join(tmp, 'restored.raw');
  expect((await run(['restore', b.id, '--disk', 'scsi0', '--to', out])).code).toBe(0);
  expect(sha256File(out)).toBe(sha256File(img));
});
