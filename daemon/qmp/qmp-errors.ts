/**
 * Error codes of the QMP client. QEMU's own error class and description are kept as details
 * (`errorClass`, `desc`) so that callers can branch on them without parsing messages.
 */
import { defineError } from '../../shared/errors/cbt-error';

export const QmpBusyError = defineError<{ socketPath: string; attempts: number }>(
  'CBT_QMP_BUSY',
  (d) => `QMP socket ${d.socketPath} is held by another client (no greeting after ${d.attempts} attempts)`,
);

export const QmpConnectError = defineError<{ socketPath: string; attempts: number; reason: string }>(
  'CBT_QMP_CONNECT',
  (d) => `cannot connect to QMP socket ${d.socketPath} after ${d.attempts} attempts: ${d.reason}`,
);

export const QmpTimeoutError = defineError<{ socketPath: string; command: string; timeoutMs: number }>(
  'CBT_QMP_TIMEOUT',
  (d) => `QMP command ${d.command} on ${d.socketPath} got no reply within ${d.timeoutMs} ms`,
);

export const QmpCommandError = defineError<{ socketPath: string; command: string; errorClass: string; desc: string }>(
  'CBT_QMP_COMMAND',
  (d) => `QMP command ${d.command} failed: ${d.errorClass}: ${d.desc}`,
);

export const QmpDisconnectedError = defineError<{ socketPath: string; command?: string; reason: string }>(
  'CBT_QMP_DISCONNECTED',
  (d) => `QMP connection ${d.socketPath} closed${d.command ? ` while ${d.command} was pending` : ''}: ${d.reason}`,
);

export const QmpProtocolError = defineError<{ socketPath: string; reason: string; line?: string }>(
  'CBT_QMP_PROTOCOL',
  (d) => `QMP protocol violation on ${d.socketPath}: ${d.reason}`,
);

/** query-block shows a disk whose format node cannot be found (filter chain without child, unknown node). */
export const QmpLayoutError = defineError<{ device: string; reason: string }>(
  'CBT_QMP_LAYOUT',
  (d) => `cannot find the format node of ${d.device}: ${d.reason}`,
);
