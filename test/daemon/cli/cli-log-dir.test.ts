/**
 * A logDir the CLI cannot write, through the built `pve-cbt` as its own process (run as root, so
 * permissions do not stop it: the log dir lies below a file, or the day's log file is a directory).
 * The CLI prints a clear error or warning line with a code, never a stack trace.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Repository } from '../../../daemon/repository/repository';

const CLI = path.resolve(__dirname, '..', '..', '..', 'dist', 'daemon', 'cli', 'main.js');

let tmp: string;
beforeEach(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  // CLI commands never create a repository (the daemon does): these tests are about the log.
  await Repository.open(path.join(tmp, 'state', 'repo'), { create: true });
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function cli(config: Record<string, unknown>, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const file = path.join(tmp, 'config.json');
  fs.writeFileSync(
    file,
    JSON.stringify({ stateDir: path.join(tmp, 'state'), repository: path.join(tmp, 'state', 'repo'), socketPath: path.join(tmp, 'run', 's.sock'), ...config }),
  );
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, '--config', file, ...argv], { encoding: 'utf8', env: { PATH: process.env.PATH } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code) : 0, stdout, stderr });
    });
  });
}

const noStackTrace = (text: string) => {
  expect(text).not.toMatch(/^\s+at /m);
  expect(text).not.toMatch(/Unhandled 'error' event|internal error/);
};

test('logDir below a file: refused as config, exit 3, key path and code', async () => {
  fs.writeFileSync(path.join(tmp, 'file'), 'x');
  const r = await cli({ logDir: path.join(tmp, 'file', 'log') }, ['list']);
  expect(r.code).toBe(3);
  noStackTrace(r.stderr);
  expect(r.stderr.split('\n')[0]).toMatch(/^pve-cbt: config .* is invalid at \/logDir: .*file is not a directory/);
  expect(r.stderr).toContain('(CBT_CONFIG_INVALID)');
});

test('the day’s log file cannot be opened: a command that logs still answers, one warning line with the code', async () => {
  const logDir = path.join(tmp, 'log');
  fs.mkdirSync(logDir);
  // The name winston-daily-rotate-file opens today (local date); a directory there makes open() fail.
  const d = new Date();
  const day = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
  fs.mkdirSync(path.join(logDir, `pve-cbt-${day}.log`));
  // gc logs its summary.
  const r = await cli({ logDir }, ['gc']);
  noStackTrace(r.stderr);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^removed 0 chunks/);
  const warnings = r.stderr.split('\n').filter((l) => l.includes('CBT_CLI_LOG_UNWRITABLE'));
  expect(warnings).toEqual([`pve-cbt: warning: cannot write the log in ${logDir}: EISDIR (CBT_CLI_LOG_UNWRITABLE)`]);
  // list logs nothing, so it never opens the file (the logger is made on the first entry) and has nothing to warn of.
  const l = await cli({ logDir }, ['list']);
  expect(l).toEqual(expect.objectContaining({ code: 0, stdout: 'no backups\n', stderr: '' }));
});

test('a logDir where no file can be created (even by root, /proc/self): exit 1, one clear error line with the code', async () => {
  const r = await cli({ logDir: '/proc/self' }, ['list']);
  noStackTrace(r.stderr);
  expect(r.code).toBe(1);
  const lines = r.stderr.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^pve-cbt: cannot write the log in \/proc\/self: E[A-Z]+$/);
  expect(lines).toContain('  (CBT_CLI_LOG_UNWRITABLE)');
  expect(r.stdout).toBe('');
});
