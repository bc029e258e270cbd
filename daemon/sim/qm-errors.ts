/** Error codes of the simulator's `qm` operations (qm-snapshot.ts, qm-disk-move.ts, qm-disk-config.ts). */
import { defineError } from '../../shared/errors/cbt-error';

/** A `qm` command refused or failed, as qemu-server would report it (`reason`). */
export const SimQmError = defineError<{ vmid: number; command: string; reason: string }>(
  'CBT_SIM_QM',
  (d) => `qm ${d.command} (VM ${d.vmid}) failed: ${d.reason}`,
);
