/**
 * A VM on a served backup: `qemu-img create -f qcow2 -b nbd+unix:///scsi0?socket=… -F raw` over
 * pve-cbt's NBD export, then a real qemu-system-x86_64 (the simulator's command line, both of
 * qemu-server's disk layouts) with that overlay as scsi0. Reads through the guest device return the
 * backup byte for byte; a guest write lands in the overlay, and the export still serves the backup.
 */
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Repository } from '../../../daemon/repository/repository';
import { ServeDiskSource } from '../../../daemon/repository/serve-source';
import { NbdExportServer } from '../../../daemon/nbd/nbd-server';
import { backupImage, seededBytes, sha256File, tempDir } from '../repository/repo-test-helpers';
import { ForegroundQemu } from './foreground-qemu';

const run = promisify(execFile);
const CHUNK = 64 * 1024;
const SIZE = 2 * 1024 * 1024;
const READ = 256 * 1024;

describe('QEMU runs on a qcow2 overlay over a served backup', () => {
  let dir: string;
  let image: string;
  let reader: ServeDiskSource;
  let server: NbdExportServer;
  let uri: string;
  let qemu: ForegroundQemu | undefined;

  beforeAll(async () => {
    dir = tempDir();
    image = path.join(dir, 'disk.raw');
    // Data, a hole, data, zeros written as data, data up to the end.
    const data = Buffer.alloc(SIZE);
    seededBytes('x', 6 * CHUNK).copy(data, 0);
    seededBytes('y', 5 * CHUNK + 777).copy(data, 12 * CHUNK);
    seededBytes('z', 4 * CHUNK).copy(data, SIZE - 4 * CHUNK);
    fs.writeFileSync(image, data);
    const repoDir = path.join(dir, 'repo');
    const repo = await Repository.open(repoDir, { create: true, chunkSize: CHUNK });
    const m = await backupImage(repo, image, { vmid: 100 });
    reader = await ServeDiskSource.open(repoDir, m.id, 'scsi0');
    server = new NbdExportServer({ exportName: 'scsi0', source: reader });
    const socket = path.join(dir, 'nbd.sock');
    await server.listen({ path: socket });
    uri = `nbd+unix:///scsi0?socket=${socket}`;
  });

  afterEach(async () => {
    await qemu?.quit();
    qemu = undefined;
  });

  afterAll(async () => {
    await server?.close();
    await reader?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.each(['drive', 'blockdev'] as const)('%s layout: guest reads are the backup, the guest write stays in the overlay', async (layout) => {
    const overlay = path.join(dir, `overlay-${layout}.qcow2`);
    await run('qemu-img', ['create', '-f', 'qcow2', '-b', uri, '-F', 'raw', overlay]);
    qemu = await ForegroundQemu.start(dir, { key: 'scsi0', format: 'qcow2', path: overlay, volid: 'local:100/vm-100-disk-0.qcow2' }, layout);
    expect(await qemu.qmp.execute<{ status: string }>('query-status')).toMatchObject({ status: 'running' });

    const expected = fs.readFileSync(image);
    const parts: Buffer[] = [];
    for (let off = 0; off < SIZE; off += READ) parts.push(await qemu.read('scsi0', off, READ));
    expect(Buffer.concat(parts).equals(expected)).toBe(true);

    // A guest write over data and into the hole, read back through the device.
    const at = 5 * CHUNK + 4096;
    const len = 2 * CHUNK;
    await qemu.write('scsi0', 0x5a, at, len);
    expect((await qemu.read('scsi0', at, len)).equals(Buffer.alloc(len, 0x5a))).toBe(true);
    await qemu.quit();
    qemu = undefined;

    // The write is in the overlay (depth 0, allocated there) ...
    const { stdout } = await run('qemu-img', ['map', '--output=json', '-f', 'qcow2', overlay]);
    const map = JSON.parse(stdout) as { start: number; length: number; depth: number; data: boolean }[];
    const inOverlay = map.filter((e) => e.depth === 0 && e.data);
    expect(inOverlay.length).toBeGreaterThan(0);
    for (const e of inOverlay) {
      expect(e.start).toBeLessThanOrEqual(at);
      expect(e.start + e.length).toBeGreaterThanOrEqual(at + len);
    }
    const overlayView = path.join(dir, `overlay-${layout}.raw`);
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', overlay, overlayView]);
    const want = Buffer.from(expected);
    want.fill(0x5a, at, at + len);
    expect(fs.readFileSync(overlayView).equals(want)).toBe(true);

    // ... and not in the repository: the export still serves the backup byte for byte.
    const copy = path.join(dir, `after-${layout}.raw`);
    await run('nbdcopy', [uri, copy]);
    expect(sha256File(copy)).toBe(sha256File(image));
  });
});
