/**
 * Installs, attaches, lists and removes pve-cbt's Proxmox hooks (used by install.sh and `pve-cbt hooks`).
 *
 * What it changes, all reversible by uninstallHooks:
 * - SNIPPETS/pve-cbt-guest-hook and SNIPPETS/pve-cbt-vzdump-hook: two-line wrappers, `#!<node>` (vzdump
 *   runs hooks without PATH) and a require of the compiled hook by absolute path with the config path;
 * - ROOT/etc/vzdump.conf `script:` names the vzdump wrapper; an existing script is kept as chain target;
 * - per VM `hookscript: STORAGE:snippets/pve-cbt-guest-hook` in the current config section; an existing
 *   hookscript is kept as chain target and put back on detach;
 * - `<stateDir>/hook-chain.json` records the chain targets (format in hooks/hook-chain.ts). It is
 *   written before a hook is registered so that the very next phase already finds its chain.
 *
 * `root` is '/' on a real node. Paths derived from it (snippets, vzdump.conf, VM configs, qm, pvesm)
 * follow Proxmox's layout under it; the other paths are taken as given. On a real node VM configs are
 * changed with `qm set` (which takes the config lock in pmxcfs); under a simulated root the file is
 * edited directly. Every file is replaced atomically (temporary file + rename).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'winston';
import { chainFilePath, readHookChain, type HookChain } from '../../hooks/hook-chain';
import { HooksBadOptionError, HooksNoVmError, HooksNotInstalledError, HooksNotPveError, HooksQmFailedError } from './hook-admin-errors';
import { readVmHookscript, readVzdumpScript, setVmHookscript, setVzdumpScript } from './pve-conf-edit';

export const GUEST_HOOK_NAME = 'pve-cbt-guest-hook';
export const VZDUMP_HOOK_NAME = 'pve-cbt-vzdump-hook';

export interface HookAdminOptions {
  root: string;
  /** Absolute path of the node binary for the `#!` line. */
  nodePath: string;
  /** Build output containing hooks/guest-hook.js and hooks/vzdump-hook.js. */
  distDir: string;
  /** Where hook-chain.json lives (the config's stateDir). */
  stateDir: string;
  /** Config path baked into the hooks; vzdump gives them no environment to find it. */
  configPath?: string;
  /** Default ROOT/var/lib/vz/snippets, the snippets folder of storage `storage`. */
  snippetsDir?: string;
  /** Storage id of snippetsDir, used in the hookscript volid (default 'local'). */
  storage?: string;
  logger?: Logger;
}

export interface HookListing {
  guestHook: { path: string; volid: string; installed: boolean };
  vzdumpHook: { path: string; installed: boolean; registered: boolean; chainedTo: string | null };
  vms: Array<{ vmid: number; attached: boolean; hookscript: string | null; chainedTo: string | null }>;
}

interface Paths {
  snippetsDir: string;
  guestHook: string;
  vzdumpHook: string;
  guestVolid: string;
  vzdumpConf: string;
  vmConfDir: string;
  qm: string;
  pvesm: string;
  realNode: boolean;
}

function paths(opts: HookAdminOptions): Paths {
  for (const [option, value] of [['root', opts.root], ['nodePath', opts.nodePath], ['distDir', opts.distDir], ['stateDir', opts.stateDir]]) {
    if (!path.isAbsolute(value)) throw HooksBadOptionError({ option, value, reason: 'must be an absolute path' });
  }
  const storage = opts.storage ?? 'local';
  if (!/^[a-z][a-z0-9\-_.]*$/i.test(storage)) throw HooksBadOptionError({ option: 'storage', value: storage, reason: 'not a storage id' });
  const snippetsDir = opts.snippetsDir ?? path.join(opts.root, 'var/lib/vz/snippets');
  return {
    snippetsDir,
    guestHook: path.join(snippetsDir, GUEST_HOOK_NAME),
    vzdumpHook: path.join(snippetsDir, VZDUMP_HOOK_NAME),
    guestVolid: `${storage}:snippets/${GUEST_HOOK_NAME}`,
    vzdumpConf: path.join(opts.root, 'etc/vzdump.conf'),
    vmConfDir: path.join(opts.root, 'etc/pve/qemu-server'),
    qm: path.join(opts.root, 'usr/sbin/qm'),
    pvesm: path.join(opts.root, 'usr/sbin/pvesm'),
    realNode: path.resolve(opts.root) === '/',
  };
}

