/**
 * A QMP (QEMU Machine Protocol) client over a unix socket.
 *
 * Wire format: one JSON object per line. QEMU first sends a greeting `{"QMP": {...}}`; the client
 * must send `qmp_capabilities` before anything else. Commands are `{"execute", "arguments", "id"}`;
 * replies carry the same `id` with either `return` or `error: {class, desc}`. Asynchronous
 * `{"event", "data", "timestamp"}` lines may arrive at any time, also between a command and its reply.
 *
 * Busy sockets: QEMU serves ONE client per QMP socket. A second client's connect() succeeds (the
 * kernel queues it in the listen backlog) but no greeting arrives until the first client leaves.
 * qemu-server (Proxmox) needs the socket back quickly, so `connect` waits only `greetingTimeoutMs`
 * per attempt, then drops its place and retries with exponential back-off, and callers keep
 * sessions short (see qmp-session.ts).
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { Logger } from 'winston';
import {
  QmpBusyError,
  QmpCommandError,
  QmpConnectError,
  QmpDisconnectedError,
  QmpProtocolError,
  QmpTimeoutError,
} from './qmp-errors';
import { noteQmp } from './qmp-transcript';
import { traceNow, traceOn, traceSince } from '../../shared/trace/trace-spans';

export interface QmpEvent {
  event: string;
  data?: any;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /** Default per-command reply timeout. */
  timeoutMs?: number;
  /** How many times to try to get the greeting before giving up with CBT_QMP_BUSY / CBT_QMP_CONNECT. */
  connectAttempts?: number;
  /** Back-off before attempt n+1 is retryBaseDelayMs * 2^(n-1), at most maxRetryDelayMs. */
  retryBaseDelayMs?: number;
  maxRetryDelayMs?: number;
  /** How long one attempt waits for QEMU's greeting before it assumes another client holds the socket. */
  greetingTimeoutMs?: number;
  logger?: Logger;
}

export interface QmpGreeting {
  QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string }; capabilities: string[] };
}

const DEFAULTS = { timeoutMs: 10_000, connectAttempts: 5, retryBaseDelayMs: 100, maxRetryDelayMs: 2_000, greetingTimeoutMs: 1_000 };

