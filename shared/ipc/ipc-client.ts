/**
 * One request over pve-cbt's control socket (see ipc-server.ts for the protocol): connect with
 * node-ipc (raw buffer mode, no reconnect), send one envelope, pass progress frames to `onProgress`,
 * resolve with the final result or reject with the server's error code, then disconnect.
 *
 * Used by the CLI and by the hooks, so it must stay light: no ajv, winston or SQLite here.
 */
import { randomUUID } from 'node:crypto';
import nodeIpc from 'node-ipc';
import { CbtError } from '../errors/cbt-error';
import {
  IpcAbortedError,
  IpcBadReplyError,
  IpcConnectionLostError,
  IpcTimeoutError,
  IpcUnavailableError,
} from './ipc-errors';
import { DEFAULT_MAX_REPLY_BYTES, LineFramer, encodeFrame } from './line-framer';
import type { RequestEnvelope, ServerFrame } from './messages';
import { IPC_PROTOCOL_VERSION } from './messages';
import { traceNow, traceSince } from '../trace/trace-spans';

export interface IpcRequestOptions {
  /** Bound on the whole exchange: connect, request and final reply. */
  timeoutMs: number;
  onProgress?: (progress: unknown) => void;
  signal?: AbortSignal;
  maxReplyBytes?: number;
}

interface RawClient {
  on(event: string, cb: (...args: never[]) => void): void;
  socket: { write(data: string): boolean; destroyed: boolean } | false;
}

const SERVICE_ID = 'pve-cbt';

export function ipcRequest<R = unknown>(
  socketPath: string,
  type: string,
  payload: unknown,
  opts: IpcRequestOptions,
): Promise<R> {
  const ipc = new nodeIpc.IPC();
  Object.assign(ipc.config, {
    silent: true,
    rawBuffer: true,
    encoding: 'utf8',
    maxRetries: 0,
    stopRetrying: true,
  });
  const id = randomUUID();
  const framer = new LineFramer(opts.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES);
  const t0 = traceNow();

  return new Promise<R>((resolve, reject) => {
    let settled = false;
    let connected = false;
    const finish = (err: Error | null, result?: unknown): void => {
      if (settled) return;
      settled = true;
      traceSince(`ipc.${type}`, t0);
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      ipc.disconnect(SERVICE_ID);
      if (err) reject(err);
      else resolve(result as R);
    };
    const timer = setTimeout(
      () => finish(IpcTimeoutError({ socketPath, type, timeoutMs: opts.timeoutMs })),
      opts.timeoutMs,
    );
    const onAbort = (): void => finish(IpcAbortedError({ socketPath, type }));
    if (opts.signal?.aborted) {
      onAbort();
      return;
    }
    opts.signal?.addEventListener('abort', onAbort);

    ipc.connectTo(SERVICE_ID, socketPath);
    const client = ipc.of[SERVICE_ID] as unknown as RawClient;
    client.on('connect', () => {
      connected = true;
      traceSince('ipc.connect', t0);
      const req: RequestEnvelope = { v: IPC_PROTOCOL_VERSION, id, type, payload };
      if (client.socket && !client.socket.destroyed) client.socket.write(encodeFrame(req));
    });
    client.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) finish(IpcUnavailableError({ socketPath, errno: err.code ?? err.message }, err));
    });
    client.on('disconnect', () => {
      finish(connected ? IpcConnectionLostError({ socketPath, type }) : IpcUnavailableError({ socketPath, errno: 'ECONNRESET' }));
    });
    client.on('data', (data: Buffer) => {
      const { frames, overflowBytes } = framer.push(data);
      for (const line of frames) {
        if (settled) return;
        onLine(line);
      }
      if (overflowBytes !== null) finish(IpcBadReplyError({ socketPath, reason: `reply larger than ${overflowBytes} bytes` }));
    });

    function onLine(line: string): void {
      let frame: ServerFrame;
      try {
        frame = JSON.parse(line) as ServerFrame;
      } catch (err) {
        finish(IpcBadReplyError({ socketPath, reason: (err as Error).message }));
        return;
      }
      if (typeof frame !== 'object' || frame === null) {
        finish(IpcBadReplyError({ socketPath, reason: 'reply is not an object' }));
        return;
      }
      // A reply with id null answers a request the server could not read: ours, since we send one.
      if (frame.id !== id && frame.id !== null) return;
      if ('progress' in frame) {
        try {
          opts.onProgress?.(frame.progress);
        } catch (err) {
          finish(err as Error);
        }
        return;
      }
      if (frame.ok === true) finish(null, frame.result);
      else if (frame.ok === false && frame.error && typeof frame.error.code === 'string') {
        finish(new CbtError(frame.error.code, String(frame.error.message), frame.error.details ?? {}));
      } else finish(IpcBadReplyError({ socketPath, reason: 'reply has neither result nor error' }));
    }
  });
}
