/**
 * Parking on real qcow2 images with qemu-img (daemon/parking/park-bitmaps.ts): the bitmap leaves
 * the image and comes back (name, granularity, recording) when nothing changed (that its dirty
 * bits come back too is proven end to end in test/e2e/pve-rollback.test.ts); any change, a
 * put-back without time left and an inconsistent bitmap each invalidate the disk with a reason
 * and leave no pve-cbt bitmap or sidecar behind; the pre-start budget stays inside the hook's wait.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parkDisk, parkVm, unparkVm, type ParkingContext } from '../../../daemon/parking/park-bitmaps';
import { readRecords, sidecarPath } from '../../../daemon/parking/park-store';
import { preStartBudgetMs } from '../../../daemon/parking/parking-service';

const BITMAP = 'pve-cbt-scsi0-g3';

function bitmaps(img: string): { name: string; count?: number; flags: string[] }[] {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', img], { encoding: 'utf8' })) as {
    'format-specific'?: { data?: { bitmaps?: { name: string; flags: string[] }[] } };
  };
  return info['format-specific']?.data?.bitmaps ?? [];
}

describe('parking bitmaps of a stopped qcow2 image', () => {
  let dir: string;
  let img: string;
  let invalid: { disk: string; reason: string }[];
  let ctx: ParkingContext;
  const disk = (): { key: string; path: string; format: string } => ({ key: 'scsi0', path: img, format: 'qcow2' });

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-park-'));
    img = path.join(dir, 'vm-100-disk-0.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '8M']);
    execFileSync('qemu-img', ['bitmap', '--add', '-g', '65536', img, BITMAP]);
    execFileSync('qemu-img', ['bitmap', '--add', img, 'pbs-incremental-dirty-bitmap']);
    // Recorded by the bitmap: qemu-io loads the image's enabled bitmaps and they track its writes.
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 1M 64k', img]);
    invalid = [];
    ctx = { stateDir: path.join(dir, 'state'), invalidate: (_vmid, d, reason) => void invalid.push({ disk: d, reason }) };
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('park then unpark of an unchanged image: the same bitmap comes back; only pve-cbt bitmaps move', async () => {
    expect(await parkDisk(ctx, 100, disk())).toEqual([BITMAP]);
    expect(bitmaps(img).map((b) => b.name)).toEqual(['pbs-incremental-dirty-bitmap']);
    expect(fs.existsSync(sidecarPath(ctx.stateDir, 100, 'scsi0'))).toBe(true);
    // Snapshot apply is possible once the pve-cbt bitmap is out (the other one is not ours to move).
    execFileSync('qemu-img', ['bitmap', '--remove', img, 'pbs-incremental-dirty-bitmap']);
    execFileSync('qemu-img', ['bitmap', '--add', img, 'pbs-incremental-dirty-bitmap']);
    // That bitmap edit is a change too: start over from a fresh park for the unchanged case.
    invalid = [];
    await parkVm(ctx, 100, [disk()]);
    expect(await unparkVm(ctx, 100)).toEqual([{ disk: 'scsi0', outcome: 'changed', reason: expect.stringMatching(/image changed while the VM was stopped/) }]);

    execFileSync('qemu-img', ['bitmap', '--add', '-g', '65536', img, BITMAP]);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 8 2M 64k', img]);
    await parkVm(ctx, 100, [disk()]);
    invalid = [];
    expect(await unparkVm(ctx, 100)).toEqual([{ disk: 'scsi0', outcome: 'restored', bitmaps: [BITMAP] }]);
    expect(invalid).toEqual([]);
    expect(bitmaps(img).find((b) => b.name === BITMAP)?.flags).toEqual(['auto']);
    expect(readRecords(ctx.stateDir, 100)).toEqual([]);
    expect(fs.existsSync(sidecarPath(ctx.stateDir, 100, 'scsi0'))).toBe(false);
  });

  test('a snapshot applied while parked: dropped, disk invalidated naming the change', async () => {
    execFileSync('qemu-img', ['bitmap', '--remove', img, 'pbs-incremental-dirty-bitmap']);
    await parkVm(ctx, 100, [disk()]);
    execFileSync('qemu-img', ['snapshot', '-c', 's', img]);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 9 3M 64k', img]);
    execFileSync('qemu-img', ['snapshot', '-a', 's', img]);
    const [r] = await unparkVm(ctx, 100);
    expect(r.outcome).toBe('changed');
    expect(invalid).toEqual([{ disk: 'scsi0', reason: expect.stringMatching(/snapshot count changed from 0 to 1; active L1 table changed/) }]);
    expect(bitmaps(img)).toEqual([]);
    expect(fs.existsSync(sidecarPath(ctx.stateDir, 100, 'scsi0'))).toBe(false);
  });

  test('no time left for the put-back: fail open, nothing half put back, disk invalidated', async () => {
    await parkVm(ctx, 100, [disk()]);
    const [r] = await unparkVm(ctx, 100, 0);
    expect(r).toEqual({ disk: 'scsi0', outcome: 'failed', reason: expect.stringMatching(/could not be put back: no time left of 0 ms/) });
    expect(bitmaps(img).map((b) => b.name)).toEqual(['pbs-incremental-dirty-bitmap']);
    expect(invalid).toHaveLength(1);
  });

  test('an inconsistent bitmap (QEMU killed) is removed, not kept, and the disk invalidated', async () => {
    // Mark it in use as a QEMU that never closed the image leaves it: set the IN_USE flag offline.
    execFileSync('qemu-img', ['bitmap', '--remove', img, 'pbs-incremental-dirty-bitmap']);
    const pid = execFileSync('sh', ['-c', `qemu-system-x86_64 -nodefaults -display none -machine none -daemonize -pidfile ${dir}/q.pid -blockdev driver=file,filename=${img},node-name=f -blockdev driver=qcow2,file=f,node-name=q && cat ${dir}/q.pid`], { encoding: 'utf8' }).trim();
    process.kill(Number(pid), 'SIGKILL');
    for (let i = 0; i < 1000 && fs.existsSync(`/proc/${pid}`); i++) execFileSync('sleep', ['0.02']);
    expect(bitmaps(img).find((b) => b.name === BITMAP)?.flags).toContain('in-use');
    expect(await parkDisk(ctx, 100, disk())).toEqual([]);
    expect(bitmaps(img)).toEqual([]);
    expect(invalid).toEqual([{ disk: 'scsi0', reason: expect.stringMatching(/inconsistent/) }]);
    expect(readRecords(ctx.stateDir, 100)).toEqual([]);
  });

  test.each<[number, number]>([
    [50, 25],
    [1500, 750],
    [2000, 1000],
    [10_000, 1000],
  ])('pre-start budget for hookTimeoutMs %i is %i ms', (hook, budget) => {
    expect(preStartBudgetMs(hook)).toBe(budget);
  });
});
