import { defineError } from '../../shared/errors/cbt-error';

export const HooksNoVmError = defineError<{ vmid: number; confPath: string }>(
  'CBT_HOOKS_NO_VM',
  (d) => `VM ${d.vmid} has no config at ${d.confPath}`,
);
export const HooksNotInstalledError = defineError<{ path: string }>(
  'CBT_HOOKS_NOT_INSTALLED',
  (d) => `pve-cbt's guest hook is not installed (${d.path} missing); run the installer first`,
);
export const HooksQmFailedError = defineError<{ vmid: number; args: string[]; output: string }>(
  'CBT_HOOKS_QM_FAILED',
  (d) => `qm ${d.args.join(' ')} failed for VM ${d.vmid}: ${d.output}`,
);
export const HooksNotPveError = defineError<{ qmPath: string }>(
  'CBT_HOOKS_NOT_PVE',
  (d) => `${d.qmPath} not found: this host is not a Proxmox VE node`,
);
export const HooksBadOptionError = defineError<{ option: string; value: string; reason: string }>(
  'CBT_HOOKS_BAD_OPTION',
  (d) => `option ${d.option}=${d.value}: ${d.reason}`,
);
