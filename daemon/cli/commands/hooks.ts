/**
 * `pve-cbt hooks`: the hook scripts that tell the daemon about VM starts and stops.
 *   hooks [list]            installed paths, vzdump.conf entry, and per VM whether it is attached
 *   hooks install|uninstall write/remove both hooks in the snippets storage and the vzdump.conf entry
 *   hooks attach VMID|--all set the guest hookscript (an existing one is chained, not replaced)
 *   hooks detach VMID|--all restore the VM's previous hookscript
 * `--root DIR` works on a Proxmox root other than `/` (install.sh --root, tests); the config is
 * then read from DIR/etc/pve-cbt/config.json unless --config names one.
 */
import fs from 'node:fs';
import path from 'node:path';
import { attachHook, detachHook, installHooks, listHooks, uninstallHooks, type HookAdminOptions, type HookListing } from '../../hook-admin/hook-admin';
import { loadConfig } from '../../config/load-config';
import { DEFAULT_CONFIG_PATH } from '../../../shared/config/defaults';
import { CliUsageError } from '../cli-errors';
import { defineCommand, type CommandContext, type CommandDefinition } from '../command';
import { parseVmid } from '../option-parsers';
import { textTable } from '../text-table';

interface HooksOptions {
  root?: string;
  storage?: string;
  all?: boolean;
}

const ROOT_OPTION = { flags: '--root <dir>', description: 'Proxmox root directory (default /)' };
const STORAGE_OPTION = { flags: '--storage <id>', description: "snippets storage of the hooks (default 'local')" };

function adminOptions(ctx: CommandContext<HooksOptions, unknown>): HookAdminOptions {
  const root = path.resolve(ctx.opts.root ?? '/');
  const rootConfig = path.join(root, DEFAULT_CONFIG_PATH);
  const useRootConfig = root !== '/' && ctx.configPath === undefined && fs.existsSync(rootConfig);
  const configPath = useRootConfig ? rootConfig : ctx.configPath;
  const config = useRootConfig ? loadConfig({ path: rootConfig, env: {} }) : ctx.loadConfig();
  return {
    root,
    nodePath: process.execPath,
    // dist/daemon/cli/commands → dist
    distDir: path.resolve(__dirname, '..', '..', '..'),
    stateDir: config.stateDir,
    configPath: configPath ?? (root === '/' ? undefined : rootConfig),
    storage: ctx.opts.storage,
  };
}

function listingText(l: HookListing): string {
  const lines = [
    `guest hook:  ${l.guestHook.path} (${l.guestHook.installed ? 'installed' : 'not installed'}, ${l.guestHook.volid})`,
    `vzdump hook: ${l.vzdumpHook.path} (${l.vzdumpHook.installed ? 'installed' : 'not installed'}, ${l.vzdumpHook.registered ? 'registered in vzdump.conf' : 'not in vzdump.conf'}${l.vzdumpHook.chainedTo ? `, chains to ${l.vzdumpHook.chainedTo}` : ''})`,
  ];
  if (l.vms.length) lines.push(textTable(['VMID', 'ATTACHED', 'HOOKSCRIPT', 'CHAINS TO'], l.vms.map((v) => [v.vmid, v.attached ? 'yes' : 'no', v.hookscript ?? '-', v.chainedTo ?? '-'])));
  return lines.join('\n');
}

function vmTargets(ctx: CommandContext<HooksOptions, { vmid?: number }>, opts: HookAdminOptions, verb: string): number[] {
  if (ctx.opts.all) return listHooks(opts).vms.map((v) => v.vmid);
  if (ctx.args.vmid === undefined) throw CliUsageError({ command: `hooks ${verb}`, problem: 'name a VMID or --all', hint: `pve-cbt hooks ${verb} 101` });
  return [ctx.args.vmid];
}

const listSub = defineCommand<HooksOptions>({
  name: 'list',
  summary: 'show installed hooks and which VMs have the guest hookscript attached',
  options: [ROOT_OPTION, STORAGE_OPTION],
  async run(ctx) {
    const l = listHooks(adminOptions(ctx));
    return { data: l, text: listingText(l) };
  },
});

const installSub = defineCommand<HooksOptions>({
  name: 'install',
  summary: 'install both hooks into the snippets storage and register the vzdump hook',
  options: [ROOT_OPTION, STORAGE_OPTION],
  async run(ctx) {
    const r = installHooks(adminOptions(ctx));
    return { data: r, text: `installed ${r.guestHook} and ${r.vzdumpHook}${r.vzdumpChainedTo ? ` (chains to ${r.vzdumpChainedTo})` : ''}` };
  },
});

const uninstallSub = defineCommand<HooksOptions>({
  name: 'uninstall',
  summary: 'detach from every VM, remove both hooks and the vzdump.conf entry',
  options: [ROOT_OPTION, STORAGE_OPTION],
  async run(ctx) {
    const r = uninstallHooks(adminOptions(ctx));
    return { data: r, text: `hooks removed${r.detached.length ? `; detached from VM ${r.detached.join(', ')}` : ''}` };
  },
});

/** `attach` and `detach` differ only in the verb and the hook-admin call. */
function vmSubcommand(verb: 'attach' | 'detach', summary: string, apply: (opts: HookAdminOptions, vmid: number) => boolean) {
  return defineCommand<HooksOptions, { vmid?: number }>({
    name: verb,
    summary,
    params: [{ name: 'vmid', description: 'VM id', parse: parseVmid }],
    options: [{ flags: '--all', description: 'every VM on this node' }, ROOT_OPTION, STORAGE_OPTION],
    async run(ctx) {
      const opts = adminOptions(ctx);
      const changed = vmTargets(ctx, opts, verb).filter((vmid) => apply(opts, vmid));
      return { data: { [`${verb}ed`]: changed }, text: changed.length ? `${verb}ed ${verb === 'attach' ? 'to' : 'from'} VM ${changed.join(', ')}` : 'nothing to do' };
    },
  });
}

const attachSub = vmSubcommand('attach', 'attach the guest hookscript to a VM (an existing hookscript is chained)', attachHook);
const detachSub = vmSubcommand('detach', "detach the guest hookscript from a VM (its previous hookscript comes back)", detachHook);

export const hooksCommand = defineCommand<HooksOptions>({
  name: 'hooks',
  summary: 'list or manage the guest hookscript and the vzdump hook (no subcommand: list)',
  examples: ['pve-cbt hooks', 'pve-cbt hooks attach --all', 'pve-cbt hooks detach 101'],
  subcommands: [listSub, installSub, uninstallSub, attachSub, detachSub],
  run: listSub.run as CommandDefinition<HooksOptions>['run'],
});
