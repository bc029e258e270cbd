import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  GUEST_HOOK_NAME,
  attachHook,
  detachHook,
  installHooks,
  listHooks,
  uninstallHooks,
  type HookAdminOptions,
} from '../../../daemon/hook-admin/hook-admin';
import { chainFilePath, readHookChain } from '../../../hooks/hook-chain';
import { renderConf } from '../../../daemon/sim/pve-conf';

const VOLID = `local:snippets/${GUEST_HOOK_NAME}`;

/** Every file under dir with its content and mode, to prove that uninstall restores exactly. */
function snapshotTree(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = `${(fs.statSync(p).mode & 0o777).toString(8)} ${fs.readFileSync(p, 'utf8')}`;
    }
  };
  walk(dir);
  return out;
}

describe('hook admin on a simulated PVE root', () => {
  let dir: string;
  let root: string;
  let opts: HookAdminOptions;
  const conf = (vmid: number): string => path.join(root, 'etc/pve/qemu-server', `${vmid}.conf`);

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    root = path.join(dir, 'root');
    fs.mkdirSync(path.join(root, 'etc/pve/qemu-server'), { recursive: true });
    fs.mkdirSync(path.join(root, 'var/lib/vz/snippets'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc/vzdump.conf'), '# vzdump default settings\n\n#script: FILENAME\nmode: snapshot\n');
    for (const vmid of [100, 101, 102]) {
      const disks = [{ key: 'scsi0', volid: `local:${vmid}/vm-${vmid}-disk-0.raw`, sizeBytes: 8 << 20, backup: true }];
      fs.writeFileSync(conf(vmid), renderConf({ vmid, name: `vm${vmid}`, disks, agent: false, hookscript: vmid === 101 ? 'local:snippets/site.pl' : undefined }));
    }
    opts = { root, nodePath: '/usr/bin/node', distDir: '/opt/pve-cbt/dist', stateDir: path.join(dir, 'state'), configPath: '/etc/pve-cbt/config.json' };
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('a wrapper whose app is gone exits 0 with one stderr line (a pre-start must not abort the VM)', () => {
    const r = installHooks(opts);
    const run = spawnSync(process.execPath, [r.guestHook, '100', 'pre-start'], { encoding: 'utf8', timeout: 10_000 });
    expect(run.status).toBe(0);
    expect(run.stderr).toMatch(/^pve-cbt guest-hook: cannot load \/opt\/pve-cbt\/dist\/hooks\/guest-hook\.js \(MODULE_NOT_FOUND\)/);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
  });

  test('install writes executable wrappers with an absolute #! and registers the vzdump hook; twice changes nothing', () => {
    const before = snapshotTree(root);
    const r = installHooks(opts);
    expect(r).toEqual({
      guestHook: path.join(root, 'var/lib/vz/snippets/pve-cbt-guest-hook'),
      vzdumpHook: path.join(root, 'var/lib/vz/snippets/pve-cbt-vzdump-hook'),
      vzdumpChainedTo: null,
    });
    const text = fs.readFileSync(r.guestHook, 'utf8');
    expect(text.split('\n').slice(0, 2)).toEqual(['#!/usr/bin/node', "// pve-cbt guest-hook, written by pve-cbt's installer: changes are overwritten."]);
    expect(text).toContain('hook = require("/opt/pve-cbt/dist/hooks/guest-hook.js")');
    expect(text).toContain('hook.main({ configPath: "/etc/pve-cbt/config.json" });');
    expect(fs.statSync(r.vzdumpHook).mode & 0o777).toBe(0o755);
    expect(fs.readFileSync(path.join(root, 'etc/vzdump.conf'), 'utf8')).toBe(
      `# vzdump default settings\n\n#script: FILENAME\nmode: snapshot\nscript: ${r.vzdumpHook}\n`,
    );
    const once = snapshotTree(root);
    installHooks(opts);
    expect(snapshotTree(root)).toEqual(once);
    expect(fs.existsSync(chainFilePath(opts.stateDir))).toBe(false);

    uninstallHooks(opts);
    expect(snapshotTree(root)).toEqual(before);
    uninstallHooks(opts);
    expect(snapshotTree(root)).toEqual(before);
  });

  test('an existing vzdump script is chained, not clobbered, and put back by uninstall', () => {
    fs.appendFileSync(path.join(root, 'etc/vzdump.conf'), 'script: /usr/local/bin/site-vzdump-hook\n');
    const before = snapshotTree(root);
    expect(installHooks(opts).vzdumpChainedTo).toBe('/usr/local/bin/site-vzdump-hook');
    expect(installHooks(opts).vzdumpChainedTo).toBe('/usr/local/bin/site-vzdump-hook');
    expect(readHookChain(opts.stateDir)).toEqual({ vzdump: { path: '/usr/local/bin/site-vzdump-hook' }, guests: {} });
    uninstallHooks(opts);
    expect(snapshotTree(root)).toEqual(before);
    expect(fs.existsSync(chainFilePath(opts.stateDir))).toBe(false);
  });

  test('attach/detach edit only the current section, chain an existing hookscript, and are idempotent', () => {
    installHooks(opts);
    const original = fs.readFileSync(conf(101), 'utf8');
    expect(attachHook(opts, 100)).toBe(true);
    expect(attachHook(opts, 100)).toBe(false);
    expect(attachHook(opts, 101)).toBe(true);
    const c100 = fs.readFileSync(conf(100), 'utf8');
    const [current, snapshot] = c100.split('\n[before-upgrade]\n');
    expect(current).toContain(`hookscript: ${VOLID}\n`);
    expect(snapshot).not.toContain('hookscript');
    expect(fs.readFileSync(conf(101), 'utf8')).toBe(original.replace('hookscript: local:snippets/site.pl', `hookscript: ${VOLID}`));
    expect(readHookChain(opts.stateDir).guests).toEqual({
      '101': { volid: 'local:snippets/site.pl', path: path.join(root, 'var/lib/vz/snippets/site.pl') },
    });
    expect(listHooks(opts)).toEqual({
      guestHook: { path: path.join(root, 'var/lib/vz/snippets', GUEST_HOOK_NAME), volid: VOLID, installed: true },
      vzdumpHook: { path: path.join(root, 'var/lib/vz/snippets/pve-cbt-vzdump-hook'), installed: true, registered: true, chainedTo: null },
      vms: [
        { vmid: 100, attached: true, hookscript: VOLID, chainedTo: null },
        { vmid: 101, attached: true, hookscript: VOLID, chainedTo: 'local:snippets/site.pl' },
        { vmid: 102, attached: false, hookscript: null, chainedTo: null },
      ],
    });
    expect(detachHook(opts, 101)).toBe(true);
    expect(detachHook(opts, 101)).toBe(false);
    expect(fs.readFileSync(conf(101), 'utf8')).toBe(original);
    expect(readHookChain(opts.stateDir).guests).toEqual({});
  });

  test('uninstall detaches every VM first, restoring chained hookscripts, so no VM points at a missing hook', () => {
    const before = snapshotTree(root);
    installHooks(opts);
    attachHook(opts, 100);
    attachHook(opts, 101);
    expect(uninstallHooks(opts)).toEqual({ detached: [100, 101] });
    expect(snapshotTree(root)).toEqual(before);
    expect(fs.existsSync(chainFilePath(opts.stateDir))).toBe(false);
  });

  test('pve-cbt never chains to a copy of itself; uninstall drops entries of VMs that are gone', () => {
    installHooks(opts);
    fs.writeFileSync(conf(102), fs.readFileSync(conf(102), 'utf8').replace('boot:', `hookscript: nfs:snippets/${GUEST_HOOK_NAME}\nboot:`));
    attachHook(opts, 102);
    expect(readHookChain(opts.stateDir).guests).toEqual({});
    attachHook(opts, 101);
    fs.rmSync(conf(101));
    uninstallHooks(opts);
    expect(fs.existsSync(chainFilePath(opts.stateDir))).toBe(false);
    fs.appendFileSync(path.join(root, 'etc/vzdump.conf'), '\nscript: /old/place/pve-cbt-vzdump-hook\n');
    expect(installHooks(opts).vzdumpChainedTo).toBeNull();
  });

  test('errors: unknown VM, hook not installed, relative paths', () => {
    expect(() => attachHook(opts, 100)).toThrow(expect.objectContaining({ code: 'CBT_HOOKS_NOT_INSTALLED' }));
    installHooks(opts);
    expect(() => attachHook(opts, 999)).toThrow(expect.objectContaining({ code: 'CBT_HOOKS_NO_VM', details: expect.objectContaining({ vmid: 999 }) }));
    expect(() => installHooks({ ...opts, distDir: 'dist' })).toThrow(expect.objectContaining({ code: 'CBT_HOOKS_BAD_OPTION' }));
  });
});
