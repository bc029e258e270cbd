/**
 * Misbehaving servers (a scripted node server speaking just enough NBD): every failure must be a
 * typed error within the timeout, never a hang and never wrong data.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isCbtError } from '../../../shared/errors/cbt-error';
import { NbdClient } from '../../../daemon/nbd/nbd-client';
import { readRanges } from '../../../daemon/nbd/nbd-reader';
import { type FakeServer, type FakeServerOptions, pattern, startFakeServer } from './fake-nbd-server';
import { DONE, chunk, dataChunk, errorChunk, greeting, holeChunk, noneChunk, optionReply, statusChunk } from './nbd-wire';

const TIMEOUT = 400;
let dir: string;
const servers: FakeServer[] = [];
const clients: NbdClient[] = [];

async function fake(opts: FakeServerOptions): Promise<FakeServer> {
  const s = await startFakeServer(dir, opts);
  servers.push(s);
  return s;
}

async function connect(s: FakeServer, extra: { metaContexts?: string[]; maxInFlight?: number; timeoutMs?: number } = {}): Promise<NbdClient> {
  const c = await NbdClient.connect({ socketPath: s.socketPath, timeoutMs: TIMEOUT, metaContexts: ['base:allocation'], ...extra });
  clients.push(c);
  return c;
}

/** Resolves to the error code of a rejection and the time it took; fails the test on success. */
async function failure(p: Promise<unknown>): Promise<{ code: string; ms: number; err: Error }> {
  const t = Date.now();
  try {
    await p;
  } catch (err) {
    if (!isCbtError(err)) throw err;
    return { code: err.code, ms: Date.now() - t, err };
  }
  throw new Error('expected a rejection');
}

/** A correct server: reads answered with pattern data (in one chunk) after `delayMs`. */
const answerReads = (delayMs = 0) => (req: { type: number; cookie: number; offset: number; length: number }, sock: import('node:net').Socket): void => {
  if (req.type !== 0) return;
  const send = (): void => void sock.write(dataChunk(req.cookie, req.offset, pattern(req.offset, req.length)));
  if (delayMs) setTimeout(send, delayMs);
  else send();
};

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(servers.map((s) => s.close()));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('handshake failures', () => {
  test('garbage instead of a greeting', async () => {
    const s = await fake({ onConnect: (sock) => sock.write('SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n') });
    expect((await failure(connect(s))).code).toBe('CBT_NBD_PROTOCOL');
  });

  test('a server that accepts and never speaks times out', async () => {
    const s = await fake({ onConnect: () => undefined });
    const f = await failure(connect(s));
    expect(f.code).toBe('CBT_NBD_TIMEOUT');
    expect(f.ms).toBeLessThan(TIMEOUT + 5000);
  });

  test('a server that closes during option haggling', async () => {
    const s = await fake({ onConnect: (sock) => { sock.write(greeting(3)); sock.once('data', () => sock.end()); } });
    expect((await failure(connect(s))).code).toBe('CBT_NBD_DISCONNECTED');
  });

  test('a server without fixed newstyle', async () => {
    const s = await fake({ onConnect: (sock) => sock.write(greeting(0)) });
    expect((await failure(connect(s))).err.message).toMatch(/fixed newstyle/);
  });

  test('structured replies refused → CBT_NBD_OPTION_REFUSED with option and reply type', async () => {
    const s = await fake({ onOption: (opt, sock) => opt === 8 && sock.write(optionReply(8, 0x80000001, Buffer.from('too old'))) });
    const f = await failure(connect(s));
    expect(f.code).toBe('CBT_NBD_OPTION_REFUSED');
    expect((f.err as unknown as { details: unknown }).details).toMatchObject({ option: 'NBD_OPT_STRUCTURED_REPLY', reply: 'NBD_REP_ERR_UNSUP', message: 'too old' });
  });

  test('a garbage option reply', async () => {
    const s = await fake({ onOption: (opt, sock) => opt === 8 && sock.write(Buffer.alloc(20, 0x41)) });
    expect((await failure(connect(s))).code).toBe('CBT_NBD_PROTOCOL');
  });
});

