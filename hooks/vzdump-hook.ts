/**
 * pve-cbt's vzdump hook (`script: PATH` in /etc/vzdump.conf), called as `SCRIPT PHASE` for job phases
 * or `SCRIPT PHASE MODE VMID` for guest phases, with vzdump's emptied environment (no PATH, no
 * PVE_CBT_CONFIG: the installed wrapper passes the config path). See run-hook.ts for the behaviour.
 */
import { runHookProcess } from './run-hook';

export function main(opts: { configPath?: string } = {}): void {
  runHookProcess('vzdump', opts);
}

if (require.main === module) main();
