import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SCRIPT = path.join(__dirname, '..', '..', 'install.sh');
const UNIT = path.join(__dirname, '..', '..', 'systemd', 'pve-cbtd.service');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

/**
 * A stand-in for the built app: a real node program at dist/daemon/cli/main.js that answers
 * `--version`, general help for any `--help` like commander, and (if `withHooks`) `hooks --help` and
 * `hooks install|uninstall --root R` by writing/removing a hook
 * file in R and logging its argv, as the real command will. The installer only needs that contract.
 */
function fakeApp(withHooks: boolean): string {
  const app = path.join(tmp, withHooks ? 'app' : 'app-nohooks');
  fs.mkdirSync(path.join(app, 'dist', 'daemon', 'cli'), { recursive: true });
  fs.mkdirSync(path.join(app, 'systemd'));
  fs.copyFileSync(UNIT, path.join(app, 'systemd', 'pve-cbtd.service'));
  fs.writeFileSync(path.join(app, 'package.json'), '{"name":"pve-cbt","version":"9.9.9"}\n');
  fs.mkdirSync(path.join(app, 'node_modules', 'dep'), { recursive: true });
  fs.writeFileSync(path.join(app, 'node_modules', 'dep', 'index.js'), 'module.exports = 1;\n');
  fs.writeFileSync(
    path.join(app, 'dist', 'daemon', 'cli', 'main.js'),
    `const fs = require('fs'), path = require('path');
const a = process.argv.slice(2);
if (a[0] === '--version') { console.log('9.9.9'); process.exit(0); }
if (${withHooks} && a[0] === 'hooks' && a[1] === '--help') {
  console.log('Usage: pve-cbt hooks [options] [command]\\n\\nCommands:\\n  install\\n  uninstall'); process.exit(0);
}
if (${withHooks} && a[0] === 'hooks' && (a[1] === 'install' || a[1] === 'uninstall')) {
  const root = a[a.indexOf('--root') + 1];
  const hook = path.join(root, 'var/lib/vz/snippets/pve-cbt-hook.sh');
  fs.appendFileSync(path.join(${JSON.stringify(tmp)}, 'hook-calls'), a.join(' ') + '\\n');
  if (a[1] === 'install') { fs.mkdirSync(path.dirname(hook), { recursive: true }); fs.writeFileSync(hook, '#!/bin/sh\\n'); }
  else fs.rmSync(hook, { force: true });
  process.exit(0);
}
if (a.includes('--help')) { console.log('Usage: pve-cbt [options] [command]'); process.exit(0); }
console.error("error: unknown command '" + a[0] + "'"); process.exit(2);
`,
  );
  return app;
}

function sh(args: string[], umask?: string) {
  const argv = umask === undefined ? [SCRIPT, ...args] : ['-c', `umask ${umask}; exec bash "$0" "$@"`, SCRIPT, ...args];
  const r = spawnSync('bash', argv, { encoding: 'utf8', env: { ...process.env, PATH: process.env.PATH } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** Every path under dir (dir included) with its owner and mode, for the ownership checks. */
function owners(dir: string): Array<{ rel: string; uid: number; gid: number; mode: number; dir: boolean; link: boolean }> {
  const out: Array<{ rel: string; uid: number; gid: number; mode: number; dir: boolean; link: boolean }> = [];
  const visit = (p: string) => {
    const st = fs.lstatSync(p);
    out.push({ rel: p, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777, dir: st.isDirectory(), link: st.isSymbolicLink() });
    if (st.isDirectory()) for (const name of fs.readdirSync(p).sort()) visit(path.join(p, name));
  };
  visit(dir);
  return out;
}

/** Every path under root with its type, mode and content hash: "the same result" means equal snapshots. */
function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const st = fs.lstatSync(p);
      const rel = path.relative(root, p);
      if (st.isSymbolicLink()) {
        out[rel] = `link ${fs.readlinkSync(p)}`;
      } else if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o777).toString(8)}`;
        walk(p);
      } else {
        out[rel] = `file ${(st.mode & 0o777).toString(8)} ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')}`;
      }
    }
  };
  walk(root);
  return out;
}

/** A simulated PVE root: the folders a Proxmox host has before pve-cbt comes. */
function makeRoot(): string {
  const root = path.join(tmp, 'root');
  for (const d of ['etc/pve/qemu-server', 'usr/bin', 'var/lib/vz/snippets']) fs.mkdirSync(path.join(root, d), { recursive: true });
  return root;
}

