/**
 * pve-cbt's guest hookscript (`qm set VMID --hookscript local:snippets/pve-cbt-guest-hook`), called by
 * Proxmox as `SCRIPT VMID PHASE`. The installed file is a two-line wrapper written by
 * daemon/hook-admin (`#!<node>` + `require(<this file>).main({ configPath })`); run directly with
 * `node guest-hook.js VMID PHASE` it behaves the same. See run-hook.ts for the behaviour.
 */
import { runHookProcess } from './run-hook';

export function main(opts: { configPath?: string } = {}): void {
  runHookProcess('guest', opts);
}

if (require.main === module) main();
