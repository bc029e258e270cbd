/**
 * `pve-cbt repository upgrade` through the real CLI in-process on a real format-1 repository: the
 * JSON envelope and its documented fields, exit 0 and a restorable result, "nothing to do" on a
 * second run, exit 5 with the damaged blobs listed, and a refusal with its code while a backup runs.
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
let img: string;
let backupId: string;

const run = (argv: string[]) => runCliInProcess(argv, { PVE_CBT_CONFIG: configFile });

beforeEach(async () => {
  tmp = tempDir();
  ({ repoDir, configFile } = writeLocalRepoConfig(tmp, CHUNK));
  img = path.join(tmp, 'a.raw');
  fs.writeFileSync(img, seededBytes('a', 16 * CHUNK));
  const repo = await Repository.open(repoDir, { create: true, format: 1, chunkSize: CHUNK });
  backupId = (await backupImage(repo, img, { vmid: 101 })).id;
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('upgrade --json: the report, exit 0, the backup restores byte-exact; a second run has nothing to do', async () => {
  const r = await run(['repository', 'upgrade', '--json']);
  expect(r.code).toBe(0);
  const env = JSON.parse(r.stdout);
  expect(env).toMatchObject({ ok: true, from: 'pve-cbt-repository-1', to: 'pve-cbt-repository-2', alreadyUpgraded: false, resumed: false, blobsSkipped: [] });
  expect(env.blobsCopied).toBeGreaterThan(16);
  expect(env.packsSealed).toBeGreaterThanOrEqual(1);
  expect(typeof env.durationMs).toBe('number');
  const out = path.join(tmp, 'restored.raw');
  expect((await run(['restore', backupId, '--disk', 'scsi0', '--to', out])).code).toBe(0);
  expect(sha256File(out)).toBe(sha256File(img));
  expect((await run(['verify'])).code).toBe(0);

  const again = await run(['repository', 'upgrade']);
  expect(again.code).toBe(0);
  expect(again.stdout).toContain('nothing to do');
});

test('damaged blobs: listed, exit 5', async () => {
  const shard = fs.readdirSync(path.join(repoDir, '.chunks'))[0];
  const name = fs.readdirSync(path.join(repoDir, '.chunks', shard))[0];
  fs.truncateSync(path.join(repoDir, '.chunks', shard, name), 10);
  const r = await run(['repository', 'upgrade', '--json']);
  expect(r.code).toBe(5);
  const env = JSON.parse(r.stdout);
  expect(env.ok).toBe(false);
  expect(env.blobsSkipped).toEqual([{ cursor: `chunk:${name}`, reason: expect.stringContaining('truncated') }]);
});

test('refused while a backup runs: CBT_REPO_UPGRADE_BUSY, exit 1, nothing changed', async () => {
  const repo = await Repository.open(repoDir);
  const w = await repo.startBackup({ vmid: 102 });
  try {
    const r = await run(['repository', 'upgrade', '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe('CBT_REPO_UPGRADE_BUSY');
    expect(JSON.parse(fs.readFileSync(path.join(repoDir, '.pve-cbt-repository'), 'utf8')).format).toBe('pve-cbt-repository-1');
    expect(fs.existsSync(path.join(repoDir, '.upgrade'))).toBe(false);
  } finally {
    await w.abort();
  }
});
