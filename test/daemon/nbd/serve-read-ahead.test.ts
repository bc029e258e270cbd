/**
 * The served backup under read-ahead (daemon/nbd/chunk-cache.ts) with real clients at once: four
 * nbdcopy connections of one request each (sequential readers, so read-ahead runs), qemu-img
 * convert and a default nbdcopy, all reading the same export at the same time through a cache
 * smaller than the disk (chunks evicted while read ahead). Every copy is byte-exact.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Repository } from '../../../daemon/repository/repository';
import { ServeDiskSource } from '../../../daemon/repository/serve-source';
import { NbdExportServer } from '../../../daemon/nbd/nbd-server';
import { backupImage, seededBytes, sha256File, tempDir } from '../repository/repo-test-helpers';

const run = promisify(execFile);
const CHUNK = 64 * 1024;

let dir: string;
let image: string;
let reader: ServeDiskSource;

beforeAll(async () => {
  dir = tempDir();
  image = path.join(dir, 'disk.raw');
  // 6 MiB + 5 KiB: data with holes between (zero chunks are skipped by read-ahead), a short last chunk.
  const size = 96 * CHUNK + 5 * 1024;
  fs.writeFileSync(image, Buffer.alloc(0));
  fs.truncateSync(image, size);
  const fd = fs.openSync(image, 'r+');
  for (const [seed, at, len] of [
    ['a', 0, 30 * CHUNK],
    ['b', 34 * CHUNK, 20 * CHUNK + 77],
    ['c', 60 * CHUNK, 30 * CHUNK],
    ['d', 96 * CHUNK, 5 * 1024],
  ] as const) {
    fs.writeSync(fd, seededBytes(seed, len), 0, len, at);
  }
  fs.closeSync(fd);
  const repoDir = path.join(dir, 'repo');
  const repo = await Repository.open(repoDir, { create: true, chunkSize: CHUNK });
  const m = await backupImage(repo, image, { vmid: 100 });
  reader = await ServeDiskSource.open(repoDir, m.id, 'scsi0');
});

afterAll(async () => {
  await reader?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test.each([
  { what: 'a cache smaller than the disk (read-ahead evicted before use)', capacityBytes: 6 * CHUNK },
  { what: 'a cache holding the disk', capacityBytes: 128 * CHUNK },
])('four one-request nbdcopy connections, qemu-img convert and nbdcopy at once, with $what: all byte-exact', async ({ capacityBytes }) => {
  const server = new NbdExportServer({ exportName: 'scsi0', source: reader, cache: { capacityBytes, readAhead: 8, aheadInFlight: 4 } });
  const socket = path.join(dir, `nbd-${capacityBytes}.sock`);
  await server.listen({ path: socket });
  const uri = `nbd+unix:///scsi0?socket=${socket}`;
  try {
    const out = (n: string) => path.join(dir, `${n}-${capacityBytes}.raw`);
    await Promise.all([
      run('nbdcopy', ['--connections=4', '--requests=1', '--request-size=65536', uri, out('serial4')]),
      run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out('convert')]),
      run('nbdcopy', [uri, out('default')]),
      run('nbdcopy', ['--connections=1', '--requests=1', '--request-size=4096', uri, out('small')]),
    ]);
    const want = sha256File(image);
    for (const n of ['serial4', 'convert', 'default', 'small']) expect([n, sha256File(out(n))]).toEqual([n, want]);
    expect(server.cache.counts.readAhead).toBeGreaterThan(0);
  } finally {
    await server.close();
  }
});
