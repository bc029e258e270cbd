import fs from 'node:fs';
import { trustProblem } from '../../hooks/trusted-file';
import { Watchdog } from '../../hooks/watchdog';

const { S_IFREG, S_IFDIR, S_IFLNK } = fs.constants;

describe('trustProblem: only what nobody but root (or the hook euid) can have written', () => {
  test.each<[string, number, number, number, RegExp | undefined]>([
    ['root file 0644', 0, S_IFREG | 0o644, 0, undefined],
    ['root file 0600', 0, S_IFREG | 0o600, 1000, undefined],
    ['root file 0755', 0, S_IFREG | 0o755, 0, undefined],
    ['file of the euid', 1000, S_IFREG | 0o644, 1000, undefined],
    ['file of another user', 65534, S_IFREG | 0o644, 0, /owned by uid 65534, not root/],
    ['file of another user, even as that euid is not root', 65534, S_IFREG | 0o600, 1000, /owned by uid 65534/],
    ['group-writable file', 0, S_IFREG | 0o664, 0, /mode 0664 lets its group write it/],
    ['world-writable file', 0, S_IFREG | 0o666, 0, /mode 0666 lets everyone write it/],
    ['sticky bit does not excuse a file', 0, S_IFREG | 0o1666, 0, /lets everyone write it/],
    ['root dir 0755', 0, S_IFDIR | 0o755, 0, undefined],
    ['world-writable dir', 0, S_IFDIR | 0o777, 0, /mode 0777 lets everyone write it/],
    ['group-writable dir', 0, S_IFDIR | 0o770, 0, /lets its group write it/],
    ['sticky world-writable dir (/tmp)', 0, S_IFDIR | 0o1777, 0, undefined],
    ['sticky dir of another user', 65534, S_IFDIR | 0o1777, 0, /owned by uid 65534/],
    ['root symlink (its mode means nothing)', 0, S_IFLNK | 0o777, 0, undefined],
    ['symlink of another user', 65534, S_IFLNK | 0o777, 0, /owned by uid 65534/],
  ])('%s', (_name, uid, mode, euid, expected) => {
    const problem = trustProblem({ uid, mode }, euid);
    if (expected === undefined) expect(problem).toBeUndefined();
    else expect(problem).toMatch(expected);
  });
});

describe('Watchdog', () => {
  test('fires at its deadline (ms since process start), which can be moved while it runs', async () => {
    const now = (): number => process.uptime() * 1000;
    const t0 = now();
    const w = new Watchdog(t0 + 5_000);
    w.setDeadline(t0 + 100);
    await w.expired;
    expect(now() - t0).toBeGreaterThanOrEqual(95);
    expect(now() - t0).toBeLessThan(2_000);
  });

  test('a stopped watchdog never fires', async () => {
    const w = new Watchdog(process.uptime() * 1000 + 50);
    w.stop();
    const fired = await Promise.race([w.expired.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 300))]);
    expect(fired).toBe(false);
  });
});
