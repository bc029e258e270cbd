import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ipcRequest } from '../../../shared/ipc/ipc-client';
import { memoryLogger } from '../log/memory-logger';
import { startIpcServer, type IpcServer } from '../../../daemon/ipc/ipc-server';
import { defineError } from '../../../shared/errors/cbt-error';

const TestRefusedError = defineError<{ n: number }>('CBT_TEST_REFUSED', (d) => `refused ${d.n}`);

/** Talks to the socket with plain `net`, so that it can send what no well-behaved client would. */
function rawExchange(socketPath: string, chunks: Array<string | Buffer>, opts: { waitLines?: number; endAfter?: boolean; timeoutMs?: number } = {}): Promise<{ lines: unknown[]; closedByServer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(socketPath);
    let buf = '';
    const lines: unknown[] = [];
    let closedByServer = false;
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve({ lines, closedByServer });
    };
    const timer = setTimeout(done, opts.timeoutMs ?? 3000);
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') return;
      clearTimeout(timer);
      reject(err);
    });
    s.on('connect', () => {
      for (const c of chunks) s.write(c);
      if (opts.endAfter) s.end();
    });
    s.on('data', (d) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        lines.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
      if (opts.waitLines !== undefined && lines.length >= opts.waitLines && !opts.endAfter) done();
    });
    s.on('end', () => {
      closedByServer = true;
      done();
    });
  });
}

