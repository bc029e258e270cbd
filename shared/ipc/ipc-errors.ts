import { defineError } from '../errors/cbt-error';

/**
 * Error codes of the control socket. Server-side codes travel to the client inside an error reply
 * and are re-raised there with the same code; client-side codes say why no reply arrived.
 */
export const IpcMalformedError = defineError<{ reason: string; bytes: number }>(
  'CBT_IPC_MALFORMED',
  (d) => `malformed message (${d.bytes} bytes): ${d.reason}`,
);
export const IpcInvalidMessageError = defineError<{ errors: string[] }>(
  'CBT_IPC_INVALID_MESSAGE',
  (d) => `message envelope is invalid: ${d.errors.join('; ')}`,
);
export const IpcUnknownTypeError = defineError<{ type: string; known: string[] }>(
  'CBT_IPC_UNKNOWN_TYPE',
  (d) => `unknown message type "${d.type}"`,
);
export const IpcInvalidPayloadError = defineError<{ type: string; errors: string[] }>(
  'CBT_IPC_INVALID_PAYLOAD',
  (d) => `invalid payload for "${d.type}": ${d.errors.join('; ')}`,
);
export const IpcTooLargeError = defineError<{ maxMessageBytes: number; bytes: number }>(
  'CBT_IPC_TOO_LARGE',
  (d) => `message exceeds ${d.maxMessageBytes} bytes (got at least ${d.bytes}); connection closed`,
);
export const IpcIncompleteError = defineError<{ bytes: number; frameTimeoutMs: number }>(
  'CBT_IPC_INCOMPLETE',
  (d) => `message left unfinished for ${d.frameTimeoutMs} ms (${d.bytes} bytes received); connection closed`,
);
export const IpcDuplicateIdError = defineError<{ id: string }>(
  'CBT_IPC_DUPLICATE_ID',
  (d) => `request id "${d.id}" is already in flight on this connection`,
);
export const IpcHandlerFailedError = defineError<{ type: string; reason: string }>(
  'CBT_IPC_HANDLER_FAILED',
  (d) => `handler for "${d.type}" failed: ${d.reason}`,
);
export const IpcShuttingDownError = defineError<{ type: string }>(
  'CBT_IPC_SHUTTING_DOWN',
  (d) => `daemon is shutting down; "${d.type}" was cancelled`,
);
export const IpcSocketDirInsecureError = defineError<{ dir: string; mode: string; uid: number; expectedUid: number }>(
  'CBT_IPC_SOCKET_DIR_INSECURE',
  (d) => `socket directory ${d.dir} must be owned by uid ${d.expectedUid} with mode 0700 (is uid ${d.uid}, mode ${d.mode})`,
);
export const IpcSocketInUseError = defineError<{ socketPath: string }>(
  'CBT_IPC_SOCKET_IN_USE',
  (d) => `another process is already serving ${d.socketPath}`,
);
export const IpcSocketPathError = defineError<{ socketPath: string; reason: string }>(
  'CBT_IPC_SOCKET_PATH',
  (d) => `cannot serve on ${d.socketPath}: ${d.reason}`,
);
export const IpcSchemaError = defineError<{ type: string; reason: string }>(
  'CBT_IPC_SCHEMA',
  (d) => `schema of handler "${d.type}" is not acceptable: ${d.reason}`,
);
export const IpcUnavailableError = defineError<{ socketPath: string; errno: string }>(
  'CBT_IPC_UNAVAILABLE',
  (d) => `pve-cbt daemon is not reachable on ${d.socketPath} (${d.errno})`,
);
export const IpcConnectionLostError = defineError<{ socketPath: string; type: string }>(
  'CBT_IPC_CONNECTION_LOST',
  (d) => `connection to ${d.socketPath} closed before the reply to "${d.type}"`,
);
export const IpcTimeoutError = defineError<{ socketPath: string; type: string; timeoutMs: number }>(
  'CBT_IPC_TIMEOUT',
  (d) => `no reply to "${d.type}" from ${d.socketPath} within ${d.timeoutMs} ms`,
);
export const IpcAbortedError = defineError<{ socketPath: string; type: string }>(
  'CBT_IPC_ABORTED',
  (d) => `request "${d.type}" to ${d.socketPath} was aborted by the caller`,
);
export const IpcBadReplyError = defineError<{ socketPath: string; reason: string }>(
  'CBT_IPC_BAD_REPLY',
  (d) => `unreadable reply from ${d.socketPath}: ${d.reason}`,
);
/** The daemon refuses for load: all connection slots are taken (see ipc-server.ts, "Limits"). */
export const IpcBusyError = defineError<{ connections: number; maxConnections: number; reservedFor?: string[] }>(
  'CBT_IPC_BUSY',
  (d) =>
    d.reservedFor
      ? `pve-cbt daemon is busy: only ${d.reservedFor.join(', ')} requests are served on its ${d.connections} connections now (limit ${d.maxConnections}); try again shortly`
      : `pve-cbt daemon is busy: ${d.connections} connections are open (limit ${d.maxConnections}); try again shortly`,
);
export const IpcTooManyRequestsError = defineError<{ type: string; inFlight: number; maxInFlight: number }>(
  'CBT_IPC_TOO_MANY_REQUESTS',
  (d) => `"${d.type}" refused: ${d.inFlight} requests are already in flight on this connection (limit ${d.maxInFlight})`,
);
/** The daemon closed a connection that sent no complete request for the idle timeout, or whose slot a new client needed. */
export const IpcIdleError = defineError<{ idleTimeoutMs: number; bufferedBytes: number; evicted: boolean }>(
  'CBT_IPC_IDLE',
  (d) =>
    d.evicted
      ? 'connection closed: it was idle and its slot was needed by a new client'
      : `connection closed: no complete request for ${d.idleTimeoutMs} ms`,
);
