/**
 * The daemon's control socket: hooks send lifecycle events over it and the CLI sends requests.
 *
 * Transport is node-ipc on a unix socket, in raw buffer mode with pve-cbt's own line framing
 * (`shared/ipc/line-framer.ts`): node-ipc's JSON framing buffers without bound and lets a peer
 * publish node-ipc's internal event names. Each line is one request envelope (`shared/ipc/messages.ts`),
 * validated with ajv before its handler sees it. Anything wrong with a message (not JSON, bad
 * envelope, unknown type, invalid payload) is logged and answered with a CBT_IPC_* error reply; the
 * connection stays usable. Oversized messages and messages left unfinished for `frameTimeoutMs`
 * (counted from their first byte, so a client dripping one byte at a time gains nothing) cannot be
 * resynchronised: they are answered and the connection is closed. Other connections are never
 * affected.
 *
 * Limits per client (defaults in brackets; every one is an option):
 * - idle timeout [30 s]: a connection with no request in flight that sends no complete, valid
 *   request for `idleTimeoutMs` is answered CBT_IPC_IDLE and closed; garbage does not count.
 * - connections [64 + 16]: a new connection beyond `maxConnections` first evicts the idle connection
 *   that was idle longest (answered CBT_IPC_IDLE). With none idle it gets one of
 *   `reservedConnections` slots that serve only `reservedTypes` (lifecycle events from hooks, which
 *   must be answered within the hook's bound); any other request there, and any connection beyond
 *   those, is answered CBT_IPC_BUSY and closed.
 * - requests in flight per connection [32]: more are answered CBT_IPC_TOO_MANY_REQUESTS at once,
 *   never queued.
 * - unsent replies [8 MiB]: a client that does not read is dropped once its unsent output exceeds
 *   `maxReplyBufferBytes` (one reply larger than that still goes out whole to a client that reads).
 * - half-close: the socket is allowHalfOpen, so a client that shuts down its sending side after its
 *   requests still gets every reply; the server ends the connection once the last one is sent.
 *
 * Access control: only root may use the socket. The socket file is chmod 0600 and lives in a
 * directory of mode 0700 owned by the daemon's user; the directory is created if missing and an
 * existing one with looser rights is refused rather than changed (it may be shared, e.g. /run;
 * ipc-socket-path.ts). Messages are checked in ipc-message-check.ts, connections are ipc-connection.ts.
 */
import fs from 'node:fs';
import net from 'node:net';
import nodeIpc from 'node-ipc';
import type { Logger } from 'winston';
import { isCbtError } from '../../shared/errors/cbt-error';
import {
  IpcDuplicateIdError,
  IpcBusyError,
  IpcHandlerFailedError,
  IpcIdleError,
  IpcIncompleteError,
  IpcShuttingDownError,
  IpcSocketPathError,
  IpcTooLargeError,
  IpcTooManyRequestsError,
} from '../../shared/ipc/ipc-errors';
import { encodeFrame } from '../../shared/ipc/line-framer';
import type { ErrorReply, ReplyError, RequestEnvelope, ServerFrame } from '../../shared/ipc/messages';
import { IPC_PROTOCOL_VERSION, MESSAGE_TYPES } from '../../shared/ipc/messages';
import { newConnection, type Connection } from './ipc-connection';
import { IPC_LIMIT_DEFAULTS } from './ipc-limits';
import { checkRequest, compileValidators } from './ipc-message-check';
import { prepareSocketPath } from './ipc-socket-path';
import { traced } from '../../shared/trace/trace-spans';

export interface IpcHandlerContext {
  /** Sends a progress frame for this request; dropped silently once the client has gone. */
  progress(p: unknown): void;
  /** Aborted when the client disconnects or the server closes. */
  signal: AbortSignal;
}

export interface IpcHandler {
  /** JSON schema of the payload; a top-level object schema must set `additionalProperties: false`. */
  schema: object;
  handle(payload: never, ctx: IpcHandlerContext): Promise<unknown>;
}

