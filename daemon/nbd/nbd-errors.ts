/**
 * Error codes of the NBD client. Every failure is one of these, with the values involved as details,
 * so that the backup engine can tell a server that refused an option from a server that died mid-read.
 */
import { defineError } from '../../shared/errors/cbt-error';

/** The server broke the protocol (bad magic, unknown chunk, impossible length...); the connection is dropped. */
export const NbdProtocolError = defineError('CBT_NBD_PROTOCOL', (d: { reason: string; [k: string]: unknown }) =>
  `NBD protocol violation by the server: ${d.reason}`,
);

/** The server answered an option with an NBD_REP_ERR_* reply (or a reply we cannot use). */
export const NbdOptionRefusedError = defineError(
  'CBT_NBD_OPTION_REFUSED',
  (d: { option: string; reply: string; message?: string; [k: string]: unknown }) =>
    `NBD server refused ${d.option} with ${d.reply}${d.message ? `: ${d.message}` : ''}`,
);

/** The server answered a command with an error (errno name as the protocol defines it). */
export const NbdServerError = defineError(
  'CBT_NBD_SERVER_ERROR',
  (d: { command: string; errno: string; offset: number; length: number; message?: string; [k: string]: unknown }) =>
    `NBD ${d.command} at offset ${d.offset} (length ${d.length}) failed: ${d.errno}${d.message ? ` (${d.message})` : ''}`,
);

/** A read reply claimed success but did not cover the whole request. */
export const NbdShortReadError = defineError(
  'CBT_NBD_SHORT_READ',
  (d: { offset: number; length: number; received: number }) =>
    `NBD read at offset ${d.offset} returned ${d.received} of ${d.length} bytes`,
);

/** The connection ended (or was closed by us) while requests were outstanding or new ones were made. */
export const NbdDisconnectedError = defineError('CBT_NBD_DISCONNECTED', (d: { reason: string; pending?: number }) =>
  `NBD connection lost: ${d.reason}${d.pending ? ` (${d.pending} requests outstanding)` : ''}`,
);

/** Nothing arrived from the server for `timeoutMs` while we were waiting for it. */
export const NbdTimeoutError = defineError('CBT_NBD_TIMEOUT', (d: { waitingFor: string; timeoutMs: number }) =>
  `NBD server did not answer within ${d.timeoutMs} ms (waiting for ${d.waitingFor})`,
);

/** The socket could not be opened. */
export const NbdConnectError = defineError('CBT_NBD_CONNECT', (d: { target: string; reason: string }) =>
  `cannot connect to NBD server ${d.target}: ${d.reason}`,
);

/** A metadata context was asked for that the server did not select for this connection. */
export const NbdNoContextError = defineError('CBT_NBD_NO_CONTEXT', (d: { context: string; available: string[] }) =>
  `NBD metadata context ${d.context} is not available (negotiated: ${d.available.join(', ') || 'none'})`,
);

/** A request outside the export (a caller bug, refused before anything is sent). */
export const NbdOutOfRangeError = defineError('CBT_NBD_OUT_OF_RANGE', (d: { offset: number; length: number; size: number }) =>
  `NBD request [${d.offset}, +${d.length}) lies outside the export of ${d.size} bytes`,
);

/** A bulk read was aborted through its AbortSignal; `cause` is the signal's reason. */
export const NbdAbortedError = defineError('CBT_NBD_ABORTED', (d: { reason: string }) => `NBD read aborted: ${d.reason}`);
