/**
 * `pve-cbt --help` ends with the exit-code table the README documents: every code on its own line,
 * names and meanings in one column whatever the code's width (130 used to push its row out of line).
 */
import { requireDist, runCli } from './e2e-harness';

test('--help lists every documented exit code with names in one column', async () => {
  requireDist();
  const r = await runCli(['--help']);
  expect(r.code).toBe(0);
  const rows = r.stdout.slice(r.stdout.indexOf('Exit codes:')).split('\n').slice(1).filter((l) => /^\s+\d+\s/.test(l));
  const codes = rows.map((l) => Number(/^\s+(\d+)/.exec(l)![1]));
  expect(codes).toEqual([0, 1, 2, 3, 4, 5, 130]);
  const nameColumns = new Set(rows.map((l) => l.search(/[a-z]/)));
  expect([...nameColumns]).toHaveLength(1);
  expect(rows.find((l) => l.includes('130'))).toMatch(/130\s+cancelled\s+Ctrl-C/);
});
