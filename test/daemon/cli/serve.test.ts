/** `pve-cbt serve` as a process: prints the URI, nbdcopy reads the backup byte-exact, SIGTERM ends it with exit 0. */
import fs from 'node:fs';
import path from 'node:path';
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from '../repository/repo-test-helpers';

const run = promisify(execFile);
const MAIN = path.join(__dirname, '../../../dist/daemon/cli/main.js');

test('serve prints an nbd+unix URI that nbdcopy reads byte-exact, and stops on SIGTERM', async () => {
  const tmp = tempDir();
  try {
    const image = path.join(tmp, 'disk.raw');
    fs.writeFileSync(image, Buffer.concat([seededBytes('s', 300 * 1024), Buffer.alloc(200 * 1024), seededBytes('t', 12345)]));
    const repoDir = path.join(tmp, 'state', 'repo');
    const repo = await Repository.open(repoDir, { create: true, chunkSize: 64 * 1024 });
    const m = await backupImage(repo, image, { vmid: 7 });
    const config = path.join(tmp, 'config.json');
    fs.writeFileSync(config, JSON.stringify({ stateDir: path.join(tmp, 'state'), repository: repoDir, socketPath: path.join(tmp, 'run', 's.sock'), logDir: path.join(tmp, 'log') }));
    const sock = path.join(tmp, 'nbd.sock');
    const child = spawn(process.execPath, [MAIN, '--config', config, 'serve', m.id, '--disk', 'scsi0', '--socket', sock, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += String(d)));
    const first = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d) => {
        out += String(d);
        if (out.includes('\n')) resolve(out.split('\n')[0]);
      });
      child.on('exit', (code) => reject(new Error(`exited ${code}: ${err}`)));
    });
    const info = JSON.parse(first) as { uri: string; size: number };
    expect(info.uri).toBe(`nbd+unix:///scsi0?socket=${sock}`);
    const out = path.join(tmp, 'out.raw');
    await run('nbdcopy', [info.uri, out]);
    expect(sha256File(out)).toBe(sha256File(image));
    const code = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    expect(await code).toBe(0);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
