/**
 * NBD client for one connection (unix socket or TCP), read-only: block status and reads.
 * Structured replies are required (negotiated in handshake.ts): they carry holes, errors with
 * offsets, and block status; a server without them is refused with CBT_NBD_OPTION_REFUSED.
 *
 * Receiving (the socket itself is nbd-transport.ts): the socket reads into buffers we choose
 * (`onread`). Headers are received on their own (a few bytes), and while an OFFSET_DATA payload is
 * arriving the kernel writes straight into the read's destination buffer, so read data is never
 * copied in user space. Small payloads (block status, errors) go through a scratch buffer into the
 * reply parser.
 *
 * Sending: reads are split into requests of at most `maxRequestSize`; up to `maxInFlight` are
 * outstanding, the rest queue locally and are refilled in batches (one socket write for many
 * request headers) whenever half the window has drained.
 *
 * Timeouts: every wait (each handshake step, the socket connect, outstanding requests) fails with
 * CBT_NBD_TIMEOUT when nothing arrives from the server for `timeoutMs`; the connection is then
 * destroyed and every outstanding request rejected. A request never stays pending after the socket is
 * gone: any failure rejects all of them with the same typed error.
 */
import type net from 'node:net';
import type { Logger } from 'winston';
import { type Extent, clipExtents, descriptorsToExtents, mergeExtents, splitRange } from './extent';
import { type ExportInfo, negotiate } from './handshake';
import {
  NBD_CMD_BLOCK_STATUS,
  NBD_CMD_DISC,
  NBD_CMD_READ,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_ESHUTDOWN,
  NBD_FLAG_READ_ONLY,
  STRUCTURED_REPLY_SIZE,
  errnoName,
} from './nbd-constants';
import {
  NbdDisconnectedError,
  NbdNoContextError,
  NbdOutOfRangeError,
  NbdProtocolError,
  NbdServerError,
  NbdShortReadError,
  NbdTimeoutError,
} from './nbd-errors';
import { ReplyParser, type ReplyResult, type ReplyTarget } from './reply-parser';
import { type RequestHeader, encodeRequests } from './request-codec';
import { Transport, type TransportClient } from './nbd-transport';

export interface NbdConnectOptions {
  socketPath?: string;
  host?: string;
  port?: number;
  exportName?: string;
  /** e.g. ['base:allocation', 'qemu:dirty-bitmap:pve-cbt-...'] */
  metaContexts?: string[];
  /** Bound for every wait on the server, default 30000. */
  timeoutMs?: number;
  /** Requests outstanding at once on this connection, default 64. */
  maxInFlight?: number;
  /**
   * Largest NBD_CMD_READ sent (default 512 KiB, never above the server's maximum block size). Larger
   * reads are split: QEMU serves moderate requests more cheaply (it allocates a bounce buffer per
   * request), and the pieces are pipelined anyway.
   */
  maxRequestSize?: number;
  logger?: Logger;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
export const DEFAULT_MAX_IN_FLIGHT = 64;
export const DEFAULT_MAX_REQUEST_SIZE = 512 * 1024;
/** Below this, the rest of a data payload is received into scratch together with the next header. */
const DIRECT_READ_MIN = 4 * 1024;
/** BLOCK_STATUS length is 32 bits; ask for at most this much (a multiple of any block size) at once. */
const MAX_STATUS_REQUEST = 0x8000_0000;

interface Request extends ReplyTarget {
  type: number;
  cookie: number;
  context?: { name: string; id: number };
  resolve: (result: ReplyResult) => void;
  reject: (err: unknown) => void;
}

export class NbdClient implements TransportClient {
  readonly size: number;
  readonly canMultiConn: boolean;
  readonly readOnly: boolean;
  readonly maxBlockSize: number;
  readonly minBlockSize: number;
  readonly preferredBlockSize: number;
  readonly transmissionFlags: number;

  private readonly contexts: Map<string, number>;
  private readonly parser: ReplyParser;
  private readonly inFlight = new Map<number, Request>();
  private readonly queued: Request[] = [];
  private readonly outbox: RequestHeader[] = [];
  private flushScheduled = false;
  private nextCookie = 1;
  private failure: Error | undefined;
  private closing = false;
  private watchdog: NodeJS.Timeout | undefined;
  private watchdogRecheck: NodeJS.Immediate | undefined;
  private lastActivity = Date.now();
  private idleWaiters: Array<() => void> = [];

  private constructor(
    private readonly socket: net.Socket,
    private readonly io: Transport,
    info: ExportInfo,
    private readonly timeoutMs: number,
    private readonly maxInFlight: number,
    private readonly maxRequestSize: number,
    private readonly logger?: Logger,
  ) {
    this.size = info.size;
    this.transmissionFlags = info.transmissionFlags;
    this.canMultiConn = (info.transmissionFlags & NBD_FLAG_CAN_MULTI_CONN) !== 0;
    this.readOnly = (info.transmissionFlags & NBD_FLAG_READ_ONLY) !== 0;
    this.minBlockSize = info.minBlockSize;
    this.preferredBlockSize = info.preferredBlockSize;
    this.maxBlockSize = info.maxBlockSize;
    this.contexts = info.contexts;
    this.parser = new ReplyParser({
      target: (cookie) => this.inFlight.get(cookie),
      complete: (cookie, result) => this.complete(cookie, result),
    });
    io.attach(this);
  }

