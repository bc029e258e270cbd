/**
 * `pve-cbt log` never answers a mistake with silence (issue 17 point 9): a missing log directory
 * (`--dir`, or the configured logDir) is CBT_LOG_DIR_MISSING, exit 1; an unknown `--job` is
 * CBT_LOG_JOB_UNKNOWN with a did-you-mean, exit 1; a known filter that matches nothing prints a
 * "no log entries" note on stderr and exits 0. Logs are written by the daemon's real logger.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { assertKnownJob, noEntriesNote } from '../../../daemon/log/log-query';
import { runCliInProcess } from '../cli/in-process-cli';

let tmp: string;
let logDir: string;
let configFile: string;
beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  logDir = path.join(tmp, 'log');
  configFile = path.join(tmp, 'config.json');
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      stateDir: path.join(tmp, 'state'),
      repository: path.join(tmp, 'state', 'repo'),
      socketPath: path.join(tmp, 'run', 's.sock'),
      logDir,
      jobs: [{ id: 'weekly', vms: 'all', schedule: 'sun 03:00' }],
    }),
  );
  const logger = createLogger({ logDir, console: false });
  logger.child({ jobId: 'nightly', vmid: 101 }).info('backup finished');
  logger.child({ vmid: 102 }).warn('slow');
  await closeLogger(logger);
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

const log = (...argv: string[]) => runCliInProcess(['log', '--config', configFile, ...argv], {});

test.each<[string, string[], number, RegExp | null, RegExp]>([
  ['a job that logged', ['--job', 'nightly'], 0, /job=nightly backup finished/, /^$/],
  ['a configured job that has not run yet', ['--job', 'weekly'], 0, null, /^pve-cbt: no log entries match --job weekly in .*log\n$/],
  ['the verify job before its first run', ['--job', 'verify'], 0, null, /no log entries match --job verify/],
  ['a typo of a job', ['--job', 'nighlty'], 1, null, /no job 'nighlty': it is not configured and no log entry names it\n {2}hint: did you mean 'nightly'\?\n {2}\(CBT_LOG_JOB_UNKNOWN\)/],
  ['an unknown job', ['--job', 'nosuch'], 1, null, /hint: known jobs: nightly, verify, weekly/],
  ['a missing --dir', ['--dir', '/nonexistent'], 1, null, /log directory \/nonexistent does not exist \(given with --dir\)\n {2}hint: check the path given with --dir\n {2}\(CBT_LOG_DIR_MISSING\)/],
  ['a VM with no entries', ['--vm', '999'], 0, null, /no log entries match --vm 999/],
  ['a level no entry has', ['--vm', '102', '--level', 'error'], 0, null, /no log entries match --vm 102 --level error/],
])('%s', async (_name, argv, code, stdout, stderr) => {
  const r = await log(...argv);
  expect(r.code).toBe(code);
  if (stdout) expect(r.stdout).toMatch(stdout);
  else expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(stderr);
});

test('the configured logDir missing (daemon never ran) is an error naming the config', async () => {
  fs.rmSync(logDir, { recursive: true });
  const r = await log();
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/log directory .*log does not exist \(logDir in the config\)/);
  expect(r.stderr).toMatch(/is pve-cbtd running/);
});

test('--json: errors as JSON on stdout, no entries as no lines', async () => {
  const missing = await log('--dir', path.join(tmp, 'nope'), '--json');
  expect(missing.code).toBe(1);
  expect(JSON.parse(missing.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_LOG_DIR_MISSING', details: { source: 'option' } } });
  const unknown = await log('--job', 'nosuch', '--json');
  expect(JSON.parse(unknown.stdout)).toMatchObject({ ok: false, error: { code: 'CBT_LOG_JOB_UNKNOWN', details: { jobId: 'nosuch', known: ['nightly', 'verify', 'weekly'] } } });
  const none = await log('--vm', '999', '--json');
  expect(none).toEqual({ code: 0, stdout: '', stderr: '' });
});

test.each<[string, string, string[], string | null]>([
  ['configured, never logged', 'weekly', ['weekly'], null],
  ['not configured, named by an entry', 'nightly', [], null],
  ['neither', 'nosuch', ['weekly'], 'CBT_LOG_JOB_UNKNOWN'],
])('assertKnownJob: %s', (_name, jobId, configured, code) => {
  const run = (): void => assertKnownJob(jobId, configured, [{ level: 'info', message: 'm', jobId: 'nightly' }]);
  if (code) expect(run).toThrow(expect.objectContaining({ code }));
  else expect(run).not.toThrow();
});

test('noEntriesNote names the filter', () => {
  expect(noEntriesNote('/var/log/pve-cbt', [])).toBe('no log entries in /var/log/pve-cbt');
  expect(noEntriesNote('/l', ['--vm 1', '--job x'])).toBe('no log entries match --vm 1 --job x in /l');
});
