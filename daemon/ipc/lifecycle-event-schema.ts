/**
 * The one schema of a lifecycle event (`shared/ipc/messages.ts` LifecycleEvent), used twice: by the
 * IPC server for the `lifecycle-event` request's payload and by the spool replay for every spooled
 * line, so that nothing reaches the ledger's SQLite statements with a type it cannot bind.
 * Shape only; which phases need a vmid or a mode is checked by the ledger (CBT_LEDGER_BAD_EVENT).
 */
import Ajv, { type ValidateFunction } from 'ajv';
import { GUEST_PHASES, VMID_MAX, VMID_MIN, VZDUMP_GUEST_PHASES, VZDUMP_JOB_PHASES, VZDUMP_MODES } from '../../shared/ipc/messages';

/** Linux's largest possible pid_max (PID_MAX_LIMIT, 2^22). */
export const QEMU_PID_MAX = 4_194_304;

export const LIFECYCLE_EVENT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['phase', 'source', 'time'],
  properties: {
    vmid: { type: 'integer', minimum: VMID_MIN, maximum: VMID_MAX },
    phase: { enum: [...new Set([...GUEST_PHASES, ...VZDUMP_JOB_PHASES, ...VZDUMP_GUEST_PHASES])] },
    source: { enum: ['hookscript', 'vzdump'] },
    mode: { enum: [...VZDUMP_MODES] },
    time: { type: 'string', maxLength: 40, pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}' },
    migratedFrom: { type: 'string', minLength: 1, maxLength: 255 },
    qemuPid: { type: 'integer', minimum: 1, maximum: QEMU_PID_MAX },
    seq: { type: 'string', minLength: 1, maxLength: 128 },
  },
} as const;

let compiled: ValidateFunction | undefined;

/** The schema compiled with the IPC server's ajv options (strict, first error only). */
export function lifecycleEventValidator(): ValidateFunction {
  compiled ??= new Ajv({ allErrors: false, strict: true }).compile(LIFECYCLE_EVENT_SCHEMA);
  return compiled;
}
