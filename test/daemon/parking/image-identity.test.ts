/**
 * What `identityChanges` names for each kind of change (table), and that real offline operations on
 * a real qcow2 image change the identity readImageIdentity reads while `qemu-img info` does not.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { identityChanges, readImageIdentity, type ImageIdentity } from '../../../daemon/parking/image-identity';
import { ParkingNotQcow2Error } from '../../../daemon/parking/parking-errors';

const BASE: ImageIdentity = {
  dev: '2049',
  ino: '100',
  size: '393216',
  mtimeNs: '1000',
  ctimeNs: '1000',
  virtualSize: 16 << 20,
  nbSnapshots: 0,
  header: 'h',
  l1: 'l',
  snapshots: '',
};

describe('identityChanges', () => {
  test.each<[string, Partial<ImageIdentity>, string[]]>([
    ['nothing', {}, []],
    ['another file', { ino: '101' }, ['volume file replaced (inode 2049:100 is now 2049:101)']],
    ['resize', { virtualSize: 20 << 20, header: 'h2' }, ['virtual size changed from 16777216 to 20971520 bytes (resized)', 'qcow2 header changed']],
    ['snapshot created', { nbSnapshots: 1, snapshots: 's' }, ['snapshot count changed from 0 to 1']],
    ['snapshot table rewritten', { nbSnapshots: 0, snapshots: 'x' }, ['snapshot table changed']],
    ['snapshot applied', { l1: 'l2' }, ['active L1 table changed (snapshot applied or clusters allocated)']],
    ['write in place', { mtimeNs: '2000', ctimeNs: '2000' }, ['file modified (mtime changed)', 'file changed (ctime changed)']],
    ['copy restoring the old mtime', { ctimeNs: '3000' }, ['file changed (ctime changed)']],
    ['grown file', { size: '458752' }, ['file size changed from 393216 to 458752 bytes']],
  ])('%s', (_name, change, expected) => {
    expect(identityChanges(BASE, { ...BASE, ...change })).toEqual(expected);
  });
});

describe('readImageIdentity on a real image', () => {
  let dir: string;
  let img: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-ident-'));
    img = path.join(dir, 'a.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '16M']);
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 64k', img]);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('qemu-img info and a read-only qemu-io read leave it unchanged', async () => {
    const before = await readImageIdentity(img);
    execFileSync('qemu-img', ['info', img]);
    execFileSync('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read 0 64k', img]);
    expect(identityChanges(before, await readImageIdentity(img))).toEqual([]);
  });

  test.each<[string, string[][], RegExp]>([
    ['snapshot -c', [['qemu-img', 'snapshot', '-c', 's', '%']], /snapshot count changed from 0 to 1/],
    ['snapshot -a', [['qemu-img', 'snapshot', '-c', 's', '%'], ['qemu-io', '-f', 'qcow2', '-c', 'write -P 2 1M 64k', '%'], ['mark'], ['qemu-img', 'snapshot', '-a', 's', '%']], /active L1 table changed/],
    ['resize', [['qemu-img', 'resize', '-f', 'qcow2', '%', '20M']], /virtual size changed from 16777216 to 20971520/],
    ['write in place', [['qemu-io', '-f', 'qcow2', '-c', 'write -P 3 0 4k', '%']], /file modified \(mtime changed\)/],
  ])('%s is seen', async (_name, steps, expected) => {
    let before = await readImageIdentity(img);
    for (const [cmd, ...args] of steps) {
      if (cmd === 'mark') before = await readImageIdentity(img);
      else execFileSync(cmd, args.map((a) => (a === '%' ? img : a)));
    }
    expect(identityChanges(before, await readImageIdentity(img)).join('; ')).toMatch(expected);
  });

  test('a raw file is CBT_PARKING_NOT_QCOW2', async () => {
    const raw = path.join(dir, 'b.raw');
    fs.writeFileSync(raw, Buffer.alloc(4096));
    await expect(readImageIdentity(raw)).rejects.toMatchObject({ code: ParkingNotQcow2Error.code });
  });
});
