/**
 * The NBD client's socket (nbd-client.ts): connects with a timeout, and owns the receive path.
 * During the handshake received bytes go to a ByteQueue (handshake.ts reads them with
 * `readExact`); once the client is attached, each chunk goes to the client's reply parser, received
 * into the buffer the client asks for (`nextReadBuffer`: a read's destination, so data is never
 * copied in user space, or a scratch buffer for headers and small payloads).
 */
import net from 'node:net';
import { ByteQueue } from './byte-queue';
import { NbdConnectError, NbdDisconnectedError, NbdTimeoutError } from './nbd-errors';

const SCRATCH_SIZE = 256 * 1024;

/** Where the server listens: a unix socket, or host and port (default localhost:10809). */
export interface SocketAddress {
  socketPath?: string;
  host?: string;
  port?: number;
}

/** What the transport hands the attached client (NbdClient implements it). */
export interface TransportClient {
  nextReadBuffer(scratch: Buffer): Buffer;
  onData(chunk: Buffer): void;
  onClosed(err: Error | undefined): void;
}

/**
 * Owns the socket's receive path: during the handshake received bytes go to a ByteQueue; once the
 * client is attached, to the client's reply parser, receiving into the buffer the client asks for.
 */
export class Transport {
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
  private readonly queue: ByteQueue;
  private client: TransportClient | undefined;
  private socket: net.Socket | undefined;
  private closePromise: Promise<void> | undefined;
  private lastError: Error | undefined;

  constructor(private readonly timeoutMs: number) {
    this.queue = new ByteQueue(timeoutMs, () => this.socket?.destroy());
  }

  open(opts: SocketAddress, target: string): Promise<net.Socket> {
    const onread = {
      buffer: (): Buffer => this.client?.nextReadBuffer(this.scratch) ?? this.scratch,
      callback: (n: number, buf: Uint8Array): boolean => {
        const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
        if (this.client) this.client.onData(chunk);
        else this.queue.push(Buffer.from(chunk));
        return true;
      },
    };
    const socket = opts.socketPath
      ? net.connect({ path: opts.socketPath, onread })
      : net.connect({ host: opts.host ?? 'localhost', port: opts.port ?? 10809, onread });
    this.socket = socket;
    this.closePromise = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    return new Promise<net.Socket>((resolve, reject) => {
      let settled = false;
      const settle = (err?: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(socket);
      };
      const timer = setTimeout(() => {
        settle(NbdTimeoutError({ waitingFor: `connect to ${target}`, timeoutMs: this.timeoutMs }));
        socket.destroy();
      }, this.timeoutMs);
      socket.once('connect', () => {
        socket.setNoDelay(true);
        settle();
      });
      socket.on('error', (err) => {
        this.lastError = err;
        settle(NbdConnectError({ target, reason: err.message }, err));
      });
      socket.once('close', () => {
        const err = this.lastError;
        settle(NbdConnectError({ target, reason: err?.message ?? 'connection closed' }, err));
        if (this.client) this.client.onClosed(err);
        else this.queue.fail(NbdDisconnectedError({ reason: err ? err.message : 'server closed the connection during the handshake' }, err));
      });
    });
  }

  attach(client: TransportClient): void {
    this.client = client;
    for (const chunk of this.queue.drain()) client.onData(chunk);
  }

  readExact(length: number, what: string): Promise<Buffer> {
    return this.queue.readExact(length, what);
  }

  write(data: Buffer): void {
    this.socket?.write(data);
  }

  /** Resolves when the socket has closed, or after `timeoutMs`. */
  async closed(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.closePromise, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }
}