describe('transmission failures', () => {
  test('server closes the connection mid-reply', async () => {
    const s = await fake({
      onRequest: (req, sock) => {
        const msg = dataChunk(req.cookie, req.offset, pattern(req.offset, req.length));
        sock.write(msg.subarray(0, 100));
        sock.end();
      },
    });
    // A long timeout: the close ends the read, not the timer, whatever the load (the code says which).
    const c = await connect(s, { timeoutMs: 30_000 });
    const f = await failure(c.read(0, 65536));
    expect(f.code).toBe('CBT_NBD_DISCONNECTED');
    expect(f.ms).toBeLessThan(15_000);
    expect((await failure(c.read(0, 512))).code).toBe('CBT_NBD_DISCONNECTED');
  });

  test('a data chunk without NBD_REPLY_FLAG_DONE, then disconnect', async () => {
    const s = await fake({
      onRequest: (req, sock) => {
        sock.write(dataChunk(req.cookie, req.offset, pattern(req.offset, req.length), 0));
        setTimeout(() => sock.destroy(), 20);
      },
    });
    const c = await connect(s);
    expect((await failure(c.read(0, 4096))).code).toBe('CBT_NBD_DISCONNECTED');
  });

  test('garbage in the middle of the stream fails every outstanding request', async () => {
    const s = await fake({ onRequest: (_req, sock) => sock.write(Buffer.from('<html>500 Internal Server Error</html>')) });
    const c = await connect(s);
    const all = await Promise.allSettled([c.read(0, 4096), c.read(4096, 4096), c.blockStatus('base:allocation', 0, 4096)]);
    for (const r of all) expect(((r as PromiseRejectedResult).reason as { code: string }).code).toBe('CBT_NBD_PROTOCOL');
  });

  test.each([
    ['reply for an unknown cookie', (c: number) => dataChunk(c + 1000, 0, Buffer.alloc(16)), 'CBT_NBD_PROTOCOL'],
    ['unknown chunk type', (c: number) => chunk(c, 17, DONE, Buffer.alloc(8)), 'CBT_NBD_PROTOCOL'],
    ['chunk longer than the request', (c: number) => dataChunk(c, 0, Buffer.alloc(4097)), 'CBT_NBD_PROTOCOL'],
    ['success without all data', (c: number) => Buffer.concat([dataChunk(c, 0, Buffer.alloc(2048), 0), noneChunk(c)]), 'CBT_NBD_SHORT_READ'],
    ['error with offset', (c: number) => errorChunk(c, 5, 'bad sector', 1024), 'CBT_NBD_SERVER_ERROR'],
  ])('%s', async (_name, reply, code) => {
    const s = await fake({ onRequest: (req, sock) => sock.write(reply(req.cookie)) });
    const c = await connect(s);
    expect((await failure(c.read(0, 4096))).code).toBe(code);
  });

  test('a server that never answers a read times out, and the connection is dropped', async () => {
    const s = await fake({});
    const c = await connect(s);
    const f = await failure(c.read(0, 4096));
    expect(f.code).toBe('CBT_NBD_TIMEOUT');
    expect(f.ms).toBeGreaterThanOrEqual(TIMEOUT - 50);
    expect(f.ms).toBeLessThan(TIMEOUT + 5000);
    expect((await failure(c.read(0, 1))).code).toBe('CBT_NBD_TIMEOUT');
  });

  test('a slow but steady server does not time out (the timeout is per wait, not per request)', async () => {
    const s = await fake({
      onRequest: (req, sock) => {
        const msg = dataChunk(req.cookie, req.offset, pattern(req.offset, req.length));
        let at = 0;
        const step = Math.ceil(msg.length / 6);
        const tick = setInterval(() => {
          sock.write(msg.subarray(at, at + step));
          at += step;
          if (at >= msg.length) clearInterval(tick);
        }, TIMEOUT / 3);
      },
    });
    const c = await connect(s);
    expect((await c.read(0, 60000)).equals(pattern(0, 60000))).toBe(true);
  });
});

