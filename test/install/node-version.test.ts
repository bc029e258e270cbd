/**
 * Issue 17 point 12: one reading of package.json `engines.node` for setup.sh and install.sh, and
 * the Node.js ABI recorded at install and checked at daemon start.
 * - setup.sh on a PATH without node (a directory holding only the tools it needs and stub
 *   apt-get/apt-cache recording their calls; SETUP_DRY_RUN stops it before npm): installs
 *   `nodejs npm` from the distribution when apt's candidate fits, refuses clearly with the way out
 *   when it does not (Debian 12's 18), refuses a node on PATH that does not fit, and asks for the
 *   compiler better-sqlite3 needs.
 * - install.sh refuses a node outside the range and records the ABI in node-abi.json after
 *   loading the real SQLite addon with the node it installs for.
 * - checkNodeAbi: a record for another ABI is CBT_NODE_ABI_CHANGED; the same ABI or no record passes.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { checkNodeAbi } from '../../daemon/service/node-abi';

const REPO = path.resolve(__dirname, '..', '..');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function which(name: string): string {
  const r = spawnSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${name} not on PATH`);
  return r.stdout.trim();
}

/**
 * A PATH directory with only what setup.sh needs, stub apt-get (records its argv) and apt-cache
 * (answers `policy nodejs` with `candidate`), and optionally a fake `node` printing `nodeVersion`.
 */
function fakePath(opts: { candidate: string; nodeVersion?: string; npm?: boolean; compiler?: boolean }): { dir: string; aptCalls: () => string[] } {
  const dir = path.join(tmp, 'bin');
  fs.mkdirSync(dir);
  for (const tool of ['bash', 'sed', 'tr', 'head', 'sort', 'dirname', 'cat']) fs.symlinkSync(which(tool), path.join(dir, tool));
  const log = path.join(tmp, 'apt-calls');
  fs.writeFileSync(path.join(dir, 'apt-get'), `#!${which('bash')}\necho "$*" >> ${log}\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'apt-cache'), `#!${which('bash')}\nprintf 'nodejs:\\n  Installed: (none)\\n  Candidate: %s\\n' '${opts.candidate}'\n`, { mode: 0o755 });
  if (opts.nodeVersion) fs.writeFileSync(path.join(dir, 'node'), `#!${which('bash')}\necho v${opts.nodeVersion}\n`, { mode: 0o755 });
  if (opts.npm) fs.writeFileSync(path.join(dir, 'npm'), `#!${which('bash')}\nexit 0\n`, { mode: 0o755 });
  if (opts.compiler) for (const t of ['g++', 'make', 'python3']) fs.writeFileSync(path.join(dir, t), `#!${which('bash')}\nexit 0\n`, { mode: 0o755 });
  return { dir, aptCalls: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean) : []) };
}

