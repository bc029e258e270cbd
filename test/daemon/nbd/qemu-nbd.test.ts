/**
 * The client against a real qemu-nbd: extents must equal what nbdinfo (libnbd) prints for the same
 * export, and bytes must hash equal to the image as qemu-img reads it.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isCbtError } from '../../../shared/errors/cbt-error';
import { clipExtents, mergeExtents } from '../../../daemon/nbd/extent';
import { mapExtents } from '../../../daemon/nbd/map-extents';
import { NbdClient } from '../../../daemon/nbd/nbd-client';
import { readRanges } from '../../../daemon/nbd/nbd-reader';
import { type QemuNbd, imageBytes, nbdinfoMap, qemuIo, sha256, startQemuNbd } from './qemu-nbd-server';

const MiB = 1024 * 1024;
const ALLOC = 'base:allocation';
const DIRTY = 'qemu:dirty-bitmap:b0';

let dir: string;
const servers: QemuNbd[] = [];
const clients: NbdClient[] = [];

async function serve(image: string, opts: Parameters<typeof startQemuNbd>[2]): Promise<QemuNbd> {
  const s = await startQemuNbd(dir, image, opts);
  servers.push(s);
  return s;
}

async function connect(socketPath: string, metaContexts: string[] = [ALLOC], exportName?: string): Promise<NbdClient> {
  const c = await NbdClient.connect({ socketPath, metaContexts, exportName, timeoutMs: 10_000 });
  clients.push(c);
  return c;
}

async function codeOf(p: Promise<unknown>): Promise<{ code: string; details: Record<string, unknown> }> {
  try {
    await p;
  } catch (err) {
    if (isCbtError(err)) return { code: err.code, details: err.details };
    throw err;
  }
  throw new Error('expected a rejection');
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});

afterAll(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(servers.map((s) => s.stop()));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('raw sparse image', () => {
  let image: string;
  let server: QemuNbd;
  beforeAll(async () => {
    image = path.join(dir, 'sparse.raw');
    execFileSync('qemu-img', ['create', '-f', 'raw', image, String(24 * MiB + 4608)], { stdio: 'ignore' });
    qemuIo(image, 'raw', ['write -P 0xaa 0 1M', 'write -z 4M 1M', 'write -P 0x55 9M 3M', 'write -P 0x77 20M 4k', 'write -P 0x66 24M 4608']);
    server = await serve(image, { format: 'raw' });
  });

  test('extents equal nbdinfo --map and bytes equal the file', async () => {
    const c = await connect(server.socket);
    expect(c.size).toBe(24 * MiB + 4608);
    expect(c.hasContext(ALLOC)).toBe(true);
    const map = await mapExtents(c, ALLOC);
    expect(map).toEqual(nbdinfoMap(server.uri));
    expect(map.some((e) => e.flags !== 0)).toBe(true);
    expect(sha256(await c.read(0, c.size))).toBe(sha256(fs.readFileSync(image)));
  });

  test('block status of an unaligned sub-range covers exactly that range', async () => {
    const c = await connect(server.socket);
    const full = await mapExtents(c, ALLOC);
    for (const [offset, length] of [[1000, 5 * MiB + 17], [MiB - 1, 2], [20 * MiB + 100, 4 * MiB + 4508]]) {
      expect(await c.blockStatus(ALLOC, offset as number, length as number)).toEqual(mergeExtents(clipExtents(full, offset as number, length as number)));
    }
    expect(await mapExtents(c, ALLOC, { stepSize: 3 * MiB + 512 })).toEqual(full);
  });

  test('unaligned reads return the file bytes', async () => {
    const c = await connect(server.socket);
    const ref = fs.readFileSync(image);
    for (const [offset, length] of [[1, 1], [MiB - 3, 7], [4 * MiB - 100, MiB + 200], [c.size - 1, 1]]) {
      expect((await c.read(offset as number, length as number)).equals(ref.subarray(offset, (offset as number) + (length as number)))).toBe(true);
    }
  });
});

test('TCP: the same export over 127.0.0.1 reads and maps the same', async () => {
  const image = path.join(dir, 'tcp.raw');
  execFileSync('qemu-img', ['create', '-f', 'raw', image, String(6 * MiB)], { stdio: 'ignore' });
  qemuIo(image, 'raw', ['write -P 0x5c 1M 512k', 'write -P 0x5d 5M 4k']);
  const server = await serve(image, { format: 'raw', tcp: true });
  const c = await NbdClient.connect({ host: '127.0.0.1', port: server.port, metaContexts: [ALLOC], timeoutMs: 10_000 });
  clients.push(c);
  expect(await mapExtents(c, ALLOC)).toEqual(nbdinfoMap(server.uri));
  expect(sha256(await c.read(0, c.size))).toBe(sha256(fs.readFileSync(image)));
  await c.close();
});

describe('qcow2 with holes, zero clusters and a persistent dirty bitmap', () => {
  let image: string;
  let server: QemuNbd;
  beforeAll(async () => {
    image = path.join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['create', '-f', 'qcow2', image, String(40 * MiB)], { stdio: 'ignore' });
    qemuIo(image, 'qcow2', ['write -P 0xaa 0 1M', 'write -z 4M 1M', 'write -P 0x55 10M 3M', 'write -P 0x33 36M 4M']);
    execFileSync('qemu-img', ['bitmap', '--add', image, 'b0']);
    // qemu-io opens the image with its enabled persistent bitmap, so these writes mark it dirty.
    qemuIo(image, 'qcow2', ['write -P 0x11 2M 64k', 'write -P 0x12 20M 100k', 'write -z 11M 8k', 'write -P 0x13 39M 1M']);
    server = await serve(image, { format: 'qcow2', bitmap: 'b0', shared: 8 });
  });

  test('allocation and dirty-bitmap extents equal nbdinfo, bytes equal qemu-img convert', async () => {
    const c = await connect(server.socket, [ALLOC, DIRTY]);
    expect(c.contextNames.sort()).toEqual([ALLOC, DIRTY]);
    expect(await mapExtents(c, ALLOC)).toEqual(nbdinfoMap(server.uri));
    const dirty = await mapExtents(c, DIRTY);
    expect(dirty).toEqual(nbdinfoMap(server.uri, DIRTY));
    const K64 = 64 * 1024;
    expect(dirty.filter((e) => e.flags & 1).map((e) => [e.offset, e.length])).toEqual([
      [2 * MiB, K64],
      [10 * MiB + 1 * MiB, K64],
      [20 * MiB, 2 * K64],
      [39 * MiB, MiB],
    ]);
    // 40 MiB is more than the 32 MiB maximum request: the read is split and reassembled.
    expect(sha256(await c.read(0, c.size))).toBe(sha256(imageBytes(dir, image, 'qcow2')));
  });

  test('readRanges over multi-conn delivers the allocated data in order and byte-exact', async () => {
    const probe = await connect(server.socket);
    expect(probe.canMultiConn).toBe(true);
    const data = (await mapExtents(probe, ALLOC)).filter((e) => (e.flags & 1) === 0);
    await probe.close();
    const ref = imageBytes(dir, image, 'qcow2');
    const seen: Array<[number, number]> = [];
    let connects = 0;
    const res = await readRanges(
      data,
      async (offset, buf) => {
        seen.push([offset, buf.length]);
        expect(buf.equals(ref.subarray(offset, offset + buf.length))).toBe(true);
        await new Promise((r) => setImmediate(r));
      },
      { connect: () => (connects++, NbdClient.connect({ socketPath: server.socket })), connections: 3, inFlight: 2, requestSize: 256 * 1024 },
    );
    const total = data.reduce((n, e) => n + e.length, 0);
    expect(res.bytesRead).toBe(total);
    expect(connects).toBe(3);
    expect(seen.every(([, l]) => l <= 256 * 1024)).toBe(true);
    const offsets = seen.map(([o]) => o);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    let covered = 0;
    for (const e of data) for (const [o, l] of seen) if (o >= e.offset && o < e.offset + e.length) covered += l;
    expect(covered).toBe(total);
  });
});

describe('errors from a real server', () => {
  let image: string;
  let server: QemuNbd;
  beforeAll(async () => {
    image = path.join(dir, 'named.raw');
    execFileSync('qemu-img', ['create', '-f', 'raw', image, String(4 * MiB)], { stdio: 'ignore' });
    server = await serve(image, { format: 'raw', exportName: 'disk0' });
  });

  test('an unknown export is refused with the option and reply type', async () => {
    const e = await codeOf(NbdClient.connect({ socketPath: server.socket, exportName: 'nope', timeoutMs: 5000 }));
    expect(e.code).toBe('CBT_NBD_OPTION_REFUSED');
    expect(e.details.reply).toBe('NBD_REP_ERR_UNKNOWN');
  });

  test('a context the server does not offer, a range outside the export, a missing socket', async () => {
    const c = await connect(server.socket, [ALLOC, 'qemu:dirty-bitmap:missing'], 'disk0');
    expect(c.hasContext('qemu:dirty-bitmap:missing')).toBe(false);
    expect((await codeOf(c.blockStatus('qemu:dirty-bitmap:missing', 0, 512))).code).toBe('CBT_NBD_NO_CONTEXT');
    expect((await codeOf(c.read(4 * MiB - 1, 2))).code).toBe('CBT_NBD_OUT_OF_RANGE');
    expect((await c.read(0, 512)).equals(Buffer.alloc(512))).toBe(true);
    await c.close();
    expect((await codeOf(c.read(0, 512))).code).toBe('CBT_NBD_DISCONNECTED');
    expect((await codeOf(NbdClient.connect({ socketPath: path.join(dir, 'absent.sock') }))).code).toBe('CBT_NBD_CONNECT');
  });

  test('I/O errors injected with blkdebug: typed CBT_NBD_SERVER_ERROR (EIO) for block status and reads, never a hang', async () => {
    const blkdebug = (iotype: string): string =>
      `json:${JSON.stringify({
        driver: 'raw',
        file: { driver: 'blkdebug', 'inject-error': [{ event: 'none', iotype, errno: 5 }], image: { driver: 'file', filename: image } },
      })}`;
    const statusFails = await serve(blkdebug('block-status'), { format: 'raw' });
    const c = await connect(statusFails.socket);
    const e = await codeOf(c.blockStatus(ALLOC, MiB, 4096));
    expect(e.code).toBe('CBT_NBD_SERVER_ERROR');
    expect(e.details).toMatchObject({ errno: 'EIO', command: 'NBD_CMD_BLOCK_STATUS(base:allocation)', offset: MiB });
    // QEMU's sparse read checks for holes first, so reads fail the same way; the connection survives.
    const r = await codeOf(c.read(0, 512));
    expect(r.code).toBe('CBT_NBD_SERVER_ERROR');
    expect(r.details).toMatchObject({ errno: 'EIO', command: 'NBD_CMD_READ', offset: 0, length: 512 });
    expect((await codeOf(c.blockStatus(ALLOC, 0, 512))).code).toBe('CBT_NBD_SERVER_ERROR');

    // QEMU 7.2 drops the connection when the read itself fails: that must surface as a typed error, not a hang.
    qemuIo(image, 'raw', ['write -P 0x42 0 1M']);
    const readFails = await serve(blkdebug('read'), { format: 'raw' });
    const d = await connect(readFails.socket, []);
    const results = await Promise.allSettled([d.read(0, 4096), d.read(8192, 4096)]);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      const err = (r as PromiseRejectedResult).reason as { code: string };
      expect(['CBT_NBD_SERVER_ERROR', 'CBT_NBD_DISCONNECTED']).toContain(err.code);
    }
  });
});