describe('protocol behaviour', () => {
  test('requests are pipelined, out-of-order replies land in the right place, close sends NBD_CMD_DISC', async () => {
    const held: Array<() => void> = [];
    let maxOutstanding = 0;
    const s = await fake({
      blockSize: [512, 4096, 65536],
      onRequest: (req, sock) => {
        held.push(() => {
          // Hole in the first 512 bytes of every request, data for the rest, in two chunks.
          sock.write(Buffer.concat([
            dataChunk(req.cookie, req.offset + 512, pattern(req.offset + 512, req.length - 512), 0),
            holeChunk(req.cookie, req.offset, 512, DONE),
          ]));
        });
        maxOutstanding = Math.max(maxOutstanding, held.length);
        if (held.length === 4) for (const f of held.splice(0).reverse()) f();
      },
    });
    const c = await connect(s, { maxInFlight: 4 });
    expect(c.maxBlockSize).toBe(65536);
    const got = await c.read(0, 8 * 65536);
    const expected = pattern(0, 8 * 65536);
    for (let i = 0; i < 8; i++) expected.fill(0, i * 65536, i * 65536 + 512);
    expect(got.equals(expected)).toBe(true);
    expect(maxOutstanding).toBe(4);
    expect(s.requests.filter((r) => r.type === 0).map((r) => r.length)).toEqual(Array(8).fill(65536));
    await c.close();
    expect(s.requests[s.requests.length - 1]).toMatchObject({ type: 2, offset: 0, length: 0 });
  });

  test('block status: short answers are continued, an overshooting last extent is clipped, neighbours merged', async () => {
    const s = await fake({
      size: 1 << 20,
      onRequest: (req, sock) => {
        // Answers at most two 4 KiB descriptors per request; the second always overshoots by 4 KiB.
        const flags = (o: number): number => (Math.floor(o / 8192) % 3 === 0 ? 3 : 0);
        const first: [number, number] = [Math.min(4096, req.length), flags(req.offset)];
        const second: [number, number] = [8192, flags(req.offset + 4096)];
        sock.write(statusChunk(req.cookie, 1, req.length > 4096 ? [first, second] : [first]));
      },
    });
    const c = await connect(s);
    const extents = await c.blockStatus('base:allocation', 1000, 50000);
    expect(extents[0]?.offset).toBe(1000);
    const last = extents[extents.length - 1];
    expect((last?.offset ?? 0) + (last?.length ?? 0)).toBe(51000);
    for (let i = 1; i < extents.length; i++) {
      expect(extents[i]?.offset).toBe((extents[i - 1]?.offset ?? 0) + (extents[i - 1]?.length ?? 0));
      expect(extents[i]?.flags).not.toBe(extents[i - 1]?.flags);
    }
    expect(s.requests.length).toBeGreaterThan(3);
  });
});

