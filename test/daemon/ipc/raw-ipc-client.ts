/**
 * A plain `net` client of the daemon's control socket for tests that misbehave on purpose (idle,
 * drip, pipeline, half-close, never read): it writes whatever the test writes and collects the
 * newline-delimited JSON replies. Used by the IPC server's limit tests and the e2e socket-limit
 * tests against a real daemon.
 *
 * The reader is linear in the bytes received: in the e2e tests this process also runs the daemon,
 * and a reader that re-copied its buffer per line starved the daemon's event loop during 10,000
 * replies.
 */
import net from 'node:net';

export interface RawReply {
  id: string | null;
  ok?: boolean;
  result?: unknown;
  error?: { code: string };
}

export interface RawIpcClient {
  socket: net.Socket;
  lines: RawReply[];
  /** Settles when the socket is closed (by either side). */
  closed: Promise<void>;
  /** Replies received when the connection closed (null while open). */
  closedAfter: number | null;
  /** Resolves once `n` replies arrived; rejects after `timeoutMs` naming how many did. */
  waitLines(n: number, timeoutMs?: number): Promise<void>;
}

/** Connects; with `read: false` the replies are never read (the daemon's writes back up). */
export function rawConnect(socketPath: string, opts: { read?: boolean } = {}): Promise<RawIpcClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    const lines: RawReply[] = [];
    const waiters: Array<() => void> = [];
    let buf = '';
    const client: RawIpcClient = {
      socket,
      lines,
      closedAfter: null,
      closed: new Promise<void>((r) =>
        socket.once('close', () => {
          client.closedAfter = lines.length;
          r();
        }),
      ),
      waitLines: (n, timeoutMs = 5000) =>
        new Promise((res, rej) => {
          const timer = setTimeout(() => rej(new Error(`only ${lines.length} of ${n} lines (closed after ${client.closedAfter ?? 'never'})`)), timeoutMs);
          const check = (): void => {
            if (lines.length >= n) {
              clearTimeout(timer);
              res();
            } else waiters.push(check);
          };
          check();
        }),
    };
    if (opts.read !== false) {
      socket.on('data', (d) => {
        const parts = (buf + d.toString('utf8')).split('\n');
        buf = parts.pop() ?? '';
        for (const part of parts) lines.push(JSON.parse(part) as RawReply);
        for (const w of waiters.splice(0)) w();
      });
    }
    socket.once('connect', () => {
      socket.on('error', () => undefined);
      resolve(client);
    });
    socket.once('error', reject);
  });
}

/** One request line as the protocol frames it. */
export const requestLine = (id: string, type: string, payload: unknown): string => `${JSON.stringify({ v: 1, id, type, payload })}\n`;
