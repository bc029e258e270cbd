import { defineError } from '../shared/errors/cbt-error';

/**
 * Error codes of the hooks. A hook never fails because of them (fail-open): they end up in the one
 * stderr line a hook writes, which Proxmox shows in the task log.
 */
/** The daemon took the spool file over after each write: the event's last copy may have been missed. */
export const HookSpoolTakenOverError = defineError<{ spool: string; attempts: number }>(
  'CBT_HOOK_SPOOL_TAKEN_OVER',
  (d) => `spool ${d.spool} was taken over ${d.attempts} times while writing; event may be lost`,
);
export const HookUntrustedError = defineError<{ path: string; reason: string }>(
  'CBT_HOOK_UNTRUSTED',
  (d) => `${d.path} is not trusted: ${d.reason}`,
);
export const HookNotRegularFileError = defineError<{ path: string; type: string }>(
  'CBT_HOOK_NOT_REGULAR_FILE',
  (d) => `${d.path} is not a regular file (${d.type})`,
);
export const HookTooLargeError = defineError<{ path: string; maxBytes: number }>(
  'CBT_HOOK_FILE_TOO_LARGE',
  (d) => `${d.path} is larger than ${d.maxBytes} bytes`,
);