test('installs app, wrapper, default config, unit and hooks; a second install gives the same tree', () => {
  const app = fakeApp(true);
  const root = makeRoot();
  const first = sh(['--root', root, '--from', app]);
  expect(first.err).toBe('');
  expect(first.code).toBe(0);
  const after1 = snapshot(root);

  expect(fs.readFileSync(path.join(root, 'usr/lib/pve-cbt/dist/daemon/cli/main.js'), 'utf8')).toContain('9.9.9');
  expect(fs.existsSync(path.join(root, 'usr/lib/pve-cbt/node_modules/dep/index.js'))).toBe(true);
  expect(fs.readFileSync(path.join(root, 'etc/systemd/system/pve-cbtd.service'), 'utf8')).toBe(fs.readFileSync(UNIT, 'utf8'));
  const config = JSON.parse(fs.readFileSync(path.join(root, 'etc/pve-cbt/config.json'), 'utf8')) as { jobs: unknown[] };
  expect(config.jobs).toEqual([]);
  expect(fs.existsSync(path.join(root, 'var/lib/vz/snippets/pve-cbt-hook.sh'))).toBe(true);
  expect(fs.readFileSync(path.join(tmp, 'hook-calls'), 'utf8')).toBe(`hooks install --root ${root}\n`);

  // The wrapper runs the installed copy with the node found at install time.
  const wrapper = fs.readFileSync(path.join(root, 'usr/local/bin/pve-cbt'), 'utf8');
  expect(wrapper).toContain(`exec ${fs.realpathSync(process.execPath)} `);
  const v = spawnSync(path.join(root, 'usr/local/bin/pve-cbt'), ['--version'], { encoding: 'utf8' });
  expect(v.stdout).toBe('9.9.9\n');
  expect(first.out).toMatch(/installed into .* \(9\.9\.9\)/);

  const second = sh(['--root', root, '--from', app]);
  expect(second.code).toBe(0);
  expect(snapshot(root)).toEqual(after1);
});

test('uninstall removes everything it created and leaves the root as it was', () => {
  const app = fakeApp(true);
  const root = makeRoot();
  fs.writeFileSync(path.join(root, 'etc', 'hostname'), 'pve1\n');
  const before = snapshot(root);
  expect(sh(['--root', root, '--from', app]).code).toBe(0);
  expect(sh(['--root', root, '--from', app]).code).toBe(0);
  const r = sh(['--root', root, '--uninstall']);
  expect(r.code).toBe(0);
  expect(snapshot(root)).toEqual(before);
  expect(fs.readFileSync(path.join(tmp, 'hook-calls'), 'utf8').trim().split('\n').pop()).toBe(`hooks uninstall --root ${root}`);
  // Uninstalling again is a no-op.
  const again = sh(['--root', root, '--uninstall']);
  expect(again.code).toBe(0);
  expect(again.out).toMatch(/nothing installed/);
});

test('a config that existed before install is neither overwritten nor removed', () => {
  const app = fakeApp(true);
  const root = makeRoot();
  fs.mkdirSync(path.join(root, 'etc/pve-cbt'));
  const mine = '{"concurrency": 2}\n';
  fs.writeFileSync(path.join(root, 'etc/pve-cbt/config.json'), mine);
  const r = sh(['--root', root, '--from', app]);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/keeping existing \/etc\/pve-cbt\/config.json/);
  expect(fs.readFileSync(path.join(root, 'etc/pve-cbt/config.json'), 'utf8')).toBe(mine);
  expect(sh(['--root', root, '--uninstall']).code).toBe(0);
  expect(fs.readFileSync(path.join(root, 'etc/pve-cbt/config.json'), 'utf8')).toBe(mine);
});

test('an installed config edited by the admin is kept on uninstall; data under /var/lib/pve-cbt too', () => {
  const app = fakeApp(true);
  const root = makeRoot();
  expect(sh(['--root', root, '--from', app]).code).toBe(0);
  fs.writeFileSync(path.join(root, 'etc/pve-cbt/config.json'), '{"jobs": []}\n');
  fs.mkdirSync(path.join(root, 'var/lib/pve-cbt/repository'));
  fs.writeFileSync(path.join(root, 'var/lib/pve-cbt/catalog.sqlite'), 'data');
  const r = sh(['--root', root, '--uninstall']);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/keeping \/etc\/pve-cbt\/config.json: it was changed/);
  expect(fs.existsSync(path.join(root, 'etc/pve-cbt/config.json'))).toBe(true);
  expect(fs.readFileSync(path.join(root, 'var/lib/pve-cbt/catalog.sqlite'), 'utf8')).toBe('data');
  expect(fs.existsSync(path.join(root, 'var/lib/pve-cbt/install-manifest'))).toBe(false);
  expect(fs.existsSync(path.join(root, 'usr/lib/pve-cbt'))).toBe(false);
  expect(fs.existsSync(path.join(root, 'usr/local/bin/pve-cbt'))).toBe(false);
});