  static async connect(opts: NbdConnectOptions): Promise<NbdClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const target = opts.socketPath ?? `${opts.host ?? 'localhost'}:${opts.port ?? 10809}`;
    const io = new Transport(timeoutMs);
    const socket = await io.open(opts, target);
    try {
      const info = await negotiate(io, opts.exportName ?? '', opts.metaContexts ?? []);
      const maxRequest = Math.max(info.minBlockSize, Math.min(info.maxBlockSize, opts.maxRequestSize ?? DEFAULT_MAX_REQUEST_SIZE));
      const client = new NbdClient(socket, io, info, timeoutMs, opts.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT, maxRequest, opts.logger);
      opts.logger?.debug('nbd connected', { target, size: info.size, contexts: [...info.contexts.keys()] });
      return client;
    } catch (err) {
      socket.destroy();
      throw err;
    }
  }

  /** Negotiated metadata context names. */
  get contextNames(): string[] {
    return [...this.contexts.keys()];
  }

  hasContext(name: string): boolean {
    return this.contexts.has(name);
  }

  /** Extents covering exactly [offset, offset + length), merged; loops while the server answers less. */
  async blockStatus(context: string, offset: number, length: number): Promise<Extent[]> {
    const id = this.contexts.get(context);
    if (id === undefined) throw NbdNoContextError({ context, available: this.contextNames });
    this.checkRange(offset, length);
    const [start, end] = this.alignOut(offset, length);
    const out: Extent[] = [];
    let at = start;
    while (at < end) {
      const reqLength = Math.min(end - at, MAX_STATUS_REQUEST);
      const result = await this.submit({ kind: 'block-status', type: NBD_CMD_BLOCK_STATUS, offset: at, length: reqLength, context: { name: context, id } });
      const descriptors = result.blockStatus.get(id);
      if (!descriptors) {
        throw NbdProtocolError({ reason: 'block status reply without a chunk for the context', context, offset: at });
      }
      const extents = clipExtents(descriptorsToExtents(at, descriptors), at, end - at);
      for (const e of extents) out.push(e);
      at = (extents[extents.length - 1] as Extent).offset + (extents[extents.length - 1] as Extent).length;
    }
    return mergeExtents(clipExtents(out, offset, length));
  }

  /** Reads [offset, offset + length); holes read as zeroes. */
  async read(offset: number, length: number): Promise<Buffer> {
    const dest = Buffer.allocUnsafe(length);
    await this.readInto(offset, dest);
    return dest;
  }

  /** Reads `dest.length` bytes at `offset` into `dest`, split into pipelined requests of at most maxBlockSize. */
  async readInto(offset: number, dest: Buffer): Promise<void> {
    this.checkRange(offset, dest.length);
    const [start, end] = this.alignOut(offset, dest.length);
    if (start !== offset || end !== offset + dest.length) {
      // The server's minimum block size forbids this range: read the aligned cover, copy out.
      const cover = Buffer.allocUnsafe(end - start);
      await this.readInto(start, cover);
      cover.copy(dest, 0, offset - start, offset - start + dest.length);
      return;
    }
    const pieces = splitRange(offset, dest.length, this.maxRequestSize, this.preferredBlockSize);
    await Promise.all(
      pieces.map((p) =>
        this.submit({ kind: 'read', type: NBD_CMD_READ, offset: p.offset, length: p.length, dest: dest.subarray(p.offset - offset, p.offset - offset + p.length) }),
      ),
    );
  }

  /** Waits for outstanding requests, sends NBD_CMD_DISC and closes the socket. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.inFlight.size + this.queued.length > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (!this.failure && !this.socket.destroyed) {
      this.socket.write(encodeRequests([{ flags: 0, type: NBD_CMD_DISC, cookie: 0, offset: 0, length: 0 }]));
      this.socket.end();
      await this.io.closed(this.timeoutMs);
    }
    this.fail(NbdDisconnectedError({ reason: 'client closed the connection' }));
    this.socket.destroy();
  }

  /** Tears the connection down at once, rejecting everything outstanding with `reason`. */
  destroy(reason: Error = NbdDisconnectedError({ reason: 'client aborted' })): void {
    this.closing = true;
    this.fail(reason);
    this.socket.destroy();
  }

  /** Called by the transport for every received chunk in transmission phase. */
  onData(chunk: Buffer): void {
    this.lastActivity = Date.now();
    try {
      this.parser.push(chunk);
    } catch (err) {
      this.logger?.warn('nbd protocol error', { error: (err as Error).message });
      this.fail(err as Error);
      this.socket.destroy();
    }
  }

  /**
   * Where the transport should receive next: the read destination while data is expected (the
   * kernel copies straight into it), otherwise as much of the scratch buffer as the reply parser can
   * use before the next data payload starts.
   */
  nextReadBuffer(scratch: Buffer): Buffer {
    const t = this.parser.dataTarget();
    if (t && t.length >= DIRECT_READ_MIN) return t;
    const want = this.parser.bytesWanted() + (t ? STRUCTURED_REPLY_SIZE + 8 : 0);
    return want < scratch.length ? scratch.subarray(0, want) : scratch;
  }

