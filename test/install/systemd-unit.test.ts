/**
 * The systemd unit (issue 17 point 11), checked offline by systemd's own tools: `systemd-analyze
 * verify` finds nothing to say about it (ExecStart pointed at an existing program, since the
 * installed wrapper is not on this host), and `systemd-analyze security --offline` rates its
 * exposure below 4 (it was 6.3). The directives the daemon relies on are there: Type=notify with
 * NotifyAccess=all (systemd-notify is a child process), ExecReload sending SIGHUP, the hardening.
 * The daemon side of Type=notify and SIGHUP is tested in test/e2e/daemon-systemd.test.ts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);
const UNIT = path.join(__dirname, '..', '..', 'systemd', 'pve-cbtd.service');
const text = fs.readFileSync(UNIT, 'utf8');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** `key=value` lines of the unit (comments and sections left out), in order. */
function directives(): [string, string][] {
  return text
    .split('\n')
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]);
}

test.each<[string, string]>([
  ['Type', 'notify'],
  ['NotifyAccess', 'all'],
  ['ExecReload', '/bin/kill -HUP $MAINPID'],
  ['ProtectHome', 'yes'],
  ['PrivateTmp', 'yes'],
  ['CapabilityBoundingSet', 'CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH'],
  ['SystemCallFilter', '@system-service'],
  ['SystemCallErrorNumber', 'EPERM'],
  ['NoNewPrivileges', 'yes'],
  ['KillMode', 'mixed'],
])('%s=%s', (key, value) => {
  expect(directives().filter(([k]) => k === key).map(([, v]) => v)).toEqual([value]);
});

test('systemd-analyze verify has nothing to say', async () => {
  const unit = path.join(tmp, 'pve-cbtd.service');
  fs.writeFileSync(unit, text.replace(/^ExecStart=\/usr\/local\/bin\/pve-cbt /m, `ExecStart=${process.execPath} `));
  const r = await execFileP('systemd-analyze', ['verify', unit]);
  expect(r.stderr).toBe('');
});

test('systemd-analyze security rates it below 4', async () => {
  const unit = path.join(tmp, 'pve-cbtd.service');
  fs.writeFileSync(unit, text);
  // --threshold=39: exits non-zero above 3.9.
  const r = await execFileP('systemd-analyze', ['security', '--offline=true', '--threshold=39', '--no-pager', unit]);
  const score = Number(/Overall exposure level for pve-cbtd\.service: (\d+\.\d)/.exec(r.stdout)?.[1]);
  expect(score).toBeLessThan(4);
  expect(score).toBeGreaterThan(0);
});
