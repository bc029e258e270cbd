/**
 * Per-client limits of the control socket (ipc-server.ts, "Limits"), against a real unix socket:
 * idle and slow-drip connections, connection floods with lifecycle events still answered, the cap
 * on requests in flight, clients that never read, half-close, and a random-byte flood's log volume.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { startIpcServer, type IpcHandler, type IpcServer, type IpcServerOptions } from '../../../daemon/ipc/ipc-server';
import { LIFECYCLE_EVENT_SCHEMA } from '../../../daemon/ipc/lifecycle-event-schema';
import { closeLogger, createLogger } from '../../../daemon/log/create-logger';
import { ipcRequest } from '../../../shared/ipc/ipc-client';
import { rawConnect, requestLine as line } from './raw-ipc-client';
import { memoryLogger } from '../log/memory-logger';

const LIFECYCLE = { vmid: 100, phase: 'pre-start', source: 'hookscript', time: '2026-11-25T10:00:00.000Z' };

describe('ipc server limits', () => {
  let dir: string;
  let socketPath: string;
  let server: IpcServer | undefined;
  let running = 0;
  let maxRunning = 0;
  let hanging = 0;
  let release: () => void = () => undefined;
  let hold = Promise.resolve();
  let onStall: () => void = () => undefined;
  const logged: Array<{ level: string; message: string }> = [];
  const logger = memoryLogger(logged);
  const handlers: Record<string, IpcHandler> = {
    echo: {
      schema: { type: 'object', additionalProperties: false, properties: { n: { type: 'integer' } } },
      handle: async (p: { n?: number }) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        await new Promise((r) => setImmediate(r));
        running--;
        return { n: p.n ?? 0 };
      },
    },
    hang: {
      schema: { type: 'object', additionalProperties: false },
      handle: async () => {
        hanging++;
        await hold;
        return 'released';
      },
    },
    stall: {
      schema: { type: 'object', additionalProperties: false },
      handle: async () => {
        onStall();
        return 'stalled';
      },
    },
    slow: {
      schema: { type: 'object', additionalProperties: false },
      handle: () => new Promise((r) => setTimeout(() => r('done'), 200)),
    },
    big: {
      schema: { type: 'object', additionalProperties: false },
      handle: async () => 'x'.repeat(1024 * 1024),
    },
    'lifecycle-event': {
      schema: LIFECYCLE_EVENT_SCHEMA,
      handle: async () => ({ duplicate: false }),
    },
  };

  async function start(o: Partial<IpcServerOptions> = {}): Promise<void> {
    server = await startIpcServer({ socketPath, logger, handlers, ...o });
  }

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
    socketPath = path.join(dir, 'run', 'pve-cbt.sock');
    logged.length = 0;
    running = 0;
    maxRunning = 0;
    hanging = 0;
    onStall = () => undefined;
    hold = new Promise<void>((r) => {
      release = r;
    });
  });
  afterEach(async () => {
    release();
    await server?.close();
    server = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('80 idle connections lock out neither a request nor a lifecycle event', async () => {
    await start();
    const idle = await Promise.all(Array.from({ length: 80 }, () => rawConnect(socketPath)));
    const t0 = Date.now();
    await expect(ipcRequest(socketPath, 'echo', { n: 1 }, { timeoutMs: 2000 })).resolves.toEqual({ n: 1 });
    await expect(ipcRequest(socketPath, 'lifecycle-event', LIFECYCLE, { timeoutMs: 2000 })).resolves.toEqual({ duplicate: false });
    expect(Date.now() - t0).toBeLessThan(2000);
    // The oldest idle ones made room, each told why.
    await Promise.all(idle.slice(0, 16).map((c) => c.closed));
    expect(idle[0].lines).toEqual([expect.objectContaining({ id: null, ok: false, error: expect.objectContaining({ code: 'CBT_IPC_IDLE' }) })]);
    for (const c of idle) c.socket.destroy();
  });

  test('with every slot busy, lifecycle events are still answered; other requests get CBT_IPC_BUSY', async () => {
    await start({ maxConnections: 8, reservedConnections: 4 });
    const busy = await Promise.all(Array.from({ length: 8 }, () => rawConnect(socketPath)));
    busy.forEach((c, i) => c.socket.write(line(`h${i}`, 'hang', {})));
    while (hanging < 8) await new Promise((r) => setImmediate(r));
    await expect(ipcRequest(socketPath, 'echo', {}, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'CBT_IPC_BUSY' });
    const t0 = Date.now();
    const events = await Promise.all(Array.from({ length: 4 }, () => ipcRequest(socketPath, 'lifecycle-event', LIFECYCLE, { timeoutMs: 2000 })));
    expect(events).toEqual(Array(4).fill({ duplicate: false }));
    expect(Date.now() - t0).toBeLessThan(2000);
    // Beyond the reserved slots too: a clear refusal, not a lost connection.
    const held = await Promise.all(Array.from({ length: 4 }, () => rawConnect(socketPath)));
    await expect(ipcRequest(socketPath, 'lifecycle-event', LIFECYCLE, { timeoutMs: 2000 })).rejects.toMatchObject({ code: 'CBT_IPC_BUSY' });
    release();
    await Promise.all(busy.map((c) => c.waitLines(1)));
    expect(busy.map((c) => c.lines[0].result)).toEqual(Array(8).fill('released'));
    for (const c of [...busy, ...held]) c.socket.destroy();
  });

  test('a silent client and one dripping a byte at a time are closed after the idle timeout', async () => {
    await start({ idleTimeoutMs: 400, frameTimeoutMs: 60_000 });
    const silent = await rawConnect(socketPath);
    const drip = await rawConnect(socketPath);
    const msg = line('d1', 'echo', { n: 1 });
    let i = 0;
    const dripper = setInterval(() => {
      if (!drip.socket.destroyed && i < msg.length - 1) drip.socket.write(msg[i++]);
    }, 50);
    const t0 = Date.now();
    try {
      await Promise.all([silent.closed, drip.closed]);
    } finally {
      clearInterval(dripper);
    }
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(silent.lines).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: 'CBT_IPC_IDLE' }) })]);
    expect(drip.lines).toEqual([expect.objectContaining({ error: expect.objectContaining({ code: 'CBT_IPC_IDLE' }) })]);
    // It had sent part of a message, and kept sending, yet was closed on time.
    expect((drip.lines[0] as unknown as { error: { details: { bufferedBytes: number } } }).error.details.bufferedBytes).toBeGreaterThan(2);
    // A client that keeps asking is not idle.
    const busy = await rawConnect(socketPath);
    for (let k = 0; k < 6; k++) {
      busy.socket.write(line(`k${k}`, 'slow', {}));
      await busy.waitLines(k + 1);
    }
    expect(busy.socket.destroyed).toBe(false);
    busy.socket.destroy();
  });

  test('an event loop blocked past the idle timeout does not take a request still unread in the socket for idleness', async () => {
    await start({ idleTimeoutMs: 200 });
    const c = await rawConnect(socketPath);
    c.socket.write(line('a', 'echo', { n: 1 }));
    await c.waitLines(1); // answered: nothing in flight, the idle timer runs from here
    c.socket.write(line('b', 'echo', { n: 2 })); // in the kernel's buffer, unread by the server
    const until = Date.now() + 500;
    while (Date.now() < until); // the daemon's loop is busy (here: this very process) past idleTimeoutMs
    await c.waitLines(2);
    expect(c.lines.map((l) => [l.id, l.ok])).toEqual([['a', true], ['b', true]]);
    expect(c.socket.destroyed).toBe(false);
    c.socket.destroy();
  });

  test('a message whose rest waits unread while the server works through earlier frames is not taken for unfinished', async () => {
    await start({ frameTimeoutMs: 200 });
    const c = await rawConnect(socketPath);
    const split = line('split', 'echo', { n: 7 });
    const half = split.length >> 1;
    onStall = () => {
      // The rest of the message goes into the kernel's buffer while the server holds the socket
      // paused (it has earlier frames of this pipeline to handle), and its loop is busy past frameTimeoutMs.
      c.socket.write(split.slice(half));
      const until = Date.now() + 500;
      while (Date.now() < until);
    };
    c.socket.write(line('s', 'stall', {}) + Array.from({ length: 200 }, (_, i) => line(`p${i}`, 'echo', { n: i })).join('') + split.slice(0, half));
    await c.waitLines(202, 5000);
    expect(c.lines.filter((l) => l.id === null)).toEqual([]);
    expect(c.lines.find((l) => l.id === 'split')).toEqual(expect.objectContaining({ id: 'split' }));
    expect(c.socket.destroyed).toBe(false);
    // A message that really stays unfinished is still refused after frameTimeoutMs.
    c.socket.write('{"v":1,');
    await c.closed;
    expect(c.lines.at(-1)).toEqual(expect.objectContaining({ id: null, ok: false, error: expect.objectContaining({ code: 'CBT_IPC_INCOMPLETE' }) }));
  });

  test('10,000 pipelined requests on one connection: all answered fast, at most 32 in flight, server responsive', async () => {
    await start();
    const c = await rawConnect(socketPath);
    const t0 = Date.now();
    c.socket.write(Array.from({ length: 10_000 }, (_, i) => line(`p${i}`, 'echo', { n: i })).join(''));
    // Another client (a hook) is answered within its bound meanwhile.
    await expect(ipcRequest(socketPath, 'lifecycle-event', LIFECYCLE, { timeoutMs: 2000 })).resolves.toEqual({ duplicate: false });
    await c.waitLines(10_000, 20_000);
    expect(Date.now() - t0).toBeLessThan(15_000);
    const codes = new Set(c.lines.map((l) => (l.ok ? 'OK' : l.error?.code)));
    expect([...codes].sort()).toEqual(['CBT_IPC_TOO_MANY_REQUESTS', 'OK']);
    expect(maxRunning).toBeLessThanOrEqual(32);
    expect(new Set(c.lines.map((l) => l.id)).size).toBe(10_000);
    c.socket.destroy();
  });

  test('a client that never reads is dropped once its unsent replies exceed the limit', async () => {
    await start({ maxReplyBufferBytes: 256 * 1024 });
    const c = await rawConnect(socketPath, { read: false });
    c.socket.write(Array.from({ length: 20 }, (_, i) => line(`b${i}`, 'big', {})).join(''));
    const t0 = Date.now();
    while (!logged.some((l) => l.message === 'ipc client dropped: it does not read its replies')) {
      if (Date.now() - t0 > 5000) throw new Error('the non-reading client was never dropped');
      await new Promise((r) => setTimeout(r, 20));
    }
    await expect(ipcRequest(socketPath, 'echo', { n: 2 }, { timeoutMs: 2000 })).resolves.toEqual({ n: 2 });
    c.socket.destroy();
  });

  test('a client that half-closes after its request still gets the reply', async () => {
    await start();
    const c = await rawConnect(socketPath);
    c.socket.end(line('s1', 'slow', {}) + line('s2', 'echo', { n: 3 }));
    await c.closed;
    expect(c.lines).toEqual([
      { v: 1, id: 's2', ok: true, result: { n: 3 } },
      { v: 1, id: 's1', ok: true, result: 'done' },
    ]);
  });

  test('1 MiB of random bytes writes a bounded number of log lines', async () => {
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (d: Buffer) => chunks.push(d));
    const real = createLogger({ console: { stream: out } });
    server = await startIpcServer({ socketPath, logger: real, handlers });
    const c = await rawConnect(socketPath);
    const junk = crypto.randomBytes(1024 * 1024);
    const newlines = junk.filter((b) => b === 0x0a).length;
    c.socket.write(junk);
    c.socket.write(`\n${line('last', 'echo', { n: 5 })}`);
    while (!c.lines.some((l) => l.id === 'last')) await c.waitLines(c.lines.length + 1, 20_000);
    c.socket.destroy();
    await server.close();
    server = undefined;
    await closeLogger(real);
    const logLines = Buffer.concat(chunks).toString('utf8').split('\n').filter(Boolean);
    expect(newlines).toBeGreaterThan(3000);
    expect(logLines.length).toBeLessThan(50);
    expect(logLines.some((l) => /suppressed \d+ similar: ipc message rejected/.test(l))).toBe(true);
  });
});