function setup(binDir: string) {
  const r = spawnSync(path.join(binDir, 'bash'), [path.join(REPO, 'scripts', 'setup.sh')], { encoding: 'utf8', env: { PATH: binDir, SETUP_DRY_RUN: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe('scripts/setup.sh without node', () => {
  test("installs nodejs and npm from the distribution when its version fits (Debian 13's 20)", () => {
    const p = fakePath({ candidate: '20.19.2+dfsg-1' });
    const r = setup(p.dir);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('setup: installing nodejs 20.19.2+dfsg-1 and npm from the distribution');
    expect(r.out).toContain('would run: apt-get install -y -qq --no-install-recommends nodejs npm');
    // The compiler for better-sqlite3's source build is asked for too (none on this PATH).
    expect(r.out).toMatch(/would run: apt-get install -y -qq --no-install-recommends .*\bg\+\+ .*\bmake\b.*\bpython3\b/s);
  });

  test.each<[string, string, RegExp]>([
    ["Debian 12's 18", '18.19.0+dfsg-6~deb12u2', /distribution's nodejs is 18\.19\.0\+dfsg-6~deb12u2, which does not fit '>=20 <21'/],
    ['a newer major than engines allows', '22.12.0+dfsg-1', /nodejs is 22\.12\.0\+dfsg-1, which does not fit/],
    ['no nodejs package at all', '(none)', /apt offers no nodejs package/],
  ])('refuses with the way out: %s', (_name, candidate, why) => {
    const p = fakePath({ candidate });
    const r = setup(p.dir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(why);
    expect(r.err).toMatch(/upgrade to Proxmox VE 9 \(Debian 13 ships Node\.js 20\), or add NodeSource's repository .*node_20\.x/);
    expect(p.aptCalls().filter((c) => c.startsWith('install'))).toEqual([]);
  });
});

describe('scripts/setup.sh with node', () => {
  test('a node on PATH outside engines is refused', () => {
    const r = setup(fakePath({ candidate: '20.19.2', nodeVersion: '22.1.0', npm: true, compiler: true }).dir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^setup: node v22\.1\.0 \(.*\/node\) does not fit '>=20 <21'; install a Node\.js that fits/);
  });

  test('a fitting node without npm gets npm; with everything there nothing is installed', () => {
    const r = setup(fakePath({ candidate: '20.19.2', nodeVersion: '20.19.2', compiler: true }).dir);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/setup: installing npm .*\n/);
    fs.rmSync(path.join(tmp, 'bin'), { recursive: true });
    const none = fakePath({ candidate: '20.19.2', nodeVersion: '20.19.2', npm: true, compiler: true });
    for (const t of ['qemu-system-x86_64', 'qemu-img', 'qemu-nbd', 'nbdinfo', 'nbdcopy', 'nbdkit', 'fusermount3', 'ceph-mon', 'ceph-mgr', 'ceph-osd', 'radosgw', 'rbd', 'uuidgen', 'curl']) fs.writeFileSync(path.join(none.dir, t), '#!/bin/sh\n', { mode: 0o755 });
    const quiet = setup(none.dir);
    expect(quiet).toEqual({ code: 0, out: '', err: '' });
  });
});

describe('install.sh and the Node.js ABI', () => {
  /** A built-app stand-in with the real package.json engines and the real SQLite addon. */
  function app(): string {
    const dir = path.join(tmp, 'app');
    fs.mkdirSync(path.join(dir, 'dist', 'daemon', 'cli'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'systemd'));
    fs.copyFileSync(path.join(REPO, 'systemd', 'pve-cbtd.service'), path.join(dir, 'systemd', 'pve-cbtd.service'));
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { engines: unknown };
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'pve-cbt', version: '9.9.9', engines: pkg.engines }));
    fs.writeFileSync(path.join(dir, 'dist', 'daemon', 'cli', 'main.js'), "if (process.argv[2] === '--version') console.log('9.9.9'); else process.exit(2);\n");
    for (const m of ['better-sqlite3', 'bindings', 'file-uri-to-path']) fs.cpSync(path.join(REPO, 'node_modules', m), path.join(dir, 'node_modules', m), { recursive: true });
    return dir;
  }
  const install = (args: string[]) => spawnSync('bash', [path.join(REPO, 'install.sh'), ...args], { encoding: 'utf8' });

  test('a node outside engines.node is refused before anything is written', () => {
    const fake = path.join(tmp, 'node22');
    fs.writeFileSync(fake, '#!/bin/sh\necho 22.1.0\n', { mode: 0o755 });
    const root = path.join(tmp, 'root');
    fs.mkdirSync(root);
    const r = install(['--root', root, '--from', app(), '--node', fake]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/node22 is Node\.js 22\.1\.0; pve-cbt needs '>=20 <21' \(package\.json engines\)/);
    expect(fs.readdirSync(root)).toEqual([]);
  });

  test('the installed app records the ABI its SQLite addon loads with', () => {
    const root = path.join(tmp, 'root');
    fs.mkdirSync(root);
    const r = install(['--root', root, '--from', app(), '--node', process.execPath]);
    expect(r.status).toBe(0);
    const record = JSON.parse(fs.readFileSync(path.join(root, 'usr/lib/pve-cbt/node-abi.json'), 'utf8')) as unknown;
    expect(record).toEqual({ modules: process.versions.modules, node: process.versions.node });
    expect(fs.statSync(path.join(root, 'usr/lib/pve-cbt/node-abi.json')).mode & 0o777).toBe(0o644);
    expect(() => checkNodeAbi({ appDir: path.join(root, 'usr/lib/pve-cbt') })).not.toThrow();
  });
});

test.each<[string, string | null, string | null]>([
  ['same ABI', process.versions.modules, null],
  ['another ABI (Node.js upgraded since install)', '127', 'CBT_NODE_ABI_CHANGED'],
  ['no record (run from a checkout)', null, null],
])('checkNodeAbi: %s', (_name, modules, code) => {
  if (modules !== null) fs.writeFileSync(path.join(tmp, 'node-abi.json'), JSON.stringify({ modules, node: '22.12.0' }));
  const run = (): void => checkNodeAbi({ appDir: tmp, running: { modules: process.versions.modules, node: process.versions.node } });
  if (code) {
    expect(run).toThrow(expect.objectContaining({ code, details: expect.objectContaining({ builtModules: '127', builtNode: '22.12.0', runningModules: process.versions.modules, hint: expect.stringContaining('install.sh') }) }));
  } else expect(run).not.toThrow();
});