describe('ipc server', () => {
  let dir: string;
  let socketPath: string;
  let server: IpcServer;
  const calls: unknown[] = [];
  const logged: Array<{ level: string; message: string; code?: string }> = [];
  const logger = memoryLogger(logged);

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    socketPath = path.join(dir, 'run', 'pve-cbt.sock');
    server = await startIpcServer({
      socketPath,
      logger,
      maxMessageBytes: 64 * 1024,
      frameTimeoutMs: 300,
      handlers: {
        echo: {
          schema: { type: 'object', additionalProperties: false, required: ['n'], properties: { n: { type: 'integer' } } },
          handle: async (p: { n: number }) => {
            calls.push(p);
            return { n: p.n * 2 };
          },
        },
        slow: {
          schema: { type: 'object', additionalProperties: false, required: ['steps'], properties: { steps: { type: 'integer', maximum: 10 } } },
          handle: async (p: { steps: number }, ctx) => {
            for (let i = 0; i < p.steps; i++) {
              await new Promise((r) => setTimeout(r, 10));
              ctx.progress({ step: i + 1 });
            }
            return 'done';
          },
        },
        refuse: {
          schema: { type: 'object', additionalProperties: false, properties: { n: { type: 'integer' } } },
          handle: async (p: { n?: number }) => {
            throw TestRefusedError({ n: p.n ?? 0 });
          },
        },
        crash: {
          schema: { type: 'object', additionalProperties: false },
          handle: async () => {
            throw new TypeError('boom');
          },
        },
      },
    });
  });

  afterAll(async () => {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('socket is 0600 inside a 0700 directory', () => {
    expect(fs.statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(socketPath)).mode & 0o777).toBe(0o700);
    expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
  });

  test('request/reply, progress frames, and server error codes reach the client', async () => {
    await expect(ipcRequest(socketPath, 'echo', { n: 21 }, { timeoutMs: 2000 })).resolves.toEqual({ n: 42 });
    const progress: unknown[] = [];
    await expect(ipcRequest(socketPath, 'slow', { steps: 3 }, { timeoutMs: 2000, onProgress: (p) => progress.push(p) })).resolves.toBe('done');
    expect(progress).toEqual([{ step: 1 }, { step: 2 }, { step: 3 }]);
    await expect(ipcRequest(socketPath, 'refuse', { n: 7 }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'CBT_TEST_REFUSED', details: { n: 7 } });
    await expect(ipcRequest(socketPath, 'crash', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'CBT_IPC_HANDLER_FAILED', details: { type: 'crash', reason: 'boom' } });
    await expect(ipcRequest(socketPath, 'nope', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'CBT_IPC_UNKNOWN_TYPE' });
    await expect(ipcRequest(socketPath, 'echo', { n: 1, extra: true }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'CBT_IPC_INVALID_PAYLOAD' });
    await expect(ipcRequest(socketPath, 'echo', { n: 'x' }, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'CBT_IPC_INVALID_PAYLOAD' });
  });

  test('garbage lines are answered with errors, logged, and the same connection keeps working', async () => {
    logged.length = 0;
    const good = JSON.stringify({ v: 1, id: 'g1', type: 'echo', payload: { n: 5 } });
    const { lines, closedByServer } = await rawExchange(
      socketPath,
      [
        'not json at all\n',
        Buffer.from([0xff, 0xfe, 0x00, 0x0a]),
        'null\n',
        '[1,2,3]\n',
        '{"v":1,"id":"x1","type":"echo"}\n',
        '{"v":2,"id":"x2","type":"echo","payload":{"n":1}}\n',
        '{"v":1,"id":"x3","type":"echo","payload":{"n":1},"more":1}\n',
        '{"v":1,"id":"x4","type":"__proto__","payload":{}}\n',
        '{"v":1,"id":"x5","type":"connect","payload":{}}\n',
        `${good}\n`,
      ],
      { waitLines: 10 },
    );
    expect(closedByServer).toBe(false);
    const codes = lines.map((l) => (l as { ok: boolean; error?: { code: string } }).error?.code ?? 'OK');
    expect(codes).toEqual([
      'CBT_IPC_MALFORMED',
      'CBT_IPC_MALFORMED',
      'CBT_IPC_INVALID_MESSAGE',
      'CBT_IPC_INVALID_MESSAGE',
      'CBT_IPC_INVALID_MESSAGE',
      'CBT_IPC_INVALID_MESSAGE',
      'CBT_IPC_INVALID_MESSAGE',
      'CBT_IPC_UNKNOWN_TYPE',
      'CBT_IPC_UNKNOWN_TYPE',
      'OK',
    ]);
    expect(lines[2]).toMatchObject({ id: null, ok: false });
    expect(lines[4]).toMatchObject({ id: 'x1', ok: false });
    expect(lines[9]).toEqual({ v: 1, id: 'g1', ok: true, result: { n: 10 } });
    const warnings = logged.filter((l) => l.level === 'warn' && l.message === 'ipc message rejected').map((l) => l.code);
    expect(warnings).toEqual(codes.slice(0, 9));
  });

  test('an oversized message (10 MiB) is refused and its connection closed while others are served', async () => {
    const big = Buffer.alloc(10 * 1024 * 1024, 0x41);
    const flood = rawExchange(socketPath, [big], { timeoutMs: 5000 });
    const others = Promise.all(Array.from({ length: 20 }, (_, i) => ipcRequest(socketPath, 'echo', { n: i }, { timeoutMs: 4000 })));
    const [{ lines, closedByServer }, results] = await Promise.all([flood, others]);
    expect(closedByServer).toBe(true);
    expect(lines).toEqual([expect.objectContaining({ id: null, ok: false, error: expect.objectContaining({ code: 'CBT_IPC_TOO_LARGE' }) })]);
    expect(results).toEqual(Array.from({ length: 20 }, (_, i) => ({ n: i * 2 })));
  });

  test('a half-written message times out alone; one cut off by a disconnect is dropped', async () => {
    const stalled = rawExchange(socketPath, ['{"v":1,"id":"h1","type":"echo","payl'], { timeoutMs: 3000 });
    const before = calls.length;
    await expect(ipcRequest(socketPath, 'echo', { n: 3 }, { timeoutMs: 2000 })).resolves.toEqual({ n: 6 });
    const { lines, closedByServer } = await stalled;
    expect(closedByServer).toBe(true);
    expect(lines).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: 'CBT_IPC_INCOMPLETE' }) })]);

    await rawExchange(socketPath, ['{"v":1,"id":"h2","type":"echo","payload":{"n":9}'], { endAfter: true, timeoutMs: 500 });
    await expect(ipcRequest(socketPath, 'echo', { n: 4 }, { timeoutMs: 2000 })).resolves.toEqual({ n: 8 });
    expect(calls.slice(before)).toEqual([{ n: 3 }, { n: 4 }]);
  });

  test('a message split across many writes, with a multi-byte character cut in half, is reassembled', async () => {
    const line = Buffer.from(`${JSON.stringify({ v: 1, id: 'päckchen-€', type: 'echo', payload: { n: 11 } })}\n`);
    const chunks = Array.from({ length: line.length }, (_, i) => line.subarray(i, i + 1));
    const { lines } = await rawExchange(socketPath, chunks, { waitLines: 1 });
    expect(lines).toEqual([{ v: 1, id: 'päckchen-€', ok: true, result: { n: 22 } }]);
  });

  test('a non-root client is refused by the file system', () => {
    const script = `require('net').connect(${JSON.stringify(socketPath)}).on('connect',()=>{console.log('CONNECTED');process.exit(0)}).on('error',e=>{console.log(e.code);process.exit(0)})`;
    const asNobody = (): string => {
      const r = spawnSync('/usr/sbin/runuser', ['-u', 'nobody', '--', process.execPath, '-e', script], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status).toBe(0);
      return r.stdout.trim();
    };
    expect(asNobody()).toBe('EACCES');
    // Even with the directory opened up, the socket's own 0600 mode still keeps the user out.
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(path.dirname(socketPath), 0o755);
    try {
      expect(asNobody()).toBe('EACCES');
    } finally {
      fs.chmodSync(path.dirname(socketPath), 0o700);
      fs.chmodSync(dir, 0o700);
    }
  });

  test('client errors: nothing listening, and a server that never answers', async () => {
    await expect(ipcRequest(path.join(dir, 'absent.sock'), 'echo', { n: 1 }, { timeoutMs: 1000 })).rejects.toMatchObject({ code: 'CBT_IPC_UNAVAILABLE', details: { errno: 'ENOENT' } });
    const mute = net.createServer((s) => s.resume());
    const mutePath = path.join(dir, 'mute.sock');
    await new Promise<void>((r) => mute.listen(mutePath, r));
    try {
      const t0 = Date.now();
      await expect(ipcRequest(mutePath, 'echo', { n: 1 }, { timeoutMs: 300 })).rejects.toMatchObject({ code: 'CBT_IPC_TIMEOUT' });
      expect(Date.now() - t0).toBeLessThan(10_000); // the 300 ms timeout ended it, not a hang
      const ac = new AbortController();
      const aborted = expect(ipcRequest(mutePath, 'echo', { n: 1 }, { timeoutMs: 5000, signal: ac.signal })).rejects.toMatchObject({ code: 'CBT_IPC_ABORTED' });
      setTimeout(() => ac.abort(), 50);
      await aborted;
    } finally {
      await new Promise((r) => mute.close(r));
    }
  });

  test('a second server on the same live socket is refused; an insecure directory is refused', async () => {
    await expect(startIpcServer({ socketPath, handlers: {} })).rejects.toMatchObject({ code: 'CBT_IPC_SOCKET_IN_USE' });
    const open = path.join(dir, 'open');
    fs.mkdirSync(open, { mode: 0o755 });
    fs.chmodSync(open, 0o755);
    await expect(startIpcServer({ socketPath: path.join(open, 's.sock'), handlers: {} })).rejects.toMatchObject({ code: 'CBT_IPC_SOCKET_DIR_INSECURE' });
    await expect(
      startIpcServer({ socketPath: path.join(dir, 'run2', 's.sock'), handlers: { loose: { schema: { type: 'object' }, handle: async () => null } } }),
    ).rejects.toMatchObject({ code: 'CBT_IPC_SCHEMA' });
  });
});