/** Writes both hook wrappers and registers the vzdump hook. Idempotent. */
export function installHooks(opts: HookAdminOptions): { guestHook: string; vzdumpHook: string; vzdumpChainedTo: string | null } {
  const p = paths(opts);
  fs.mkdirSync(p.snippetsDir, { recursive: true });
  writeAtomic(p.guestHook, wrapper(opts, 'guest-hook'), 0o755, true);
  writeAtomic(p.vzdumpHook, wrapper(opts, 'vzdump-hook'), 0o755, true);

  const confText = fs.existsSync(p.vzdumpConf) ? fs.readFileSync(p.vzdumpConf, 'utf8') : '';
  const existing = readVzdumpScript(confText);
  const chain = readHookChain(opts.stateDir);
  if (existing !== p.vzdumpHook) {
    // Another copy of pve-cbt's own hook is replaced, never chained: it would call itself.
    if (existing !== undefined && path.basename(existing) !== VZDUMP_HOOK_NAME) {
      chain.vzdump = { path: existing };
      opts.logger?.info('existing vzdump hook kept as chain target', { script: existing });
    }
    writeChain(opts.stateDir, chain);
    writeAtomic(p.vzdumpConf, setVzdumpScript(confText, p.vzdumpHook), 0o644);
  }
  opts.logger?.info('pve-cbt hooks installed', { guestHook: p.guestHook, vzdumpHook: p.vzdumpHook });
  return { guestHook: p.guestHook, vzdumpHook: p.vzdumpHook, vzdumpChainedTo: chain.vzdump?.path ?? null };
}

/** Detaches every VM, restores vzdump.conf and removes the wrappers. Idempotent. */
export function uninstallHooks(opts: HookAdminOptions): { detached: number[] } {
  const p = paths(opts);
  const detached: number[] = [];
  for (const vm of listVmConfs(p)) {
    if (readVmHookscript(fs.readFileSync(vm.confPath, 'utf8')) === p.guestVolid) {
      detachHook(opts, vm.vmid);
      detached.push(vm.vmid);
    }
  }
  const chain = readHookChain(opts.stateDir);
  if (fs.existsSync(p.vzdumpConf)) {
    const confText = fs.readFileSync(p.vzdumpConf, 'utf8');
    if (readVzdumpScript(confText) === p.vzdumpHook) {
      writeAtomic(p.vzdumpConf, setVzdumpScript(confText, chain.vzdump?.path), 0o644);
    }
  }
  // Every VM with pve-cbt's hook was detached above; entries left belong to VMs that are gone.
  writeChain(opts.stateDir, { guests: {} });
  fs.rmSync(p.guestHook, { force: true });
  fs.rmSync(p.vzdumpHook, { force: true });
  opts.logger?.info('pve-cbt hooks uninstalled', { detached });
  return { detached };
}

/** Sets pve-cbt's hookscript on a VM, chaining to the one it had. Returns false if it was attached already. */
export function attachHook(opts: HookAdminOptions, vmid: number): boolean {
  const p = paths(opts);
  if (!fs.existsSync(p.guestHook)) throw HooksNotInstalledError({ path: p.guestHook });
  const confPath = vmConfPath(p, vmid);
  const current = readVmHookscript(fs.readFileSync(confPath, 'utf8'));
  if (current === p.guestVolid) return false;
  const chain = readHookChain(opts.stateDir);
  if (current !== undefined && !current.endsWith(`/${GUEST_HOOK_NAME}`)) {
    chain.guests[String(vmid)] = { volid: current, path: resolveVolid(p, current) };
    opts.logger?.info('existing hookscript kept as chain target', { vmid, hookscript: current });
  } else {
    delete chain.guests[String(vmid)];
  }
  writeChain(opts.stateDir, chain);
  setHookscript(p, vmid, confPath, p.guestVolid);
  opts.logger?.info('hookscript attached', { vmid });
  return true;
}

/** Removes pve-cbt's hookscript from a VM, putting back the one it replaced. Returns false if not attached. */
export function detachHook(opts: HookAdminOptions, vmid: number): boolean {
  const p = paths(opts);
  const confPath = vmConfPath(p, vmid);
  const current = readVmHookscript(fs.readFileSync(confPath, 'utf8'));
  const chain = readHookChain(opts.stateDir);
  const previous = chain.guests[String(vmid)];
  const attached = current === p.guestVolid;
  if (attached) setHookscript(p, vmid, confPath, previous?.volid);
  if (previous) {
    delete chain.guests[String(vmid)];
    writeChain(opts.stateDir, chain);
  }
  if (attached) opts.logger?.info('hookscript detached', { vmid, restored: previous?.volid ?? null });
  return attached;
}

