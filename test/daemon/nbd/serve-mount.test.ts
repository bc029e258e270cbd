/**
 * File-level restore from a served backup: an ext4 image made with `mkfs.ext4 -d`, backed up,
 * served by pve-cbt's NBD server, exposed as a file by `nbdfuse` (libnbd-bin; needs /dev/fuse and
 * fuse3's fusermount3, installed by scripts/setup.sh) and loop-mounted read-only. The nbdfuse file
 * equals the image byte for byte, and files inside the mount equal the ones the image was made from.
 * Needs root (mount); the test says what the environment lacks instead of passing without a mount.
 * The NBD server runs in this process, so everything that reads through nbdfuse is asynchronous (a
 * synchronous read would block the event loop that has to answer it).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { Repository } from '../../../daemon/repository/repository';
import { ServeDiskSource } from '../../../daemon/repository/serve-source';
import { NbdExportServer } from '../../../daemon/nbd/nbd-server';
import { backupImage, seededBytes, sha256File, tempDir } from '../repository/repo-test-helpers';

const run = promisify(execFile);

async function sha256Async(file: string): Promise<string> {
  return crypto.createHash('sha256').update(await fs.promises.readFile(file)).digest('hex');
}

async function waitFor(what: string, ok: () => boolean, child: ChildProcess, stderr: () => string): Promise<void> {
  for (let i = 0; !ok(); i++) {
    if (child.exitCode !== null) throw new Error(`${what}: nbdfuse exited ${child.exitCode}: ${stderr()}`);
    if (i >= 300) throw new Error(`${what}: not after 30 s: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('nbdfuse exposes a served backup as a file that mounts read-only; the files inside are the originals', async () => {
  // What this needs from the machine, checked first so a failure names it.
  expect({ root: process.getuid?.() === 0, devFuse: fs.existsSync('/dev/fuse'), loopControl: fs.existsSync('/dev/loop-control') }).toEqual({ root: true, devFuse: true, loopControl: true });
  await run('fusermount3', ['--version']);

  const dir = tempDir();
  const fuseDir = path.join(dir, 'fuse');
  const mnt = path.join(dir, 'mnt');
  let nbdfuse: ChildProcess | undefined;
  let mounted = false;
  let reader: ServeDiskSource | undefined;
  let server: NbdExportServer | undefined;
  try {
    const src = path.join(dir, 'src');
    fs.mkdirSync(path.join(src, 'etc', 'deep'), { recursive: true });
    fs.writeFileSync(path.join(src, 'etc', 'hostname'), 'restored-vm\n');
    fs.writeFileSync(path.join(src, 'etc', 'deep', 'blob.bin'), seededBytes('blob', 700 * 1024 + 13));
    const image = path.join(dir, 'fs.raw');
    await run('mkfs.ext4', ['-q', '-F', '-b', '4096', '-d', src, image, '16M']);
    const repoDir = path.join(dir, 'repo');
    const repo = await Repository.open(repoDir, { create: true, chunkSize: 64 * 1024 });
    const m = await backupImage(repo, image, { vmid: 104 });
    reader = await ServeDiskSource.open(repoDir, m.id, 'scsi0');
    server = new NbdExportServer({ exportName: 'scsi0', source: reader });
    const socket = path.join(dir, 'nbd.sock');
    await server.listen({ path: socket });

    fs.mkdirSync(fuseDir);
    fs.mkdirSync(mnt);
    const pidFile = path.join(dir, 'nbdfuse.pid');
    const child = spawn('nbdfuse', ['-r', '-P', pidFile, path.join(fuseDir, 'disk'), `nbd+unix:///scsi0?socket=${socket}`], { stdio: ['ignore', 'ignore', 'pipe'] });
    nbdfuse = child;
    let err = '';
    child.stderr?.on('data', (d) => (err += String(d)));
    await waitFor('nbdfuse ready', () => fs.existsSync(pidFile), child, () => err);

    const exposed = path.join(fuseDir, 'disk');
    expect((await fs.promises.stat(exposed)).size).toBe(fs.statSync(image).size);
    expect(await sha256Async(exposed)).toBe(sha256File(image));

    await run('mount', ['-o', 'ro,loop', exposed, mnt]);
    mounted = true;
    expect(await fs.promises.readFile(path.join(mnt, 'etc', 'hostname'), 'utf8')).toBe('restored-vm\n');
    expect(await sha256Async(path.join(mnt, 'etc', 'deep', 'blob.bin'))).toBe(sha256File(path.join(src, 'etc', 'deep', 'blob.bin')));
    // Read-only all the way: the mount refuses writes.
    await expect(fs.promises.writeFile(path.join(mnt, 'new'), 'x')).rejects.toThrow(/EROFS/);
  } finally {
    if (mounted) await run('umount', [mnt]);
    if (nbdfuse && nbdfuse.exitCode === null) {
      const exited = new Promise((r) => nbdfuse!.once('exit', r));
      await run('fusermount3', ['-u', fuseDir]).catch(() => nbdfuse!.kill('SIGTERM'));
      await exited;
    }
    await server?.close();
    await reader?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
