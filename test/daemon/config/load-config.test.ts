import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigInvalidError, type ConfigProblem } from '../../../daemon/config/config-errors';
import { loadConfig, resolveConfigPath, validateConfig } from '../../../daemon/config/load-config';
import { DEFAULTS } from '../../../shared/config/defaults';
import type { CbtError } from '../../../shared/errors/cbt-error';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const NOW = new Date(2026, 10, 25, 12, 0, 0);

function refusal(fn: () => unknown): CbtError & { details: ConfigProblem & { file: string; problems: ConfigProblem[] } } {
  try {
    fn();
  } catch (err) {
    if (ConfigInvalidError.is(err)) return err as ReturnType<typeof refusal>;
    throw err;
  }
  throw new Error('expected CBT_CONFIG_INVALID');
}

function writeConfig(value: unknown, name = 'config.json'): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

describe('defaults', () => {
  test('an empty object yields every default and is deeply frozen', () => {
    const c = validateConfig({}, 'x.json', NOW);
    expect(c).toEqual({
      ...DEFAULTS,
      // No chunk size: the repository's own (64 KiB in format 2, 256 KiB in format 1).
      ipcIdleTimeoutMs: 30_000,
      jobs: [],
      verify: { schedule: 'monthly', enabled: true },
      notify: { mailto: 'root', on: 'failure', sendmail: '/usr/sbin/sendmail' },
      encryption: {},
    });
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.jobs)).toBe(true);
  });

  test('job defaults are filled and nested objects frozen', () => {
    const c = validateConfig({ repository: path.join(tmp, 'repo'), jobs: [{ id: 'nightly', vms: [101, 102], schedule: 'daily 02:00' }] }, 'x', NOW);
    expect(c.jobs[0]).toEqual({ id: 'nightly', vms: [101, 102], schedule: 'daily 02:00', retention: {}, enabled: true });
    expect(Object.isFrozen(c.jobs[0].vms)).toBe(true);
    expect(() => {
      (c.jobs[0].retention as { keepLast?: number }).keepLast = 3;
    }).toThrow(TypeError);
  });

  test('every VM selector form is accepted', () => {
    const jobs = [[100], 'all', { pool: 'prod' }, { tag: 'cbt' }].map((vms, i) => ({ id: `j${i}`, vms, schedule: 'sat 03:00' }));
    expect(validateConfig({ jobs }, 'x', NOW).jobs.map((j) => j.vms)).toEqual([[100], 'all', { pool: 'prod' }, { tag: 'cbt' }]);
  });

  test('the input object is not modified', () => {
    const raw = { jobs: [{ id: 'a', vms: 'all', schedule: 'daily' }] };
    validateConfig(raw, 'x', NOW);
    expect(raw).toEqual({ jobs: [{ id: 'a', vms: 'all', schedule: 'daily' }] });
  });
});

