import { defineError } from '../shared/errors/cbt-error';

/**
 * Error codes of the hooks. A hook never fails because of them (fail-open): they end up in the one
 * stderr line a hook writes, which Proxmox shows in the task log.
 */
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