export interface IpcServerOptions {
  socketPath: string;
  logger?: Logger;
  handlers: Record<string, IpcHandler>;
  /** Largest accepted message line in bytes (default 1 MiB). */
  maxMessageBytes?: number;
  /** How long an unfinished message may sit before the connection is dropped (default 10 s). */
  frameTimeoutMs?: number;
  /** Most simultaneous connections for any request (default 64). */
  maxConnections?: number;
  /** Further connections that serve only `reservedTypes` (default 16). */
  reservedConnections?: number;
  /** Request types served on reserved connections (default: lifecycle-event). */
  reservedTypes?: readonly string[];
  /** A connection without a request in flight is closed after this long without one (default 30 s). */
  idleTimeoutMs?: number;
  /** Most requests in flight on one connection (default 32). */
  maxInFlightPerConnection?: number;
  /** Most unsent reply bytes per connection before it is dropped (default 8 MiB). */
  maxReplyBufferBytes?: number;
}

export interface IpcServer {
  close(): Promise<void>;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 1024 * 1024;
export { IPC_LIMIT_DEFAULTS };
/** Connections the kernel-facing listener accepts beyond the slots, only to answer CBT_IPC_BUSY. */
const REFUSAL_HEADROOM = 64;
/** Frames of one connection handled before the others get a turn. */
const FRAMES_PER_TURN = 64;

interface NodeIpcServer {
  on(event: string, cb: (...args: never[]) => void): void;
  start(): void;
  stop(): void;
  emit(socket: net.Socket, data: string): void;
  server: net.Server | false;
}

export async function startIpcServer(opts: IpcServerOptions): Promise<IpcServer> {
  const { socketPath, logger } = opts;
  const maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const frameTimeoutMs = opts.frameTimeoutMs ?? IPC_LIMIT_DEFAULTS.frameTimeoutMs;
  const idleTimeoutMs = opts.idleTimeoutMs ?? IPC_LIMIT_DEFAULTS.idleTimeoutMs;
  const maxConnections = opts.maxConnections ?? IPC_LIMIT_DEFAULTS.maxConnections;
  const reservedConnections = opts.reservedConnections ?? IPC_LIMIT_DEFAULTS.reservedConnections;
  const reservedTypes = new Set(opts.reservedTypes ?? [MESSAGE_TYPES.lifecycleEvent]);
  const maxInFlight = opts.maxInFlightPerConnection ?? IPC_LIMIT_DEFAULTS.maxInFlightPerConnection;
  const maxReplyBufferBytes = opts.maxReplyBufferBytes ?? IPC_LIMIT_DEFAULTS.maxReplyBufferBytes;
  const validators = compileValidators(opts.handlers);
  await prepareSocketPath(socketPath);

  const ipc = new nodeIpc.IPC();
  Object.assign(ipc.config, {
    silent: true,
    rawBuffer: true,
    encoding: 'utf8',
    unlink: false,
    // Our own slots (see admit) answer CBT_IPC_BUSY; the listener's limit is only a last resort.
    maxConnections: maxConnections + reservedConnections + REFUSAL_HEADROOM,
  });

  const connections = new Set<Connection>();
  const bySocket = new WeakMap<net.Socket, Connection>();
  let nextPeer = 1;
  let closed = false;

  await new Promise<void>((resolve, reject) => {
    ipc.serve(socketPath, () => resolve());
    const server = ipc.server as unknown as NodeIpcServer;
    server.on('error', (err: Error) => {
      if (!server.server || !server.server.listening) reject(IpcSocketPathError({ socketPath, reason: err.message }, err));
      else logger?.warn('ipc socket error', { socketPath, error: err.message });
    });
    server.on('connect', (socket: net.Socket) => {
      const conn = newConnection(socket, maxMessageBytes, nextPeer++);
      connections.add(conn);
      bySocket.set(socket, conn);
      socket.on('close', () => onClose(conn));
      socket.on('end', () => onEnd(conn));
      admit(conn);
    });
    server.on('data', (data: Buffer, socket: net.Socket) => {
      const conn = bySocket.get(socket);
      if (conn) onData(conn, data);
    });
    server.start();
    // node-ipc creates its net.Server without options; each accepted socket takes this flag from it.
    if (server.server) (server.server as net.Server & { allowHalfOpen: boolean }).allowHalfOpen = true;
  });
  fs.chmodSync(socketPath, 0o600);
  logger?.info('ipc server listening', { socketPath, types: Object.keys(opts.handlers) });

  function send(conn: Connection, frame: ServerFrame): void {
    if (conn.socket.destroyed || !conn.socket.writable) return;
    if (conn.socket.writableLength > maxReplyBufferBytes) {
      logger?.warn('ipc client dropped: it does not read its replies', { peer: conn.peer, unsentBytes: conn.socket.writableLength, maxReplyBufferBytes });
      conn.closing = true;
      conn.socket.destroy();
      return;
    }
    (ipc.server as unknown as NodeIpcServer).emit(conn.socket, encodeFrame(frame));
  }

  function openConnections(): Connection[] {
    return [...connections].filter((c) => !c.closing);
  }

  /** Gives a new connection a slot: a free one, an idle one's, a reserved one, or none. */
  function admit(conn: Connection): void {
    let open = openConnections();
    if (open.length <= maxConnections) return armIdleTimer(conn);
    const idle = open.filter((c) => c !== conn && c.inflight.size === 0 && c.pending.length === 0 && !c.reserved).sort((a, b) => a.idleSince - b.idleSince)[0];
    if (idle) {
      dropConnection(idle, IpcIdleError({ idleTimeoutMs, bufferedBytes: idle.framer.bufferedBytes, evicted: true }).toJSON());
      open = openConnections();
      if (open.length <= maxConnections) return armIdleTimer(conn);
    }
    if (open.length <= maxConnections + reservedConnections) {
      conn.reserved = true;
      return armIdleTimer(conn);
    }
    dropConnection(conn, IpcBusyError({ connections: open.length - 1, maxConnections }).toJSON());
  }

  function armIdleTimer(conn: Connection): void {
    conn.idleSince = Date.now();
    scheduleIdleCheck(conn, idleTimeoutMs);
  }

  /**
   * Frames received are still to be handled (drain holds the socket paused meanwhile): the idle and
   * frame timers' verdicts wait, since what the client sent may be waiting unread.
   */
  function handlingFrames(conn: Connection): boolean {
    return conn.draining || conn.pending.length > 0;
  }

  /**
   * The idle verdict waits one more turn of the event loop, which polls the socket: a daemon whose
   * loop was too busy to read for `idleTimeoutMs` must not take requests still unread in the socket
   * for idleness. A request received meanwhile (even one refused) or frames still to handle move it.
   */
  function scheduleIdleCheck(conn: Connection, delayMs: number): void {
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    conn.idleTimer = setTimeout(() => {
      conn.idleTimer = null;
      setImmediate(() => {
        if (conn.closing || conn.idleTimer || conn.inflight.size > 0) return;
        if (handlingFrames(conn)) return scheduleIdleCheck(conn, Math.min(idleTimeoutMs, 50));
        const quietMs = Date.now() - Math.max(conn.idleSince, conn.lastRequestAt);
        if (quietMs < idleTimeoutMs) return scheduleIdleCheck(conn, idleTimeoutMs - quietMs);
        dropConnection(conn, IpcIdleError({ idleTimeoutMs, bufferedBytes: conn.framer.bufferedBytes, evicted: false }).toJSON());
      });
    }, delayMs);
    conn.idleTimer.unref();
  }

  function onEnd(conn: Connection): void {
    conn.readEnded = true;
    if (conn.framer.bufferedBytes > 0 && !conn.closing) {
      logger?.warn('ipc client closed with a half-written message', { peer: conn.peer, bytes: conn.framer.bufferedBytes });
    }
    endIfDone(conn);
  }

  /** A half-closed client whose last reply is out: close our side too. */
  function endIfDone(conn: Connection): void {
    if (!conn.readEnded || conn.inflight.size > 0 || conn.pending.length > 0 || conn.closing) return;
    conn.closing = true;
    conn.socket.end();
    setTimeout(() => conn.socket.destroy(), 1000).unref();
  }

  function sendError(conn: Connection, id: string | null, error: ReplyError): void {
    const reply: ErrorReply = { v: IPC_PROTOCOL_VERSION, id, ok: false, error };
    send(conn, reply);
  }

  /** Answers a message that cannot be resynchronised, then closes the connection. */
  function dropConnection(conn: Connection, error: ReplyError): void {
    if (conn.closing) return;
    conn.closing = true;
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    logger?.warn('ipc connection dropped', { peer: conn.peer, code: error.code, details: error.details });
    sendError(conn, null, error);
    conn.socket.end();
    setTimeout(() => conn.socket.destroy(), 1000).unref();
  }

  function onData(conn: Connection, data: Buffer): void {
    if (conn.closing) return;
    const { frames, overflowBytes } = conn.framer.push(data);
    conn.framesSeen += frames.length;
    conn.pending.push(...frames);
    if (overflowBytes !== null) conn.overflowBytes = overflowBytes;
    armFrameTimer(conn);
    if (!conn.draining) drain(conn);
  }

  /**
   * Handles a connection's received frames, FRAMES_PER_TURN at a time: with more left, reading
   * from the socket pauses and the rest waits one event-loop turn, so a client that pipelines
   * thousands of requests cannot keep the others waiting. What waits is bounded by one read.
   */
  function drain(conn: Connection): void {
    conn.draining = false;
    if (conn.closing) return;
    for (const frame of conn.pending.splice(0, FRAMES_PER_TURN)) {
      if (conn.closing) return;
      onFrame(conn, frame);
    }
    if (conn.pending.length > 0) {
      conn.draining = true;
      conn.socket.pause();
      setImmediate(() => drain(conn));
      return;
    }
    if (conn.overflowBytes !== null) {
      dropConnection(conn, IpcTooLargeError({ maxMessageBytes, bytes: conn.overflowBytes }).toJSON());
      return;
    }
    if (conn.socket.isPaused()) conn.socket.resume();
    endIfDone(conn);
  }

  /**
   * Runs from the first byte of an unfinished message; more bytes of it do not restart it. Time
   * this side held the socket paused (handling earlier frames of a pipelining client) does not
   * count against the client: the rest of the message may be waiting unread in the socket. So the
   * verdict waits until nothing is pending and one more turn of the event loop (which polls the
   * socket) has passed, and only a message that is still the same unfinished one is refused.
   */
  function armFrameTimer(conn: Connection): void {
    if (conn.framer.bufferedBytes === 0) {
      if (conn.frameTimer) clearTimeout(conn.frameTimer);
      conn.frameTimer = null;
      return;
    }
    if (conn.frameTimer) return;
    startFrameTimer(conn, frameTimeoutMs, conn.framesSeen);
  }

  function startFrameTimer(conn: Connection, delayMs: number, framesAtStart: number): void {
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (conn.frameTimer !== timer) return; // cleared (the message finished) or replaced
        conn.frameTimer = null;
        if (conn.closing || conn.framer.bufferedBytes === 0) return;
        // That message finished; the bytes buffered now began a new one, whose time starts now.
        if (conn.framesSeen !== framesAtStart) return startFrameTimer(conn, frameTimeoutMs, conn.framesSeen);
        if (handlingFrames(conn)) return startFrameTimer(conn, Math.min(frameTimeoutMs, 50), framesAtStart);
        dropConnection(conn, IpcIncompleteError({ bytes: conn.framer.bufferedBytes, frameTimeoutMs }).toJSON());
      });
    }, delayMs);
    timer.unref();
    conn.frameTimer = timer;
  }

  function onClose(conn: Connection): void {
    if (conn.frameTimer) clearTimeout(conn.frameTimer);
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    if (conn.framer.bufferedBytes > 0 && !conn.closing && !conn.readEnded) {
      logger?.warn('ipc client closed with a half-written message', { peer: conn.peer, bytes: conn.framer.bufferedBytes });
    }
    for (const ac of conn.inflight.values()) ac.abort();
    conn.inflight.clear();
    connections.delete(conn);
  }

  function onFrame(conn: Connection, line: string): void {
    if (line.trim() === '') return;
    const checked = checkRequest(line, opts.handlers, validators);
    if (!checked.ok) {
      logger?.warn('ipc message rejected', { peer: conn.peer, code: checked.error.code, details: checked.logDetails });
      sendError(conn, checked.id, checked.error.toJSON());
      return;
    }
    const { req, handler } = checked;
    conn.lastRequestAt = Date.now();
    if (conn.inflight.has(req.id)) {
      sendError(conn, req.id, IpcDuplicateIdError({ id: req.id }).toJSON());
      return;
    }
    if (conn.reserved && !reservedTypes.has(req.type)) {
      const open = openConnections().length;
      logger?.warn('ipc request refused: daemon busy', { peer: conn.peer, code: 'CBT_IPC_BUSY', type: req.type, connections: open });
      sendError(conn, req.id, IpcBusyError({ connections: open, maxConnections, reservedFor: [...reservedTypes] }).toJSON());
      conn.closing = true;
      conn.socket.end();
      setTimeout(() => conn.socket.destroy(), 1000).unref();
      return;
    }
    if (conn.inflight.size >= maxInFlight) {
      const e = IpcTooManyRequestsError({ type: req.type, inFlight: conn.inflight.size, maxInFlight });
      logger?.warn('ipc message rejected', { peer: conn.peer, code: e.code, details: e.details });
      sendError(conn, req.id, e.toJSON());
      return;
    }
    void runHandler(conn, req, handler);
  }

  async function runHandler(conn: Connection, req: RequestEnvelope, handler: IpcHandler): Promise<void> {
    const ac = new AbortController();
    conn.inflight.set(req.id, ac);
    if (conn.idleTimer) clearTimeout(conn.idleTimer);
    conn.idleTimer = null;
    const ctx: IpcHandlerContext = {
      signal: ac.signal,
      progress: (p) => {
        if (!ac.signal.aborted) sendSafely(conn, { v: IPC_PROTOCOL_VERSION, id: req.id, progress: p }, req);
      },
    };
    try {
      const result = await traced(`ipcd.${req.type}`, () => handler.handle(req.payload as never, ctx));
      sendSafely(conn, { v: IPC_PROTOCOL_VERSION, id: req.id, ok: true, result: result === undefined ? null : result }, req);
    } catch (err) {
      if (closed && ac.signal.aborted) {
        sendError(conn, req.id, IpcShuttingDownError({ type: req.type }).toJSON());
      } else if (isCbtError(err)) {
        sendError(conn, req.id, err.toJSON());
      } else {
        const e = IpcHandlerFailedError({ type: req.type, reason: err instanceof Error ? err.message : String(err) }, err);
        logger?.error('ipc handler failed', { peer: conn.peer, type: req.type, error: err instanceof Error ? err.stack : String(err) });
        sendError(conn, req.id, e.toJSON());
      }
    } finally {
      conn.inflight.delete(req.id);
      if (conn.inflight.size === 0 && !conn.closing) {
        armIdleTimer(conn);
        endIfDone(conn);
      }
    }
  }

  /** Serialises before sending so that an unserialisable result becomes an error reply, not a crash. */
  function sendSafely(conn: Connection, frame: ServerFrame, req: RequestEnvelope): void {
    try {
      JSON.stringify(frame);
    } catch (err) {
      const e = IpcHandlerFailedError({ type: req.type, reason: `reply not serialisable: ${(err as Error).message}` });
      logger?.error('ipc reply not serialisable', { peer: conn.peer, type: req.type });
      sendError(conn, req.id, e.toJSON());
      return;
    }
    send(conn, frame);
  }

  return {
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const server = (ipc.server as unknown as NodeIpcServer).server;
      const done = new Promise<void>((resolve) => {
        if (!server || !server.listening) resolve();
        else server.close(() => resolve());
      });
      for (const conn of connections) for (const ac of conn.inflight.values()) ac.abort();
      // Let cancelled handlers answer before the sockets go.
      await new Promise((r) => setImmediate(r));
      // Wait for every socket's close handler too: after close() returns the caller may close the
      // logger those handlers write to.
      const socketsClosed = [...connections].map((conn) => {
        conn.closing = true;
        const closedOnce = new Promise<void>((r) => conn.socket.once('close', () => r()));
        conn.socket.destroy();
        return conn.socket.closed ? Promise.resolve() : closedOnce;
      });
      await Promise.all([done, ...socketsClosed]);
      fs.rmSync(socketPath, { force: true });
      logger?.info('ipc server closed', { socketPath });
    },
  };
}
