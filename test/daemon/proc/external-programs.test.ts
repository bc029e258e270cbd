import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { programPath } from '../../../daemon/proc/external-programs';
import { Repository } from '../../../daemon/repository/repository';

describe('programPath: external programs are found on PATH', () => {
  let dir: string;
  let first: string;
  let second: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-path-'));
    first = path.join(dir, 'first');
    second = path.join(dir, 'second');
    fs.mkdirSync(first);
    fs.mkdirSync(second);
    fs.writeFileSync(path.join(first, 'qemu-nbd'), 'not executable', { mode: 0o644 });
    fs.mkdirSync(path.join(first, 'qemu-io'));
    for (const p of ['qemu-img', 'qemu-nbd', 'qemu-io']) fs.writeFileSync(path.join(second, p), '#!/bin/sh\n', { mode: 0o755 });
    fs.writeFileSync(path.join(first, 'qemu-img'), '#!/bin/sh\n', { mode: 0o755 });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test.each([
    ['qemu-img', 'first'],
    ['qemu-nbd', 'second'], // not executable in first
    ['qemu-io', 'second'], // a directory in first
  ] as const)('%s comes from the first PATH entry holding an executable file (%s)', (name, where) => {
    expect(programPath(name, { PATH: `relative-dir:${first}:${second}` })).toBe(path.join(dir, where, name));
  });

  test('not on PATH: the bare name, so spawning reports ENOENT for it', () => {
    expect(programPath('qemu-img', { PATH: path.join(dir, 'nowhere') })).toBe('qemu-img');
  });

  test('no PATH: the system directories', () => {
    expect(programPath('sync', {})).toMatch(/^\/(usr\/)?bin\/sync$/);
  });

  test('the repository runs qemu-img from PATH, not /usr/bin', async () => {
    const saved = process.env.PATH;
    process.env.PATH = `${first}:${saved}`;
    try {
      const repo = await Repository.open(path.join(dir, 'repo'), { create: true });
      expect((repo as unknown as { qemuImg: string }).qemuImg).toBe(path.join(first, 'qemu-img'));
    } finally {
      process.env.PATH = saved;
    }
  });
});
