/**
 * Default per-client limits of the control socket (see ipc-server.ts, "Limits"). Plain constants, so
 * that the config schema can name the default of `ipcIdleTimeoutMs` without loading the server.
 */
export const IPC_LIMIT_DEFAULTS = Object.freeze({
  /** An unfinished message may sit this long, counted from its first byte. */
  frameTimeoutMs: 10_000,
  /** A connection without a request in flight is closed after this long without a new one. */
  idleTimeoutMs: 30_000,
  /** Connections for any request. */
  maxConnections: 64,
  /** Further connections that serve only lifecycle events. */
  reservedConnections: 16,
  maxInFlightPerConnection: 32,
  /** Unsent reply bytes after which a client that does not read is dropped. */
  maxReplyBufferBytes: 8 * 1024 * 1024,
});
