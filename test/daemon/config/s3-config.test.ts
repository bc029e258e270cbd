import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { validateConfig } from '../../../daemon/config/load-config';
import { repositoryStorageOf } from '../../../daemon/repository/repository-storage-of';
import { S3Storage } from '../../../daemon/repository/s3-storage';
import { LocalDirStorage } from '../../../daemon/repository/storage';
import type { ConfigProblem } from '../../../daemon/config/config-errors';

const NOW = new Date('2026-12-02T03:00:00Z');
const s3 = { endpoint: 'http://127.0.0.1:7480', accessKey: 'AK', secretKey: 'SK' };

function problemsOf(raw: unknown): ConfigProblem[] {
  try {
    validateConfig(raw, 'x.json', NOW);
  } catch (err) {
    return (err as { details: { problems: ConfigProblem[] } }).details.problems;
  }
  return [];
}

describe('an s3:// repository in the config', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-s3cfg-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('is accepted with an s3 section, which gets its defaults; the storage is S3 with the cache in stateDir', () => {
    const c = validateConfig({ repository: 's3://pve-backups/cluster-a', stateDir: tmp, s3 }, 'x.json', NOW);
    expect(c.s3).toEqual({ ...s3, region: 'us-east-1', timeoutMs: 30_000 });
    const storage = repositoryStorageOf(c);
    expect(storage).toBeInstanceOf(S3Storage);
    expect(storage.root).toBe('s3://pve-backups/cluster-a/');
    expect((storage as S3Storage).bucket).toBe('pve-backups');
  });

  it('a directory repository keeps its local storage', () => {
    const c = validateConfig({ repository: path.join(tmp, 'repo'), stateDir: tmp }, 'x.json', NOW);
    expect(repositoryStorageOf(c)).toBeInstanceOf(LocalDirStorage);
  });

  it.each([
    [{ repository: 's3://pve-backups' }, '/s3', 'no s3 section'],
    [{ repository: 's3://PVE', s3 }, '/repository', 'not a valid S3 bucket name'],
    [{ repository: 's3://pve-backups', s3: { ...s3, endpoint: 'ftp://x' } }, '/s3/endpoint', ''],
    [{ repository: 's3://pve-backups', s3: { endpoint: s3.endpoint, accessKey: 'AK' } }, '/s3/secretKey', "missing required key 'secretKey'"],
    [{ repository: 'relative/dir' }, '/repository', ''],
  ])('%j is refused at %s', (raw, keyPath, text) => {
    const problems = problemsOf({ stateDir: tmp, ...raw });
    expect(problems).toEqual(expect.arrayContaining([expect.objectContaining({ keyPath, problem: expect.stringContaining(text) })]));
  });
});