describe('block size constraints and shutdown', () => {
  test('unaligned reads and block status are widened to the minimum block size and clipped back', async () => {
    const s = await fake({
      size: 1 << 20,
      blockSize: [512, 4096, 65536],
      onRequest: (req, sock) => {
        if (req.type === 0) sock.write(dataChunk(req.cookie, req.offset, pattern(req.offset, req.length)));
        else sock.write(statusChunk(req.cookie, 1, [[req.length, 0]]));
      },
    });
    const c = await connect(s);
    expect((await c.read(100, 1000)).equals(pattern(100, 1000))).toBe(true);
    expect(await c.blockStatus('base:allocation', 700, 10)).toEqual([{ offset: 700, length: 10, flags: 0 }]);
    expect(s.requests.map((r) => [r.type, r.offset, r.length])).toEqual([[0, 0, 1536], [7, 512, 512]]);
    for (const r of s.requests) expect(r.offset % 512).toBe(0);
  });

  test('ESHUTDOWN from the server makes the client disconnect softly (NBD_CMD_DISC)', async () => {
    const s = await fake({ onRequest: (req, sock) => sock.write(errorChunk(req.cookie, 108, 'shutting down')) });
    const c = await connect(s);
    const f = await failure(c.read(0, 512));
    expect(f.code).toBe('CBT_NBD_SERVER_ERROR');
    expect((f.err as unknown as { details: { errno: string } }).details.errno).toBe('ESHUTDOWN');
    // The server sees the disconnect request once its side's event loop gets to it (later on a loaded machine).
    for (let i = 0; i < 500 && s.requests.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    expect(s.requests.map((r) => r.type)).toEqual([0, 2]);
    expect((await failure(c.read(0, 512))).code).toBe('CBT_NBD_DISCONNECTED');
  });
});

describe('readRanges', () => {
  test('one connection when the server does not advertise multi-conn; pieces in order', async () => {
    const s = await fake({ size: 1 << 20, onRequest: answerReads() });
    const seen: number[] = [];
    const res = await readRanges(
      [{ offset: 300000, length: 100000 }, { offset: 0, length: 70000 }],
      (offset, data) => {
        seen.push(offset);
        expect(data.equals(pattern(offset, data.length))).toBe(true);
      },
      { connect: () => NbdClient.connect({ socketPath: s.socketPath, timeoutMs: TIMEOUT }), connections: 4, requestSize: 32768 },
    );
    expect(res.bytesRead).toBe(170000);
    expect(s.connections).toBe(1);
    expect(seen[0]).toBe(300000);
    expect(seen.indexOf(0)).toBe(4);
  });

  test('several connections with multi-conn; back-pressure bounds what is outstanding', async () => {
    const s = await fake({ size: 2 << 20, transmissionFlags: 0x103, onRequest: answerReads(2) });
    let outstanding = 0;
    let peak = 0;
    const origPush = s.requests.push.bind(s.requests);
    s.requests.push = (...r) => {
      outstanding++;
      peak = Math.max(peak, outstanding);
      return origPush(...r);
    };
    const res = await readRanges(
      [{ offset: 0, length: 2 << 20 }],
      async () => {
        outstanding--;
        await new Promise((r) => setTimeout(r, 1));
      },
      { connect: () => NbdClient.connect({ socketPath: s.socketPath, timeoutMs: TIMEOUT }), connections: 3, inFlight: 2, requestSize: 65536 },
    );
    expect(res.bytesRead).toBe(2 << 20);
    expect(s.connections).toBe(3);
    expect(peak).toBeLessThanOrEqual(6);
  });

  test('reuseBuffers lends shared buffers back and forth: correct data, bounded allocation', async () => {
    const s = await fake({ size: 2 << 20, onRequest: answerReads() });
    const backings = new Set<ArrayBufferLike>();
    let delivered = 0;
    await readRanges(
      [{ offset: 0, length: 2 << 20 }],
      (offset, data, release) => {
        expect(data.buffer).toBeInstanceOf(SharedArrayBuffer);
        expect(data.equals(pattern(offset, data.length))).toBe(true);
        backings.add(data.buffer);
        delivered += data.length;
        setImmediate(release);
      },
      { connect: () => NbdClient.connect({ socketPath: s.socketPath, timeoutMs: TIMEOUT }), inFlight: 2, requestSize: 65536, reuseBuffers: true },
    );
    expect(delivered).toBe(2 << 20);
    // 32 pieces through a window of 2 (plus the ones still lent out): a handful of buffers, not 32.
    expect(backings.size).toBeLessThanOrEqual(4);
  });

  test('abort through the signal rejects promptly with CBT_NBD_ABORTED and closes the connections', async () => {
    const s = await fake({ size: 1 << 20, transmissionFlags: 0x103 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(new Error('operator cancelled')), 50);
    const f = await failure(
      readRanges([{ offset: 0, length: 1 << 20 }], () => undefined, {
        connect: () => NbdClient.connect({ socketPath: s.socketPath, timeoutMs: 10_000 }),
        connections: 2,
        signal: ac.signal,
      }),
    );
    expect(f.code).toBe('CBT_NBD_ABORTED');
    expect(f.ms).toBeLessThan(5000); // well below the 10 s timeout: the abort ended it
    // The server sees the close once its side's event loop gets to it (later on a loaded machine).
    for (let i = 0; i < 500 && s.sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(s.sockets.size).toBe(0);
  });

  test('abort while onData is stuck still returns', async () => {
    const s = await fake({ size: 1 << 20, onRequest: answerReads() });
    const ac = new AbortController();
    const f = await failure(
      readRanges([{ offset: 0, length: 1 << 20 }], () => {
        setTimeout(() => ac.abort(), 20);
        return new Promise<void>(() => undefined);
      }, { connect: () => NbdClient.connect({ socketPath: s.socketPath, timeoutMs: 10_000 }), signal: ac.signal }),
    );
    expect(f.code).toBe('CBT_NBD_ABORTED');
  });

  test('an error from onData or from the server rejects and drops the connections', async () => {
    const s = await fake({ size: 1 << 20, onRequest: answerReads() });
    const boom = new Error('repository full');
    await expect(
      readRanges([{ offset: 0, length: 1 << 20 }], () => { throw boom; }, { connect: () => NbdClient.connect({ socketPath: s.socketPath }) }),
    ).rejects.toBe(boom);
    const bad = await fake({
      size: 1 << 20,
      onRequest: (req, sock) => sock.write(req.offset >= 524288 ? errorChunk(req.cookie, 5, 'medium error') : dataChunk(req.cookie, req.offset, pattern(req.offset, req.length))),
    });
    let delivered = 0;
    const f = await failure(
      readRanges([{ offset: 0, length: 1 << 20 }], (_o, d) => void (delivered += d.length), {
        connect: () => NbdClient.connect({ socketPath: bad.socketPath }),
        requestSize: 65536,
      }),
    );
    expect(f.code).toBe('CBT_NBD_SERVER_ERROR');
    expect(delivered).toBe(524288);
    for (let i = 0; i < 500 && s.sockets.size + bad.sockets.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(s.sockets.size + bad.sockets.size).toBe(0);
  });
});