describe('ipc server lifecycle', () => {
  test('a stale socket file from a crashed daemon is replaced; close cancels in-flight handlers', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    const socketPath = path.join(dir, 's.sock');
    try {
      // A crashed daemon: its listener is SIGKILLed, leaving the socket file behind.
      const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`]);
      await new Promise((r) => crashed.stdout.once('data', r));
      crashed.kill('SIGKILL');
      await new Promise((r) => crashed.once('exit', r));
      expect(fs.lstatSync(socketPath).isSocket()).toBe(true);
      let aborted = false;
      let handling!: () => void;
      const inHandler = new Promise<void>((r) => (handling = r));
      const server = await startIpcServer({
        socketPath,
        handlers: {
          hang: {
            schema: { type: 'object', additionalProperties: false },
            handle: (_p, ctx) =>
              new Promise((_res, rej) => {
                handling();
                ctx.signal.addEventListener('abort', () => {
                  aborted = true;
                  rej(new Error('aborted'));
                });
              }),
          },
        },
      });
      const pending = expect(ipcRequest(socketPath, 'hang', {}, { timeoutMs: 3000 })).rejects.toMatchObject({ code: 'CBT_IPC_SHUTTING_DOWN' });
      // The close comes once the request is in its handler (a barrier, not a sleep: on a loaded
      // machine the request could still be on its way after any fixed wait).
      await inHandler;
      await server.close();
      await pending;
      expect(aborted).toBe(true);
      expect(fs.existsSync(socketPath)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