  /** Called by the transport when the socket is gone. */
  onClosed(err: Error | undefined): void {
    const pending = this.inFlight.size + this.queued.length;
    this.fail(
      NbdDisconnectedError(
        { reason: this.closing ? 'client closed the connection' : err ? err.message : 'server closed the connection', pending },
        err,
      ),
    );
  }

  /** [offset, offset + length) widened to the server's minimum block size (the export end may be unaligned). */
  private alignOut(offset: number, length: number): [number, number] {
    const m = this.minBlockSize;
    return [offset - (offset % m), Math.min(this.size, Math.ceil((offset + length) / m) * m)];
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw NbdOutOfRangeError({ offset, length, size: this.size });
    }
  }

  private submit(spec: Omit<Request, 'cookie' | 'resolve' | 'reject'>): Promise<ReplyResult> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(NbdDisconnectedError({ reason: 'client closed the connection' }));
    return new Promise<ReplyResult>((resolve, reject) => {
      const req: Request = { ...spec, cookie: 0, resolve, reject };
      if (this.inFlight.size < this.maxInFlight) this.send(req);
      else this.queued.push(req);
    }).then((result) => this.check(spec, result));
  }

  private send(req: Request): void {
    while (this.inFlight.has(this.nextCookie) || this.nextCookie === 0) this.nextCookie = (this.nextCookie + 1) >>> 0;
    req.cookie = this.nextCookie;
    this.nextCookie = (this.nextCookie + 1) >>> 0;
    if (this.inFlight.size === 0) this.lastActivity = Date.now();
    this.inFlight.set(req.cookie, req);
    this.outbox.push({ flags: 0, type: req.type, cookie: req.cookie, offset: req.offset, length: req.length });
    this.armWatchdog();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.outbox.length === 0 || this.failure) return;
    const batch = encodeRequests(this.outbox.splice(0));
    this.socket.write(batch);
  }

  private complete(cookie: number, result: ReplyResult): void {
    const req = this.inFlight.get(cookie);
    if (!req) return;
    this.inFlight.delete(cookie);
    // Refill in batches (one write for many requests) once half the window has drained.
    if (this.inFlight.size <= this.maxInFlight / 2) {
      while (this.queued.length > 0 && this.inFlight.size < this.maxInFlight) this.send(this.queued.shift() as Request);
    }
    req.resolve(result);
    if (this.inFlight.size === 0) {
      this.disarmWatchdog();
      this.notifyIdle();
    }
  }

  private notifyIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  private check(spec: Omit<Request, 'cookie' | 'resolve' | 'reject'>, result: ReplyResult): ReplyResult {
    const first = result.errors[0];
    if (first?.errno === NBD_ESHUTDOWN) this.close().catch(() => undefined);
    if (first) {
      throw NbdServerError({
        command: spec.kind === 'read' ? 'NBD_CMD_READ' : `NBD_CMD_BLOCK_STATUS(${spec.context?.name ?? ''})`,
        errno: errnoName(first.errno),
        errnoValue: first.errno,
        offset: first.offset ?? spec.offset,
        length: spec.length,
        message: first.message,
      });
    }
    if (spec.kind === 'read' && result.covered !== spec.length) {
      throw NbdShortReadError({ offset: spec.offset, length: spec.length, received: result.covered });
    }
    return result;
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    this.disarmWatchdog();
    const all = [...this.inFlight.values(), ...this.queued];
    this.inFlight.clear();
    this.queued.length = 0;
    this.outbox.length = 0;
    for (const r of all) r.reject(this.failure);
    this.notifyIdle();
  }

  private armWatchdog(): void {
    if (this.watchdog || this.watchdogRecheck) return;
    this.watchdog = setTimeout(() => this.watchdogTick(), this.timeoutMs);
  }

  private watchdogTick(): void {
    this.watchdog = undefined;
    if (this.inFlight.size === 0 || this.failure) return;
    const idle = Date.now() - this.lastActivity;
    if (idle < this.timeoutMs) {
      this.watchdog = setTimeout(() => this.watchdogTick(), this.timeoutMs - idle);
      return;
    }
    // Timers run before I/O polling: after our own event loop was blocked, replies may already be
    // waiting in the socket. Look once more after the poll phase before declaring the server dead.
    this.watchdogRecheck = setImmediate(() => {
      this.watchdogRecheck = undefined;
      if (this.inFlight.size === 0 || this.failure) return;
      if (Date.now() - this.lastActivity < this.timeoutMs) {
        this.armWatchdog();
        return;
      }
      this.fail(NbdTimeoutError({ waitingFor: `${this.inFlight.size} outstanding replies`, timeoutMs: this.timeoutMs }));
      this.socket.destroy();
    });
  }

  private disarmWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    if (this.watchdogRecheck) clearImmediate(this.watchdogRecheck);
    this.watchdog = undefined;
    this.watchdogRecheck = undefined;
  }
}