describe('refusals: CBT_CONFIG_INVALID with key path and hint', () => {
  const job = (over: Record<string, unknown>) => ({ jobs: [{ id: 'nightly', vms: 'all', schedule: 'daily', ...over }] });
  test.each<[string, () => unknown, string, RegExp, RegExp]>([
    ['unknown top-level key', () => ({ foo: 1 }), '/foo', /unknown key 'foo'/, /allowed keys: .*repository/],
    ['misspelt key', () => ({ repositry: '/x' }), '/repositry', /unknown key/, /did you mean 'repository'/],
    ['unknown key in a job', () => job({ schedul: 'daily' }), '/jobs/0/schedul', /unknown key/, /did you mean 'schedule'/],
    ['unknown key in retention', () => job({ retention: { keepDaly: 3 } }), '/jobs/0/retention/keepDaly', /unknown key/, /did you mean 'keepDaily'/],
    ['wrong type', () => ({ concurrency: '2' }), '/concurrency', /must be an integer, not a string "2"/, /example: 1/],
    ['wrong type: boolean', () => ({ strictHooks: 'yes' }), '/strictHooks', /must be a boolean/, /example: false/],
    ['chunk size not a power of two', () => ({ chunkSize: 196608 }), '/chunkSize', /196608 is not allowed.*power of two/, /one of: 65536, 131072/],
    ['chunk size below 64 KiB', () => ({ chunkSize: 4096 }), '/chunkSize', /not allowed/, /65536/],
    ['compression not in the list', () => ({ compression: 'zstd' }), '/compression', /"zstd" is not allowed/, /one of: "auto", "none"/],
    ['log level', () => ({ logLevel: 'trace' }), '/logLevel', /not allowed/, /"debug"/],
    ['relative path', () => ({ stateDir: 'var/lib' }), '/stateDir', /not an absolute path/, /example: "\/var\/lib\/pve-cbt"/],
    ['concurrency 0', () => ({ concurrency: 0 }), '/concurrency', /must be >= 1/, /example: 1/],
    ['log size format', () => ({ logMaxSize: '20 MB' }), '/logMaxSize', /wrong form/, /20m/],
    ['missing repository parent', () => ({ repository: '/nonexistent-cbt-parent/repo' }), '/repository', /parent directory \/nonexistent-cbt-parent .*does not exist/, /mount/],
    ['repository is a file', () => ({ repository: writeConfig('x', 'file') }), '/repository', /not a directory/, /directory/],
    ['job without id', () => ({ jobs: [{ vms: 'all', schedule: 'daily' }] }), '/jobs/0/id', /missing required key 'id'/, /example: "nightly"/],
    ['job without schedule', () => ({ jobs: [{ id: 'a', vms: 'all' }] }), '/jobs/0/schedule', /missing required key/, /daily 02:00/],
    ['bad job id', () => job({ id: 'Night Ly' }), '/jobs/0/id', /wrong form/, /nightly/],
    ['vms: unknown word', () => job({ vms: 'some' }), '/jobs/0/vms', /"some" is not allowed.*list of VM ids/, /"all"/],
    ['vms: id below 100', () => job({ vms: [1] }), '/jobs/0/vms', /\[1\] is not allowed/, /\[100,101\]/],
    ['vms: empty list', () => job({ vms: [] }), '/jobs/0/vms', /not allowed/, /pool/],
    ['vms: pool with extra key', () => job({ vms: { pool: 'p', x: 1 } }), '/jobs/0/vms', /not allowed/, /tag/],
    ['bad schedule', () => job({ schedule: 'mon 25:00' }), '/jobs/0/schedule', /'mon 25:00': hour 25 out of range \(at character 5\)/, /0\.\.23/],
    ['misspelt schedule', () => job({ schedule: 'dayly' }), '/jobs/0/schedule', /unknown weekday/, /did you mean 'daily'/],
    ['schedule that never fires', () => job({ schedule: '2020-01-01' }), '/jobs/0/schedule', /never fires again/, /daily 02:00/],
    ['retention keep 0', () => job({ retention: { keepLast: 0 } }), '/jobs/0/retention/keepLast', /must be >= 1/, /7/],
    ['duplicate job ids', () => ({ jobs: [{ id: 'a', vms: 'all', schedule: 'daily' }, { id: 'a', vms: 'all', schedule: 'sat' }] }), '/jobs/1/id', /duplicate job id 'a' \(also \/jobs\/0\/id\)/, /unique/],
    ['jobs not an array', () => ({ jobs: {} }), '/jobs', /must be an array, not an object/, /nightly/],
    ['notify: misspelt key', () => ({ notify: { mailTo: 'root' } }), '/notify/mailTo', /unknown key/, /did you mean 'mailto'/],
    ['notify.on not in the list', () => ({ notify: { on: 'sometimes' } }), '/notify/on', /"sometimes" is not allowed/, /one of: "failure", "always"/],
    ['notify.mailto with a space', () => ({ notify: { mailto: 'root admin' } }), '/notify/mailto', /not allowed/, /root/],
    ['notify.sendmail relative', () => ({ notify: { sendmail: 'sendmail' } }), '/notify/sendmail', /not an absolute path/, /\/usr\/sbin\/sendmail/],
    ['notify.webhook without url', () => ({ notify: { webhook: {} } }), '/notify/webhook/url', /missing required key 'url'/, /https:\/\/hooks.example.com/],
    ['notify.webhook.url not http', () => ({ notify: { webhook: { url: 'ftp://x' } } }), '/notify/webhook/url', /wrong form/, /https:\/\//],
    ['notify.webhook.timeoutMs too small', () => ({ notify: { webhook: { url: 'http://x', timeoutMs: 1 } } }), '/notify/webhook/timeoutMs', /must be >= 100/, /10000/],
  ])('%s', (_name, make, keyPath, problem, hint) => {
    const e = refusal(() => validateConfig(make(), '/etc/pve-cbt/config.json', NOW));
    expect(e.code).toBe('CBT_CONFIG_INVALID');
    expect(e.details.file).toBe('/etc/pve-cbt/config.json');
    expect(e.details.keyPath).toBe(keyPath);
    expect(e.details.problem).toMatch(problem);
    expect(e.details.hint).toMatch(hint);
    expect(e.details.problems[0]).toEqual({ keyPath: e.details.keyPath, problem: e.details.problem, hint: e.details.hint });
  });

  test('all problems are reported at once, one per key', () => {
    const e = refusal(() => validateConfig({ foo: 1, chunkSize: 'big', compression: 'x' }, 'f', NOW));
    expect(e.details.problems.map((p) => p.keyPath).sort()).toEqual(['/chunkSize', '/compression', '/foo']);
  });
});

describe('loadConfig: which file', () => {
  test('--config path wins over PVE_CBT_CONFIG', () => {
    const a = writeConfig({ concurrency: 2 }, 'a.json');
    const b = writeConfig({ concurrency: 3 }, 'b.json');
    expect(loadConfig({ path: a, env: { PVE_CBT_CONFIG: b }, now: NOW }).concurrency).toBe(2);
    expect(loadConfig({ env: { PVE_CBT_CONFIG: b }, now: NOW }).concurrency).toBe(3);
  });

  test('without path or env the default file is used', () => {
    expect(resolveConfigPath({ env: {} })).toEqual({ file: '/etc/pve-cbt/config.json', source: 'default' });
  });

  test('a missing --config file is refused, not silently defaulted', () => {
    const e = refusal(() => loadConfig({ path: path.join(tmp, 'nope.json'), env: {} }));
    expect(e.details).toMatchObject({ keyPath: '', problem: 'the file given with --config does not exist' });
  });

  test('a missing PVE_CBT_CONFIG file is refused', () => {
    const e = refusal(() => loadConfig({ env: { PVE_CBT_CONFIG: path.join(tmp, 'nope.json') } }));
    expect(e.details.problem).toMatch(/named by PVE_CBT_CONFIG does not exist/);
  });

  test('broken JSON is refused with line and column', () => {
    const file = writeConfig('{\n  "concurrency": 2,\n}\n');
    const e = refusal(() => loadConfig({ path: file }));
    expect(e.details.file).toBe(file);
    expect(e.details.problem).toMatch(/not valid JSON at line 3, column 1/);
    expect(e.details.hint).toMatch(/trailing commas/);
  });

  test('a valid file is loaded with defaults filled', () => {
    const repo = path.join(tmp, 'repo');
    const file = writeConfig({ repository: repo, jobs: [{ id: 'n', vms: 'all', schedule: 'mon..fri 22:30', retention: { keepDaily: 7 } }] });
    const c = loadConfig({ path: file, now: NOW });
    expect(c.repository).toBe(repo);
    expect(c.jobs[0].retention).toEqual({ keepDaily: 7 });
    expect(c.socketPath).toBe(DEFAULTS.socketPath);
  });
});
