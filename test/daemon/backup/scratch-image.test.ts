import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createScratchImage, scratchTemplatePath } from '../../../daemon/backup/scratch-image';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-scratch-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const SIZES = [16 * 1024 * 1024, 2 * 1024 ** 3, 64 * 1024 ** 3 + 512];

test.each(SIZES)('size %d: the scratch is the image qemu-img create makes, byte for byte, and checks clean', async (size) => {
  const want = path.join(dir, 'want.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', want, String(size)]);
  for (const name of ['a.qcow2', 'b.qcow2']) {
    const got = path.join(dir, name);
    await createScratchImage(got, size, dir);
    expect(fs.readFileSync(got).equals(fs.readFileSync(want))).toBe(true);
    execFileSync('qemu-img', ['check', '-q', got]);
    const info = JSON.parse(execFileSync('qemu-img', ['info', '--output=json', got], { encoding: 'utf8' })) as { 'virtual-size': number };
    expect(info['virtual-size']).toBe(size);
  }
});

test('the template is made once per size and is never the scratch itself; a broken one is made again', async () => {
  const size = 32 * 1024 * 1024;
  const template = scratchTemplatePath(dir, size);
  await createScratchImage(path.join(dir, 's1.qcow2'), size, dir);
  const made = fs.statSync(template).ino;
  // a backup writes into its scratch: the template and the next scratch stay empty
  fs.writeFileSync(path.join(dir, 's1.qcow2'), Buffer.alloc(4096, 0xee), { flag: 'r+' });
  await createScratchImage(path.join(dir, 's2.qcow2'), size, dir);
  expect(fs.statSync(template).ino).toBe(made);
  expect(fs.readFileSync(path.join(dir, 's2.qcow2')).equals(fs.readFileSync(template))).toBe(true);
  fs.writeFileSync(template, 'not a qcow2');
  await createScratchImage(path.join(dir, 's3.qcow2'), size, dir);
  execFileSync('qemu-img', ['check', '-q', path.join(dir, 's3.qcow2')]);
  expect(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
});