test('without a hooks command the install completes with a clear warning', () => {
  const app = fakeApp(false);
  const root = makeRoot();
  const r = sh(['--root', root, '--from', app]);
  expect(r.code).toBe(0);
  expect(r.err).toMatch(/WARNING: this build has no 'pve-cbt hooks install' command: VM hook scripts were NOT installed/);
  expect(fs.readFileSync(path.join(root, 'var/lib/pve-cbt/install-manifest'), 'utf8')).not.toMatch(/^hooks/m);
  expect(sh(['--root', root, '--uninstall']).code).toBe(0);
});

test.each<[string, string[], RegExp]>([
  ['unknown option', ['--nope'], /unknown argument '--nope'/],
  ['missing root', ['--root', '/nonexistent-cbt-root'], /root \/nonexistent-cbt-root does not exist/],
])('refuses: %s', (_name, args, message) => {
  const r = sh(args);
  expect(r.code).not.toBe(0);
  expect(r.err).toMatch(message);
});

test('refuses an unbuilt checkout with the command to run', () => {
  const app = fakeApp(true);
  fs.rmSync(path.join(app, 'dist'), { recursive: true });
  const r = sh(['--root', makeRoot(), '--from', app]);
  expect(r.code).toBe(1);
  expect(r.err).toMatch(/not built .* run 'bash scripts\/setup.sh' first/);
});

