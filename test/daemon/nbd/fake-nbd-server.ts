/**
 * A scriptable NBD server for robustness tests: a correct fixed-newstyle handshake (or a scripted
 * broken one), then every request is handed to the test's `onRequest`, which answers as it likes
 * (correctly, out of order, with garbage, never, or by closing the socket).
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { greeting, infoBlockSize, infoExport, metaContext, optionReply } from './nbd-wire';

export interface FakeRequest {
  flags: number;
  type: number;
  cookie: number;
  offset: number;
  length: number;
}

export interface FakeServerOptions {
  size?: number;
  transmissionFlags?: number;
  blockSize?: [number, number, number];
  contexts?: string[];
  /** Replaces the handshake entirely (e.g. to send garbage or nothing). */
  onConnect?: (sock: net.Socket) => void;
  /** Answer for an option instead of the default; return undefined for the default. */
  onOption?: (option: number, sock: net.Socket) => boolean | undefined;
  onRequest?: (req: FakeRequest, sock: net.Socket) => void;
}

export interface FakeServer {
  socketPath: string;
  connections: number;
  requests: FakeRequest[];
  sockets: Set<net.Socket>;
  close(): Promise<void>;
}

export async function startFakeServer(dir: string, opts: FakeServerOptions): Promise<FakeServer> {
  const socketPath = path.join(dir, `fake-${Date.now()}-${Math.random().toString(36).slice(2)}.sock`);
  const state: FakeServer = {
    socketPath,
    connections: 0,
    requests: [],
    sockets: new Set(),
    close: async () => {
      for (const s of state.sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      fs.rmSync(socketPath, { force: true });
    },
  };
  const contexts = opts.contexts ?? ['base:allocation'];
  const server = net.createServer((sock) => {
    state.connections++;
    state.sockets.add(sock);
    sock.on('close', () => state.sockets.delete(sock));
    sock.on('error', () => undefined);
    if (opts.onConnect) {
      opts.onConnect(sock);
      return;
    }
    sock.write(greeting(3));
    let buf = Buffer.alloc(0);
    let phase: 'flags' | 'options' | 'transmission' = 'flags';
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === 'flags') {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = 'options';
        } else if (phase === 'options') {
          if (buf.length < 16) return;
          const len = buf.readUInt32BE(12);
          if (buf.length < 16 + len) return;
          const option = buf.readUInt32BE(8);
          buf = buf.subarray(16 + len);
          if (opts.onOption?.(option, sock)) continue;
          if (option === 8) sock.write(optionReply(8, 1));
          else if (option === 10) {
            contexts.forEach((c, i) => sock.write(optionReply(10, 4, metaContext(i + 1, c))));
            sock.write(optionReply(10, 1));
          } else if (option === 7) {
            sock.write(optionReply(7, 3, infoExport(opts.size ?? 1024 * 1024, opts.transmissionFlags ?? 0x3)));
            const [min, pref, max] = opts.blockSize ?? [1, 4096, 32 * 1024 * 1024];
            sock.write(optionReply(7, 3, infoBlockSize(min, pref, max)));
            sock.write(optionReply(7, 1));
            phase = 'transmission';
          } else sock.write(optionReply(option, 0x80000001));
        } else {
          if (buf.length < 28) return;
          const req: FakeRequest = {
            flags: buf.readUInt16BE(4),
            type: buf.readUInt16BE(6),
            cookie: buf.readUInt32BE(12),
            offset: Number(buf.readBigUInt64BE(16)),
            length: buf.readUInt32BE(24),
          };
          buf = buf.subarray(28);
          state.requests.push(req);
          if (req.type === 2) {
            sock.end();
            return;
          }
          opts.onRequest?.(req, sock);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return state;
}

const PATTERN_SPAN = 8 * 1024 * 1024;
let patternCache: Buffer | undefined;

/** Deterministic content of the fake export (first 8 MiB): byte x is (x * 7 + x / 4096) & 0xff. */
export function pattern(offset: number, length: number): Buffer {
  if (!patternCache) {
    patternCache = Buffer.allocUnsafe(PATTERN_SPAN);
    for (let x = 0; x < PATTERN_SPAN; x++) patternCache[x] = (x * 7 + (x >>> 12)) & 0xff;
  }
  if (offset + length > PATTERN_SPAN) throw new RangeError('pattern covers the first 8 MiB only');
  return Buffer.from(patternCache.subarray(offset, offset + length));
}
