/**
 * qcow2-header.ts against images qemu-img itself made (the system's QEMU 7.2 in the qemu-7.2
 * project, QEMU 10 in the qemu-10 project): for every case the header reader says exactly what
 * `qemu-img info` says (image-export.ts `imageInfo`), or null where it leaves the answer to qemu-img.
 * Cases: no bitmaps, one, several (granularities, one disabled), an in_use bitmap after QEMU was
 * killed with SIGKILL, compat 0.10 (version 2), lazy refcounts, a larger cluster, a long name; and
 * the images it must not answer for (raw, encrypted (crypt_method edited in), a bitmaps extension marked inconsistent,
 * the corrupt bit, bytes cut short, a missing file).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { imageInfo } from '../../../daemon/backup/image-export';
import { qcow2BitmapEntries, qcow2HeaderFacts, readQcow2Facts } from '../../../daemon/backup/qcow2-header';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-qcow2-header-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const qemuImg = (...args: string[]) => execFileSync('qemu-img', args, { encoding: 'utf8' });

function image(name: string, createOpts: string[], bitmaps: { name: string; granularity?: number; disable?: boolean }[] = [], size = '64M'): string {
  const file = path.join(dir, `${name}.qcow2`);
  qemuImg('create', '-q', '-f', 'qcow2', ...createOpts, file, size);
  for (const b of bitmaps) {
    qemuImg('bitmap', '--add', ...(b.granularity ? ['-g', String(b.granularity)] : []), '-f', 'qcow2', file, b.name);
    if (b.disable) qemuImg('bitmap', '--disable', '-f', 'qcow2', file, b.name);
  }
  return file;
}

const made: [string, () => string][] = [
  ['no bitmaps', () => image('none', [])],
  ['one bitmap', () => image('one', [], [{ name: 'pve-cbt-scsi0' }])],
  [
    'several bitmaps, granularities, one disabled',
    () => image('several', [], [{ name: 'pve-cbt-scsi0-g1', granularity: 65536 }, { name: 'other', granularity: 1048576 }, { name: 'off', disable: true }, { name: 'x'.repeat(1000), granularity: 512 }]),
  ],
  ['lazy refcounts, 2 MiB clusters, odd size', () => image('lazy', ['-o', 'lazy_refcounts=on,cluster_size=2M'], [{ name: 'b' }], '1000M')],
  ['compat 0.10 (version 2)', () => image('v2', ['-o', 'compat=0.10'])],
  ['40 bitmaps', () => image('many', [], Array.from({ length: 40 }, (_, i) => ({ name: `bitmap-${i}` })))],
];

describe('readQcow2Facts says what qemu-img info says', () => {
  test.each(made)('%s', async (_name, make) => {
    const file = make();
    const facts = readQcow2Facts(file);
    expect(facts).not.toBeNull();
    expect(facts).toEqual(await imageInfo(file, 'qcow2'));
  });

  test('a bitmap left in_use by QEMU killed with SIGKILL', async () => {
    const file = image('killed', [], [{ name: 'pve-cbt-scsi0' }, { name: 'second', disable: true }]);
    const pid = execFileSync('sh', ['-c', `qemu-system-x86_64 -nodefaults -display none -machine none -daemonize -pidfile ${dir}/q.pid -blockdev driver=file,filename=${file},node-name=f -blockdev driver=qcow2,file=f,node-name=q && cat ${dir}/q.pid`], { encoding: 'utf8' }).trim();
    process.kill(Number(pid), 'SIGKILL');
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(Number(pid), 0);
        await new Promise((r) => setTimeout(r, 20));
      } catch {
        break;
      }
    }
    const facts = readQcow2Facts(file);
    expect(facts?.bitmaps.find((b) => b.name === 'pve-cbt-scsi0')).toMatchObject({ inconsistent: true, recording: true });
    expect(facts).toEqual(await imageInfo(file, 'qcow2'));
  });
});

describe('readQcow2Facts leaves to qemu-img what it is not sure of', () => {
  test('raw, a missing file, a folder', () => {
    const raw = path.join(dir, 'raw.img');
    qemuImg('create', '-q', '-f', 'raw', raw, '1M');
    expect(readQcow2Facts(raw)).toBeNull();
    expect(readQcow2Facts(path.join(dir, 'missing.qcow2'))).toBeNull();
    expect(readQcow2Facts(dir)).toBeNull();
  });

  test('a header with the bitmaps extension marked inconsistent, the corrupt bit, encryption, or cut short', () => {
    const head = fs.readFileSync(image('edit', [], [{ name: 'b' }])).subarray(0, 65536);
    expect(qcow2HeaderFacts(head)?.directory?.count).toBe(1);
    const noAutoclear = Buffer.from(head);
    noAutoclear.writeBigUInt64BE(0n, 88);
    expect(qcow2HeaderFacts(noAutoclear)).toBeNull();
    const corrupt = Buffer.from(head);
    corrupt.writeBigUInt64BE(2n, 72);
    expect(qcow2HeaderFacts(corrupt)).toBeNull();
    const encrypted = Buffer.from(head);
    encrypted.writeUInt32BE(2, 32);
    expect(qcow2HeaderFacts(encrypted)).toBeNull();
    expect(qcow2HeaderFacts(head.subarray(0, 110))).toBeNull();
    expect(qcow2HeaderFacts(Buffer.alloc(512))).toBeNull();
  });

  test.each([
    ['unknown flag', { flags: 8 }],
    ['unknown type', { type: 2 }],
    ['extra data', { extra: 8 }],
    ['name past the end', { nameSize: 200 }],
  ])('a directory entry with %s', (_name, edit: { flags?: number; type?: number; extra?: number; nameSize?: number }) => {
    const entry = Buffer.alloc(32);
    entry.writeUInt32BE(edit.flags ?? 2, 12);
    entry.writeUInt8(edit.type ?? 1, 16);
    entry.writeUInt8(16, 17);
    entry.writeUInt16BE(edit.nameSize ?? 1, 18);
    entry.writeUInt32BE(edit.extra ?? 0, 20);
    entry.write('b', 24);
    expect(qcow2BitmapEntries(Buffer.from(entry), 1)).toBeNull();
    const good = Buffer.alloc(32);
    good.writeUInt32BE(3, 12);
    good.writeUInt8(1, 16);
    good.writeUInt8(16, 17);
    good.writeUInt16BE(1, 18);
    good.write('b', 24);
    expect(qcow2BitmapEntries(good, 1)).toEqual([{ name: 'b', granularity: 65536, recording: true, busy: false, persistent: true, inconsistent: true }]);
  });
});
