/**
 * scripts/build-deb.sh: the .deb holds the app, the wrapper, the unit and the default config as a
 * conffile, all root-owned and not group/world-writable, without dev dependencies; installed with
 * `dpkg --root` (maintainer scripts chrootless, honouring DPKG_ROOT) it installs the hooks, keeps the
 * data on remove and drops it on purge.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const repoRoot = path.resolve(__dirname, '../..');
let work: string;
let deb: string;

function dpkg(root: string, ...args: string[]): string {
  return execFileSync('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-depends', '--log=/dev/null', ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-deb-'));
  const out = execFileSync('bash', [path.join(repoRoot, 'scripts/build-deb.sh'), path.join(work, 'out')], { encoding: 'utf8' });
  const m = /build-deb: (\S+\.deb)/.exec(out);
  if (!m) throw new Error(`build-deb.sh printed no package: ${out}`);
  deb = m[1];
}, 300_000);

afterAll(() => {
  fs.rmSync(work, { recursive: true, force: true });
});

test('control: name, version from package.json, the Node.js major the addon was built for', () => {
  const info = execFileSync('dpkg-deb', ['-f', deb], { encoding: 'utf8' });
  const version = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')).version as string;
  const major = Number(process.versions.node.split('.')[0]);
  expect(info).toMatch(/^Package: pve-cbt$/m);
  expect(info).toMatch(new RegExp(`^Version: ${version.replace(/\./g, '\\.')}$`, 'm'));
  expect(info).toMatch(new RegExp(`^Depends: nodejs \\(>= ${major}\\), nodejs \\(<< ${major + 1}\\)`, 'm'));
  expect(execFileSync('dpkg-deb', ['-I', deb, 'conffiles'], { encoding: 'utf8' }).trim()).toBe('/etc/pve-cbt/config.json');
});

test('contents: app, wrapper, unit and config, root-owned, nothing group/world-writable, no dev dependencies', () => {
  const lines = execFileSync('dpkg-deb', ['-c', deb], { encoding: 'utf8', maxBuffer: 64 << 20 }).trim().split('\n');
  const entries = lines.map((l) => {
    const [mode, owner, , , , name] = l.split(/\s+/);
    return { mode, owner, name };
  });
  const names = new Set(entries.map((e) => e.name));
  for (const p of ['./usr/lib/pve-cbt/dist/daemon/cli/main.js', './usr/lib/pve-cbt/dist/hooks/guest-hook.js', './usr/bin/pve-cbt',
    './lib/systemd/system/pve-cbtd.service', './etc/pve-cbt/config.json', './usr/lib/pve-cbt/node_modules/better-sqlite3/package.json']) {
    expect(names).toContain(p);
  }
  expect(entries.filter((e) => e.owner !== 'root/root')).toEqual([]);
  // A symlink's own mode is always lrwxrwxrwx and means nothing; its target is checked itself.
  expect(entries.filter((e) => e.mode[0] !== 'l' && (e.mode[5] === 'w' || e.mode[8] === 'w'))).toEqual([]);
  expect([...names].filter((n) => /node_modules\/(jest|typescript|ts-jest|@types\/jest)\//.test(n))).toEqual([]);
  expect(entries.find((e) => e.name === './usr/bin/pve-cbt')?.mode).toBe('-rwxr-xr-x');
});

test('dpkg --root: install sets up hooks and private data dirs; remove keeps data and detaches; purge drops data', () => {
  const root = path.join(work, 'root');
  for (const d of ['var/lib/dpkg/updates', 'var/lib/dpkg/info', 'var/lib/vz/snippets', 'etc/pve/qemu-server']) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.writeFileSync(path.join(root, 'var/lib/dpkg/status'), '');

  dpkg(root, '-i', deb);
  expect(fs.existsSync(path.join(root, 'var/lib/vz/snippets/pve-cbt-guest-hook'))).toBe(true);
  expect(fs.readFileSync(path.join(root, 'etc/vzdump.conf'), 'utf8')).toMatch(/^script: .*pve-cbt-vzdump-hook$/m);
  expect(fs.statSync(path.join(root, 'var/lib/pve-cbt')).mode & 0o777).toBe(0o700);
  expect(fs.statSync(path.join(root, 'etc/pve-cbt/config.json')).mode & 0o777).toBe(0o600);
  const version = execFileSync(path.join(root, 'usr/bin/pve-cbt'), ['--version'], { encoding: 'utf8' }).trim();
  expect(version).toMatch(/\d+\.\d+\.\d+/);

  fs.writeFileSync(path.join(root, 'var/lib/pve-cbt/backup-data'), 'kept');
  dpkg(root, '-r', 'pve-cbt');
  expect(fs.existsSync(path.join(root, 'usr/lib/pve-cbt'))).toBe(false);
  expect(fs.existsSync(path.join(root, 'var/lib/vz/snippets/pve-cbt-guest-hook'))).toBe(false);
  expect(fs.readFileSync(path.join(root, 'etc/vzdump.conf'), 'utf8')).not.toMatch(/pve-cbt/);
  expect(fs.readFileSync(path.join(root, 'var/lib/pve-cbt/backup-data'), 'utf8')).toBe('kept');

  dpkg(root, '-P', 'pve-cbt');
  expect(fs.existsSync(path.join(root, 'var/lib/pve-cbt'))).toBe(false);
  expect(fs.existsSync(path.join(root, 'etc/pve-cbt'))).toBe(false);
});
