/**
 * Real notification endpoints for tests: a stub sendmail (a shell script that records its
 * arguments and the message it reads on stdin, one file per call) and a local HTTP server that
 * records each POST and answers with the status the test sets.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';

export interface StubSendmail {
  path: string;
  /** Every call so far: argv (after the program) and the message. */
  calls(): { args: string[]; message: string }[];
}

/** `exitCode` other than 0 makes the stub print `stderr` and fail, as a broken MTA does. */
export function stubSendmail(dir: string, opts: { exitCode?: number; stderr?: string } = {}): StubSendmail {
  const file = path.join(dir, `sendmail-${opts.exitCode ?? 0}`);
  const spool = path.join(dir, `spool-${opts.exitCode ?? 0}`);
  fs.mkdirSync(spool, { recursive: true });
  fs.writeFileSync(
    file,
    [
      '#!/bin/sh',
      `n="${spool}/$(date +%s%N)-$$"`,
      'printf "%s\\n" "$@" > "$n.args"',
      'cat > "$n.msg"',
      opts.exitCode ? `echo '${opts.stderr ?? 'sendmail: fatal'}' >&2; exit ${opts.exitCode}` : 'exit 0',
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
  return {
    path: file,
    calls: () =>
      fs
        .readdirSync(spool)
        .filter((f) => f.endsWith('.msg'))
        .sort()
        .map((f) => ({
          args: fs.readFileSync(path.join(spool, f.replace(/\.msg$/, '.args')), 'utf8').split('\n').filter(Boolean),
          message: fs.readFileSync(path.join(spool, f), 'utf8'),
        })),
  };
}

export interface WebhookServer {
  url: string;
  requests: { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }[];
  /** The status the next requests get (default 204). */
  status: number;
  /** Resolves once `n` requests have arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startWebhookServer(): Promise<WebhookServer> {
  const waiters: (() => void)[] = [];
  const hook: WebhookServer = {
    url: '',
    requests: [],
    status: 204,
    waitFor: (n, timeoutMs = 30_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (hook.requests.length >= n) {
            clearTimeout(timer);
            resolve();
          } else waiters.push(check);
        };
        const timer = setTimeout(() => reject(new Error(`webhook got ${hook.requests.length} of ${n} requests`)), timeoutMs);
        check();
      }),
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString('utf8')));
    req.on('end', () => {
      hook.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      res.statusCode = hook.status;
      res.end();
      for (const w of waiters.splice(0)) w();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  hook.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/pve-cbt`;
  return hook;
}