describe('ownership and modes (issue 13, point 9)', () => {
  /** A checkout the way an ordinary user leaves it: owned by uid 65534, everything 0666/0777. */
  const userOwnedApp = (): string => {
    const app = fakeApp(true);
    fs.writeFileSync(path.join(app, 'node_modules', 'dep', 'cli.js'), '#!/usr/bin/env node\n');
    fs.chmodSync(path.join(app, 'node_modules', 'dep', 'cli.js'), 0o777);
    fs.writeFileSync(path.join(app, 'README.md'), 'readme\n');
    for (const e of owners(app)) {
      fs.lchownSync(e.rel, 65534, 65534);
      if (!e.link && !(e.rel.endsWith('cli.js'))) fs.chmodSync(e.rel, e.dir ? 0o777 : 0o666);
    }
    return app;
  };

  test('a checkout owned by an ordinary user installs root-owned with explicit modes, even under umask 000', () => {
    const app = userOwnedApp();
    const root = makeRoot();
    const r = sh(['--root', root, '--from', app], '000');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const installed = ['usr/lib', 'usr/local', 'etc/pve-cbt', 'etc/systemd', 'var/lib/pve-cbt'].flatMap((d) => owners(path.join(root, d)));
    expect(installed.length).toBeGreaterThan(10);
    for (const e of installed) {
      expect({ path: e.rel, uid: e.uid, gid: e.gid }).toEqual({ path: e.rel, uid: 0, gid: 0 });
      expect({ path: e.rel, groupOrWorldWritable: !e.link && (e.mode & 0o022) !== 0 }).toEqual({ path: e.rel, groupOrWorldWritable: false });
    }
    const mode = (rel: string): string => (fs.lstatSync(path.join(root, rel)).mode & 0o7777).toString(8);
    expect({
      app: mode('usr/lib/pve-cbt'),
      appSubdir: mode('usr/lib/pve-cbt/dist/daemon/cli'),
      appFile: mode('usr/lib/pve-cbt/dist/daemon/cli/main.js'),
      readme: mode('usr/lib/pve-cbt/README.md'),
      executable: mode('usr/lib/pve-cbt/node_modules/dep/cli.js'),
      wrapper: mode('usr/local/bin/pve-cbt'),
      configDir: mode('etc/pve-cbt'),
      config: mode('etc/pve-cbt/config.json'),
      unit: mode('etc/systemd/system/pve-cbtd.service'),
      stateDir: mode('var/lib/pve-cbt'),
      manifest: mode('var/lib/pve-cbt/install-manifest'),
    }).toEqual({
      app: '755', appSubdir: '755', appFile: '644', readme: '644', executable: '755', wrapper: '755',
      configDir: '700', config: '600', unit: '644', stateDir: '700', manifest: '600',
    });
    // Still a working install, and a second one (under the same umask) changes nothing.
    expect(spawnSync(path.join(root, 'usr/local/bin/pve-cbt'), ['--version'], { encoding: 'utf8' }).stdout).toBe('9.9.9\n');
    const after = snapshot(root);
    expect(sh(['--root', root, '--from', app], '000').code).toBe(0);
    expect(snapshot(root)).toEqual(after);
  });

  test('a symlink leading out of the checkout is refused, not installed', () => {
    const app = fakeApp(true);
    fs.symlinkSync('/etc/hostname', path.join(app, 'node_modules', 'dep', 'escape.js'));
    const root = makeRoot();
    const r = sh(['--root', root, '--from', app]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/refusing to install node_modules\/dep\/escape.js: a symlink leading out of the app/);
    expect(fs.existsSync(path.join(root, 'usr/lib/pve-cbt'))).toBe(false);
  });

  describe('--uninstall trusts only the paths install.sh writes', () => {
    let root: string;
    let manifest: string;
    let good: string;
    let victim: string;
    beforeEach(() => {
      root = makeRoot();
      expect(sh(['--root', root, '--from', fakeApp(true)]).code).toBe(0);
      manifest = path.join(root, 'var/lib/pve-cbt/install-manifest');
      good = fs.readFileSync(manifest, 'utf8');
      fs.writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0::/root:/bin/bash\n');
      victim = path.join(tmp, 'victim');
      fs.mkdirSync(victim);
      fs.writeFileSync(path.join(victim, 'precious'), 'data\n');
    });

    const refusesAndKeepsAll = (what: string, expected: RegExp): void => {
      const before = snapshot(root);
      const r = sh(['--root', root, '--uninstall']);
      expect({ what, code: r.code, refused: expected.test(r.err) && /nothing was changed/.test(r.err) }).toEqual({ what, code: 1, refused: true });
      expect({ what, tree: snapshot(root) }).toEqual({ what, tree: before });
      expect(fs.readFileSync(path.join(victim, 'precious'), 'utf8')).toBe('data\n');
      expect(fs.readFileSync(path.join(tmp, 'hook-calls'), 'utf8')).not.toMatch(/uninstall/);
    };

    test('a manifest line naming any other path is refused, and nothing is removed', () => {
      for (const line of [
        'tree /usr/lib/pve-cbt/../../../../victim',
        'tree /usr/lib/pve-cbt/../../etc',
        'file /etc/passwd',
        'file /usr/local/bin/../../../etc/passwd',
        'tree /',
        'tree /etc',
        'dir /',
        'config /etc/passwd 0000000000000000000000000000000000000000000000000000000000000000',
        'tree  /usr/lib/pve-cbt',
        'tree /usr/lib/pve-cbt extra',
        'remove /etc/passwd',
      ]) {
        fs.writeFileSync(manifest, `${good}${line}\n`);
        refusesAndKeepsAll(line, /refusing \/var\/lib\/pve-cbt\/install-manifest: unexpected entry/);
      }
      // The same manifest without the bad line still uninstalls.
      fs.writeFileSync(manifest, good);
      expect(sh(['--root', root, '--uninstall']).code).toBe(0);
      expect(fs.existsSync(path.join(root, 'usr/lib/pve-cbt'))).toBe(false);
      expect(fs.readFileSync(path.join(root, 'etc/passwd'), 'utf8')).toMatch(/^root/);
    });

    test('a recorded path that became a symlink is refused', () => {
      fs.rmSync(path.join(root, 'usr/lib/pve-cbt'), { recursive: true });
      fs.symlinkSync(victim, path.join(root, 'usr/lib/pve-cbt'));
      refusesAndKeepsAll('symlink', /\/usr\/lib\/pve-cbt is or lies under a symlink/);
    });

    test('a manifest that others can write, or that another user owns, is refused', () => {
      const m = manifest;
      for (const [what, spoil, undo] of [
        ['world-writable', () => fs.chmodSync(m, 0o666), () => fs.chmodSync(m, 0o600)],
        ['group-writable', () => fs.chmodSync(m, 0o620), () => fs.chmodSync(m, 0o600)],
        ['owned by another user', () => fs.chownSync(m, 65534, 65534), () => fs.chownSync(m, 0, 0)],
        ['in a world-writable directory', () => fs.chmodSync(path.dirname(m), 0o777), () => fs.chmodSync(path.dirname(m), 0o700)],
      ] as Array<[string, () => void, () => void]>) {
        spoil();
        refusesAndKeepsAll(what, /refusing \/var\/lib\/pve-cbt\/install-manifest: it or its directory is not owned by root or is group\/world-writable/);
        undo();
      }
    });
  });
});