interface Pending {
  command: string;
  resolve: (value: any) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

type AttemptResult =
  | { kind: 'ok'; client: QmpClient }
  | { kind: 'busy'; reason: string }
  | { kind: 'unreachable'; reason: string; retry: boolean }
  | { kind: 'fatal'; error: Error };

export class QmpClient {
  readonly socketPath: string;
  private readonly socket: net.Socket;
  private readonly emitter = new EventEmitter();
  private readonly pending = new Map<string, Pending>();
  private readonly defaultTimeoutMs: number;
  private readonly logger?: Logger;
  private buffer = '';
  private nextId = 0;
  private closedReason: string | undefined;
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: Error) => void } | undefined;
  private greetingValue: QmpGreeting | undefined;

  private constructor(socket: net.Socket, socketPath: string, timeoutMs: number, logger?: Logger) {
    this.socket = socket;
    this.socketPath = socketPath;
    this.defaultTimeoutMs = timeoutMs;
    this.logger = logger;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.teardown(`socket error: ${err.message}`));
    socket.on('close', () => this.teardown('QEMU closed the connection'));
  }

  /** Connects, waits for the greeting and negotiates capabilities; retries while the socket is busy. */
  static async connect(socketPath: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const t0 = traceOn() ? traceNow() : 0;
    const attempts = Math.max(1, opts.connectAttempts ?? DEFAULTS.connectAttempts);
    const baseDelay = opts.retryBaseDelayMs ?? DEFAULTS.retryBaseDelayMs;
    const maxDelay = opts.maxRetryDelayMs ?? DEFAULTS.maxRetryDelayMs;
    let last: AttemptResult | undefined;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      last = await QmpClient.attempt(socketPath, opts);
      if (last.kind === 'ok') {
        try {
          await last.client.execute('qmp_capabilities');
        } catch (err) {
          last.client.socket.destroy();
          throw err;
        }
        if (t0) traceSince('qmp.connect', t0);
        return last.client;
      }
      // Something that is not a QMP server answered: retrying will not change that.
      if (last.kind === 'fatal') throw last.error;
      opts.logger?.debug('qmp connect attempt failed', { socketPath, attempt, reason: last.reason });
      if (last.kind === 'unreachable' && !last.retry) break;
      if (attempt < attempts) await sleep(Math.min(maxDelay, baseDelay * 2 ** (attempt - 1)));
    }
    if (last?.kind === 'busy') throw QmpBusyError({ socketPath, attempts });
    throw QmpConnectError({ socketPath, attempts, reason: last?.kind === 'unreachable' ? last.reason : 'unknown' });
  }

  private static attempt(socketPath: string, opts: QmpConnectOptions): Promise<AttemptResult> {
    const greetingTimeoutMs = opts.greetingTimeoutMs ?? DEFAULTS.greetingTimeoutMs;
    return new Promise((resolve) => {
      const socket = net.createConnection(socketPath);
      const client = new QmpClient(socket, socketPath, opts.timeoutMs ?? DEFAULTS.timeoutMs, opts.logger);
      let settled = false;
      const finish = (r: AttemptResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (r.kind !== 'ok') socket.destroy();
        resolve(r);
      };
      const timer = setTimeout(
        () => finish({ kind: 'busy', reason: `no greeting within ${greetingTimeoutMs} ms` }),
        greetingTimeoutMs,
      );
      socket.once('error', (err: NodeJS.ErrnoException) => {
        if (err.code === 'EAGAIN') finish({ kind: 'busy', reason: 'listen backlog full (EAGAIN)' });
        // ENOENT: no socket file, QEMU is not running: retrying will not help.
        else finish({ kind: 'unreachable', reason: `${err.code ?? ''} ${err.message}`.trim(), retry: err.code !== 'ENOENT' });
      });
      client
        .waitGreeting()
        .then(() => finish({ kind: 'ok', client }))
        .catch((err: Error) => {
          if (QmpProtocolError.is(err)) finish({ kind: 'fatal', error: err });
          else finish({ kind: 'unreachable', reason: err.message, retry: true });
        });
    });
  }

  /** The greeting QEMU sent (version and capabilities). */
  get greeting(): QmpGreeting {
    if (!this.greetingValue) throw QmpProtocolError({ socketPath: this.socketPath, reason: 'no greeting received' });
    return this.greetingValue;
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Runs one command; the reply is matched by id, events arriving meanwhile go to listeners. */
  execute<T = any>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closedReason !== undefined) {
      return Promise.reject(QmpDisconnectedError({ socketPath: this.socketPath, command, reason: this.closedReason }));
    }
    const id = `cbt-${++this.nextId}`;
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
    this.logger?.debug('qmp command', { socketPath: this.socketPath, command, id, arguments: args });
    const reply = new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(QmpTimeoutError({ socketPath: this.socketPath, command, timeoutMs }));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      const line = JSON.stringify(message);
      noteQmp(this.socketPath, '->', line);
      this.socket.write(`${line}\n`);
    });
    if (!traceOn() || command === 'qmp_capabilities') return reply;
    const t0 = traceNow();
    const end = (): void => traceSince(`qmp.${command}`, t0);
    reply.then(end, end);
    return reply;
  }

  on(event: 'event', listener: (ev: QmpEvent) => void): this;
  on(event: 'close', listener: (reason: string) => void): this;
  on(event: 'event' | 'close', listener: (arg: any) => void): this {
    this.emitter.on(event, listener);
    return this;
  }

  off(event: 'event' | 'close', listener: (arg: any) => void): this {
    this.emitter.off(event, listener);
    return this;
  }

  /** Ends the session; pending commands fail with CBT_QMP_DISCONNECTED. Safe to call twice. */
  async close(): Promise<void> {
    if (this.socket.destroyed) {
      this.teardown('closed by client');
      return;
    }
    const closed = new Promise<void>((resolve) => this.socket.once('close', () => resolve()));
    this.teardown('closed by client');
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), 1_000);
    await closed;
    clearTimeout(timer);
  }

  private waitGreeting(): Promise<QmpGreeting> {
    if (this.greetingValue) return Promise.resolve(this.greetingValue);
    return new Promise((resolve, reject) => {
      this.greetingWaiter = { resolve, reject };
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (line.length > 0) {
        noteQmp(this.socketPath, '<-', line);
        this.onLine(line);
      }
      if (this.closedReason !== undefined) return;
    }
  }

  private onLine(line: string): void {
    let msg: any;
    try {
      msg = JSON.parse(line);
    } catch {
      this.protocolViolation('reply is not JSON', line);
      return;
    }
    if (msg === null || typeof msg !== 'object') {
      this.protocolViolation('reply is not a JSON object', line);
      return;
    }
    if (!this.greetingValue) {
      if (!('QMP' in msg)) {
        // QEMU's socket chardev can hand the previous session's last output (an event, or the reply
        // to a command sent just before that client closed) to the next client ahead of the greeting
        // (seen on QEMU 10 after a snapshot-save job). It belongs to nobody now: skip it.
        if ('event' in msg || 'return' in msg || 'error' in msg) {
          this.logger?.debug('qmp output of a previous session before the greeting, skipped', { socketPath: this.socketPath, line: line.slice(0, 200) });
          return;
        }
        this.protocolViolation('first line is not a QMP greeting', line);
        return;
      }
      this.greetingValue = msg as QmpGreeting;
      this.greetingWaiter?.resolve(this.greetingValue);
      this.greetingWaiter = undefined;
      return;
    }
    if (typeof msg.event === 'string') {
      this.emitter.emit('event', msg as QmpEvent);
      return;
    }
    const pending = typeof msg.id === 'string' ? this.pending.get(msg.id) : undefined;
    if (!pending) {
      // A reply to a command that already timed out, or an error for a line QEMU could not parse.
      this.logger?.debug('qmp reply without pending command', { socketPath: this.socketPath, line });
      return;
    }
    this.pending.delete(msg.id);
    clearTimeout(pending.timer);
    if ('error' in msg) {
      const errorClass = String(msg.error?.class ?? 'unknown');
      const desc = String(msg.error?.desc ?? '');
      this.logger?.debug('qmp error', { socketPath: this.socketPath, command: pending.command, errorClass, desc });
      pending.reject(QmpCommandError({ socketPath: this.socketPath, command: pending.command, errorClass, desc }));
    } else if ('return' in msg) {
      pending.resolve(msg.return);
    } else {
      pending.reject(QmpProtocolError({ socketPath: this.socketPath, reason: 'reply has neither return nor error', line }));
    }
  }

  private protocolViolation(reason: string, line: string): void {
    const err = QmpProtocolError({ socketPath: this.socketPath, reason, line: line.slice(0, 200) });
    this.greetingWaiter?.reject(err);
    this.greetingWaiter = undefined;
    this.failPending(() => err);
    this.teardown(reason);
    this.socket.destroy();
  }

  private failPending(make: (command: string) => Error): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.reject(make(p.command));
    }
  }

  private teardown(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    noteQmp(this.socketPath, '--', `disconnected: ${reason}`);
    this.greetingWaiter?.reject(QmpDisconnectedError({ socketPath: this.socketPath, reason }));
    this.greetingWaiter = undefined;
    this.failPending((command) => QmpDisconnectedError({ socketPath: this.socketPath, command, reason }));
    this.emitter.emit('close', reason);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
