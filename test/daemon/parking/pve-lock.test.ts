/**
 * Proxmox's per-VM flock as pve-cbt holds it (daemon/pve/pve-lock.ts): two holders exclude each
 * other, the wait is bounded with its own error code, the lock is the same flock(2) lock the
 * util-linux command and qemu-server take, and it goes with its holder.
 */
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { acquirePveLock, pveLockPath, withPveLock } from '../../../daemon/pve/pve-lock';
import { PveLockTimeoutError } from '../../../daemon/pve/pve-errors';

const execFileP = promisify(execFile);

/** Exit status of `flock -n FILE true`: 0 when the lock was free, 1 when someone holds it. */
async function freeForOthers(file: string): Promise<boolean> {
  try {
    await execFileP('flock', ['-n', file, 'true']);
    return true;
  } catch (err) {
    if ((err as { code?: number }).code === 1) return false;
    throw err;
  }
}

describe('Proxmox per-VM lock', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-lock-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('the file is lock-VMID.conf in the lock directory', () => {
    expect(pveLockPath('/var/lock/qemu-server', 100)).toBe('/var/lock/qemu-server/lock-100.conf');
  });

  test('two holders exclude each other; the second waits a bounded time, then CBT_PVE_LOCK_TIMEOUT', async () => {
    const a = await acquirePveLock(dir, 100);
    try {
      await expect(acquirePveLock(dir, 100, 300)).rejects.toMatchObject({ code: PveLockTimeoutError.code, details: { vmid: 100, timeoutMs: 300 } });
      // Another VM's lock is another file.
      await withPveLock(dir, 101, async () => undefined, 1000);
    } finally {
      await a.release();
    }
    const b = await acquirePveLock(dir, 100, 1000);
    await b.release();
  });

  test('the second holder gets the lock as soon as the first releases it, and never both at once', async () => {
    const order: string[] = [];
    const a = await acquirePveLock(dir, 7);
    const second = withPveLock(dir, 7, async () => {
      order.push('b holds');
    }, 5000);
    await new Promise((r) => setTimeout(r, 200));
    order.push('a releases');
    await a.release();
    await second;
    expect(order).toEqual(['a releases', 'b holds']);
  });

  test('it is the flock(2) lock util-linux flock and qemu-server use', async () => {
    const file = pveLockPath(dir, 42);
    await withPveLock(dir, 42, async () => {
      expect(await freeForOthers(file)).toBe(false);
    });
    expect(await freeForOthers(file)).toBe(true);
  });

  test('a pve-cbt process that is killed while holding it leaves the lock free', async () => {
    const file = pveLockPath(dir, 9);
    const lib = path.resolve(__dirname, '../../../dist/daemon/pve/pve-lock.js');
    if (!fs.existsSync(lib)) throw new Error(`no build at ${lib}: run 'npm run build' first`);
    const script = `require(${JSON.stringify(lib)}).acquirePveLock(${JSON.stringify(dir)}, 9).then(() => process.stdout.write('held\\n'))`;
    const child = spawn(process.execPath, ['-e', `${script}; setInterval(() => {}, 1000)`], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout.on('data', (d: Buffer) => d.toString().includes('held') && resolve()));
    expect(await freeForOthers(file)).toBe(false);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // flock(1)'s cat sees its stdin close with the holder and exits, which drops the lock.
    const b = await acquirePveLock(dir, 9, 5000);
    await b.release();
  });
});
