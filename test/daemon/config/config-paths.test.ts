/**
 * The configured paths against the real file system, through the real loader: what `config check`
 * (and the daemon's start, same code) refuses because the daemon would choke on it later.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigInvalidError, type ConfigProblem } from '../../../daemon/config/config-errors';
import { MAX_SOCKET_PATH_BYTES } from '../../../daemon/config/config-path-problems';
import { loadConfig } from '../../../daemon/config/load-config';
import type { CbtError } from '../../../shared/errors/cbt-error';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A config whose every path is fine, with `over` applied; paths are relative to tmp when they start with '@'. */
function load(over: Record<string, string>) {
  const at = (p: string) => (p.startsWith('@') ? path.join(tmp, p.slice(1)) : p);
  const config = {
    stateDir: at('@state'),
    repository: at('@state/repository'),
    logDir: at('@log'),
    socketPath: at('@run/pve-cbt.sock'),
    ...Object.fromEntries(Object.entries(over).map(([k, v]) => [k, at(v)])),
  };
  const file = path.join(tmp, 'config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  return loadConfig({ path: file });
}

function refusal(fn: () => unknown): CbtError & { details: ConfigProblem & { problems: ConfigProblem[] } } {
  try {
    fn();
  } catch (err) {
    if (ConfigInvalidError.is(err)) return err as ReturnType<typeof refusal>;
    throw err;
  }
  throw new Error('expected CBT_CONFIG_INVALID');
}

const aFile = () => {
  fs.writeFileSync(path.join(tmp, 'file'), 'x');
};
const mode = (rel: string, m: number) => () => {
  fs.mkdirSync(path.join(tmp, rel), { recursive: true });
  fs.chmodSync(path.join(tmp, rel), m);
};
const long = (bytes: number) => `@${'s'.repeat(bytes - tmp.length - 1)}`;

describe('accepted', () => {
  test.each<[string, Record<string, string>, () => void]>([
    ['directories that do not exist yet (the daemon creates them)', { stateDir: '@a/b/state', repository: '@a/b/state/repository', logDir: '@a/log', socketPath: '@r/u/n/s.sock' }, () => undefined],
    ['existing directories, socket directory 0700', { socketPath: '@run/pve-cbt.sock' }, mode('run', 0o700)],
    ['a socket path of exactly 107 bytes', { socketPath: 'LONG107' }, () => undefined],
  ])('%s', (_name, over, prepare) => {
    prepare();
    const resolved = Object.fromEntries(Object.entries(over).map(([k, v]) => [k, v === 'LONG107' ? long(MAX_SOCKET_PATH_BYTES) : v]));
    const c = load(resolved);
    if (over.socketPath === 'LONG107') expect(Buffer.byteLength(c.socketPath)).toBe(107);
  });
});

describe('refused with key path and hint', () => {
  test.each<[string, Record<string, string>, () => void, string, RegExp]>([
    ['socketPath directly in /tmp', { socketPath: '/tmp/pve-cbt.sock' }, () => undefined, '/socketPath', /world-writable.*sticky/],
    ['socketPath in a world-writable dir', { socketPath: '@open/s.sock' }, mode('open', 0o777), '/socketPath', /world-writable/],
    ['socketPath in a sticky 01733 dir', { socketPath: '@sticky/s.sock' }, mode('sticky', 0o1733), '/socketPath', /sticky/],
    ['socketPath in a 0755 dir (the daemon wants 0700)', { socketPath: '@run/s.sock' }, mode('run', 0o755), '/socketPath', /group or others/],
    ['socketPath in a 0700 dir of another user', { socketPath: '@theirs/s.sock' }, () => {
      mode('theirs', 0o700)();
      fs.chownSync(path.join(tmp, 'theirs'), 65534, 65534);
    }, '/socketPath', /owned by uid 65534/],
    ['socketPath of 108 bytes', { socketPath: 'LONG108' }, () => undefined, '/socketPath', /108 bytes.*at most 107/],
    ['socketPath below a file', { socketPath: '@file/s.sock' }, aFile, '/socketPath', /is not a directory/],
    ['stateDir is a file', { stateDir: '@file', repository: '@repo' }, aFile, '/stateDir', /exists and is not a directory/],
    ['stateDir below a file', { stateDir: '@file/state', repository: '@repo' }, aFile, '/stateDir', /file is not a directory, so .* cannot be created/],
    ['logDir is a file', { logDir: '@file' }, aFile, '/logDir', /exists and is not a directory/],
    ['logDir below a file', { logDir: '@file/a/log' }, aFile, '/logDir', /cannot be created/],
    ['repository is a file', { repository: '@file' }, aFile, '/repository', /exists and is not a directory/],
    ['repository below a file', { repository: '@file/a/repo' }, aFile, '/repository', /cannot be created/],
  ])('%s', (_name, over, prepare, keyPath, problem) => {
    prepare();
    const resolved = Object.fromEntries(Object.entries(over).map(([k, v]) => [k, v === 'LONG108' ? long(108) : v]));
    const e = refusal(() => load(resolved));
    expect(e.code).toBe('CBT_CONFIG_INVALID');
    expect(e.details.keyPath).toBe(keyPath);
    expect(e.details.problem).toMatch(problem);
    expect(e.details.hint).not.toBe('');
  });

  test('several path problems are reported at once', () => {
    aFile();
    const e = refusal(() => load({ stateDir: '@file', repository: '@repo', logDir: '@file/log', socketPath: '/tmp/s.sock' }));
    expect(e.details.problems.map((p) => p.keyPath).sort()).toEqual(['/logDir', '/socketPath', '/stateDir']);
  });
});
