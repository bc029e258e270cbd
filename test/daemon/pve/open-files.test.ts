import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileIdentity, processesHolding } from '../../../daemon/pve/open-files';

let dir: string;
const children: ChildProcess[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A `sleep` whose stdout is `file` opened for appending: a process that holds the file open. */
async function holder(file: string): Promise<ChildProcess> {
  const fd = fs.openSync(file, 'a');
  const child = spawn('sleep', ['600'], { stdio: ['ignore', fd, 'ignore'] });
  fs.closeSync(fd);
  children.push(child);
  await new Promise((resolve, reject) => child.once('spawn', resolve).once('error', reject));
  return child;
}

test('finds the process holding a file, through a symlink, and after the file was deleted', async () => {
  const file = path.join(dir, 'image.raw');
  fs.writeFileSync(file, 'x');
  const other = path.join(dir, 'other.raw');
  fs.writeFileSync(other, 'x');
  const link = path.join(dir, 'link.raw');
  fs.symlinkSync(file, link);
  const child = await holder(file);
  expect(processesHolding(fileIdentity(fs.statSync(file)))).toEqual([{ pid: child.pid, command: 'sleep' }]);
  expect(processesHolding(fileIdentity(fs.statSync(link)))).toEqual([{ pid: child.pid, command: 'sleep' }]);
  expect(processesHolding(fileIdentity(fs.statSync(other)))).toEqual([]);
  const id = fileIdentity(fs.statSync(file));
  fs.unlinkSync(file);
  expect(processesHolding(id)).toEqual([{ pid: child.pid, command: 'sleep' }]);
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  expect(processesHolding(id)).toEqual([]);
});

test('a block device is matched by its device number, whatever node it was opened through', async () => {
  const backing = path.join(dir, 'backing.img');
  fs.writeFileSync(backing, Buffer.alloc(1 << 20));
  const device = execFileSync('losetup', ['--find', '--show', backing]).toString().trim();
  try {
    const st = fs.statSync(device);
    const copy = path.join(dir, 'copy-of-loop');
    execFileSync('mknod', [copy, 'b', String(Math.floor(st.rdev / 256) & 0xfff), String((st.rdev & 0xff) | ((st.rdev >> 12) & 0xfff00))]);
    expect(fs.statSync(copy).rdev).toBe(st.rdev);
    const child = await holder(copy);
    expect(processesHolding(fileIdentity(st))).toEqual([{ pid: child.pid, command: 'sleep' }]);
  } finally {
    for (const c of children.splice(0)) c.kill('SIGKILL');
    execFileSync('losetup', ['-d', device]);
  }
});
