/**
 * pve-cbt's NBD server against real clients: nbdcopy, qemu-img convert, nbdinfo --map, a qcow2
 * overlay opened by qemu-img compare; byte for byte with the backed-up image.
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

describe('NbdExportServer (real clients)', () => {
  let dir: string;
  let image: string;
  let reader: ServeDiskSource;
  let server: NbdExportServer;
  let socket: string;
  let uri: string;

  beforeAll(async () => {
    dir = tempDir();
    image = path.join(dir, 'disk.raw');
    // 2 MiB + 3 KiB (last chunk short): data, a 512 KiB hole, data, zeros written as data, data.
    const size = 2 * 1024 * 1024 + 3 * 1024;
    fs.writeFileSync(image, Buffer.alloc(0));
    fs.truncateSync(image, size);
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, seededBytes('a', 5 * CHUNK), 0, 5 * CHUNK, 0);
    fs.writeSync(fd, seededBytes('b', 3 * CHUNK + 100), 0, 3 * CHUNK + 100, 13 * CHUNK);
    fs.writeSync(fd, seededBytes('c', 2 * CHUNK), 0, 2 * CHUNK, 24 * CHUNK);
    fs.writeSync(fd, seededBytes('d', 3 * 1024), 0, 3 * 1024, 32 * CHUNK);
    fs.closeSync(fd);
    const repoDir = path.join(dir, 'repo');
    const repo = await Repository.open(repoDir, { create: true, chunkSize: CHUNK });
    const m = await backupImage(repo, image, { vmid: 100 });
    reader = await ServeDiskSource.open(repoDir, m.id, 'scsi0');
    server = new NbdExportServer({ exportName: 'scsi0', source: reader });
    socket = path.join(dir, 'nbd.sock');
    await server.listen({ path: socket });
    uri = `nbd+unix:///scsi0?socket=${socket}`;
  });

  afterAll(async () => {
    await server?.close();
    await reader?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('nbdcopy reads it byte-exact, also with 4 connections at once (multi-conn)', async () => {
    const out = path.join(dir, 'copy1.raw');
    await run('nbdcopy', [uri, out]);
    expect(sha256File(out)).toBe(sha256File(image));
    const out4 = path.join(dir, 'copy4.raw');
    await run('nbdcopy', ['--connections=4', '--request-size=65536', uri, out4]);
    expect(sha256File(out4)).toBe(sha256File(image));
  });

  test('qemu-img convert reads it byte-exact', async () => {
    const out = path.join(dir, 'convert.raw');
    await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', uri, out]);
    expect(sha256File(out)).toBe(sha256File(image));
  });

  test('nbdinfo --map reports the zero chunks as holes and the rest as data', async () => {
    const { stdout } = await run('nbdinfo', ['--map', '--json', uri]);
    const map = (JSON.parse(stdout) as { offset: number; length: number; type: number }[]).map((e) => [e.offset, e.length, e.type]);
    const size = fs.statSync(image).size;
    expect(map).toEqual([
      [0, 5 * CHUNK, 0],
      [5 * CHUNK, 8 * CHUNK, 3],
      [13 * CHUNK, 4 * CHUNK, 0],
      [17 * CHUNK, 7 * CHUNK, 3],
      [24 * CHUNK, 2 * CHUNK, 0],
      [26 * CHUNK, 6 * CHUNK, 3],
      [32 * CHUNK, size - 32 * CHUNK, 0],
    ]);
    const info = await run('nbdinfo', ['--json', uri]);
    const exp = (JSON.parse(info.stdout) as { exports: { 'is_read_only': boolean; 'can_multi_conn': boolean; 'export-size': number }[] }).exports[0];
    expect(exp.is_read_only).toBe(true);
    expect(exp.can_multi_conn).toBe(true);
    expect(exp['export-size']).toBe(size);
  });

  test('QEMU opens it through a qcow2 overlay; qemu-img compare finds it identical', async () => {
    const overlay = path.join(dir, 'overlay.qcow2');
    await run('qemu-img', ['create', '-f', 'qcow2', '-b', uri, '-F', 'raw', overlay]);
    await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', overlay, image]);
    const { stdout } = await run('qemu-io', ['-r', '-f', 'qcow2', '-c', `read -P 0 ${5 * CHUNK} ${8 * CHUNK}`, overlay]);
    expect(stdout).toContain(`read ${8 * CHUNK}/${8 * CHUNK} bytes`);
  });
});
