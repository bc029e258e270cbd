/** Error codes of the Proxmox node simulator (test infrastructure, also used by `pve-cbt demo`). */
import { defineError } from '../../shared/errors/cbt-error';

export const SimSpecError = defineError<{ reason: string }>('CBT_SIM_SPEC', (d) => `invalid simulator spec: ${d.reason}`);

export const SimStateError = defineError<{ vmid: number; op: string; reason: string }>(
  'CBT_SIM_STATE',
  (d) => `VM ${d.vmid}: cannot ${d.op}: ${d.reason}`,
);

export const SimHookAbortError = defineError<{ vmid: number; phase: string; script: string; exitCode: number; stderr: string }>(
  'CBT_SIM_HOOK_ABORT',
  (d) => `VM ${d.vmid}: hookscript ${d.script} failed in ${d.phase} (exit ${d.exitCode}), start aborted: ${d.stderr.trim()}`,
);

export const SimQemuStartError = defineError<{ vmid: number; exitCode: number | null; stderr: string }>(
  'CBT_SIM_QEMU_START',
  (d) => `VM ${d.vmid}: QEMU failed to start (exit ${d.exitCode}): ${d.stderr.trim()}`,
);

export const SimIoError = defineError<{ vmid: number; disk: string; op: string; output: string }>(
  'CBT_SIM_IO',
  (d) => `VM ${d.vmid} disk ${d.disk}: ${d.op} failed: ${d.output.trim()}`,
);

export const SimVzdumpError = defineError<{ vmid: number; mode: string; phase: string; reason: string }>(
  'CBT_SIM_VZDUMP',
  (d) => `vzdump of VM ${d.vmid} (${d.mode}) failed in ${d.phase}: ${d.reason}`,
);