export function listHooks(opts: HookAdminOptions): HookListing {
  const p = paths(opts);
  const chain = readHookChain(opts.stateDir);
  const confText = fs.existsSync(p.vzdumpConf) ? fs.readFileSync(p.vzdumpConf, 'utf8') : '';
  return {
    guestHook: { path: p.guestHook, volid: p.guestVolid, installed: fs.existsSync(p.guestHook) },
    vzdumpHook: {
      path: p.vzdumpHook,
      installed: fs.existsSync(p.vzdumpHook),
      registered: readVzdumpScript(confText) === p.vzdumpHook,
      chainedTo: chain.vzdump?.path ?? null,
    },
    vms: listVmConfs(p).map(({ vmid, confPath }) => {
      const hookscript = readVmHookscript(fs.readFileSync(confPath, 'utf8')) ?? null;
      const attached = hookscript === p.guestVolid;
      return { vmid, attached, hookscript, chainedTo: attached ? chain.guests[String(vmid)]?.volid ?? null : null };
    }),
  };
}

function wrapper(opts: HookAdminOptions, name: 'guest-hook' | 'vzdump-hook'): string {
  const main = path.join(opts.distDir, 'hooks', `${name}.js`);
  const args = opts.configPath ? `{ configPath: ${JSON.stringify(opts.configPath)} }` : '';
  // Fail-open even when the app is gone (removed or half-upgraded): a failing pre-start would abort the VM start.
  return [
    `#!${opts.nodePath}`,
    `// pve-cbt ${name}, written by pve-cbt's installer: changes are overwritten.`,
    'let hook;',
    `try { hook = require(${JSON.stringify(main)}); } catch (err) {`,
    `  process.stderr.write(\`pve-cbt ${name}: cannot load \${${JSON.stringify(main)}} (\${err.code || err.message}); VM events are not recorded until pve-cbt is reinstalled\\n\`);`,
    '  process.exit(0);',
    '}',
    `hook.main(${args});`,
    '',
  ].join('\n');
}

function vmConfPath(p: Paths, vmid: number): string {
  const confPath = path.join(p.vmConfDir, `${vmid}.conf`);
  if (!Number.isInteger(vmid) || vmid < 1 || !fs.existsSync(confPath)) throw HooksNoVmError({ vmid, confPath });
  return confPath;
}

function listVmConfs(p: Paths): Array<{ vmid: number; confPath: string }> {
  if (!fs.existsSync(p.vmConfDir)) return [];
  return fs
    .readdirSync(p.vmConfDir)
    .filter((f) => /^[1-9][0-9]*\.conf$/.test(f))
    .map((f) => ({ vmid: Number(f.slice(0, -5)), confPath: path.join(p.vmConfDir, f) }))
    .sort((a, b) => a.vmid - b.vmid);
}

function setHookscript(p: Paths, vmid: number, confPath: string, volid: string | undefined): void {
  if (p.realNode) {
    if (!fs.existsSync(p.qm)) throw HooksNotPveError({ qmPath: p.qm });
    const args = volid === undefined ? ['set', String(vmid), '--delete', 'hookscript'] : ['set', String(vmid), '--hookscript', volid];
    try {
      execFileSync(p.qm, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      throw HooksQmFailedError({ vmid, args, output: e.stderr?.toString().trim() || e.message }, err);
    }
    return;
  }
  writeAtomic(confPath, setVmHookscript(fs.readFileSync(confPath, 'utf8'), volid), 0o640);
}

/** `pvesm path VOLID` when pvesm is there; otherwise only the snippets storage is known. */
function resolveVolid(p: Paths, volid: string): string {
  if (fs.existsSync(p.pvesm)) {
    try {
      return execFileSync(p.pvesm, ['path', volid], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
    } catch {
      // fall through to the snippets folder we know
    }
  }
  const prefix = p.guestVolid.slice(0, p.guestVolid.indexOf('/') + 1);
  return volid.startsWith(prefix) ? path.join(p.snippetsDir, volid.slice(prefix.length)) : volid;
}

function writeChain(stateDir: string, chain: HookChain): void {
  const file = chainFilePath(stateDir);
  if (chain.vzdump === undefined && Object.keys(chain.guests).length === 0) {
    fs.rmSync(file, { force: true });
    return;
  }
  fs.mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  writeAtomic(file, `${JSON.stringify(chain, null, 2)}\n`, 0o600);
}

/** Replaces a file atomically; an existing file keeps its mode unless `forceMode`, a new one gets `mode`. */
function writeAtomic(file: string, text: string, mode: number, forceMode = false): void {
  if (!forceMode && fs.existsSync(file)) mode = fs.statSync(file).mode & 0o7777;
  const tmp = `${file}.pve-cbt-tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.chmodSync(tmp, mode);
  fs.renameSync(tmp, file);
}
