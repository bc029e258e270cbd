import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { writeViaRename, type RenameWriterIo } from '../../../daemon/repository/write-via-rename';
import { tempDir } from './repo-test-helpers';

/** Real file calls, but each write takes at most `cap` bytes of the first part (a full disk's short counts). */
function shortWrites(cap: number, calls: { writes: number; fsyncs: number }): RenameWriterIo {
  return {
    create: (tmp) => fs.openSync(tmp, 'wx', 0o600),
    writev: (fd, parts) => {
      calls.writes++;
      return cap === 0 ? 0 : fs.writeSync(fd, parts[0], 0, Math.min(cap, parts[0].length));
    },
    fsync: (fd) => {
      calls.fsyncs++;
      fs.fsyncSync(fd);
    },
    close: (fd) => fs.closeSync(fd),
    rename: (from, to) => fs.renameSync(from, to),
    remove: (f) => fs.rmSync(f, { force: true }),
  };
}

describe('the one temporary-file-and-rename writer', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const parts = [crypto.randomBytes(20), Buffer.alloc(0), crypto.randomBytes(1000), crypto.randomBytes(3)];
  it.each([
    ['whole writes', 1 << 20, false],
    ['7-byte short writes, fsync', 7, true],
    ['1-byte short writes', 1, false],
  ])('%s: the file holds every part in order and no temporary file is left', async (_name, cap, fsync) => {
    const calls = { writes: 0, fsyncs: 0 };
    const file = path.join(dir, `f-${cap}`);
    fs.writeFileSync(file, 'old content');
    await writeViaRename(shortWrites(cap, calls), file, parts, { fsync });
    expect(fs.readFileSync(file).equals(Buffer.concat(parts))).toBe(true);
    expect(calls.writes).toBeGreaterThanOrEqual(Math.ceil(1023 / cap));
    expect(calls.fsyncs).toBe(fsync ? 1 : 0);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('a write that returns 0 bytes fails as EIO, leaves the old object as it was and removes the temporary file', async () => {
    const file = path.join(dir, 'zero');
    fs.writeFileSync(file, 'old content');
    await expect(writeViaRename(shortWrites(0, { writes: 0, fsyncs: 0 }), file, parts, { fsync: true })).rejects.toMatchObject({ code: 'EIO' });
    expect(fs.readFileSync(file, 'utf8')).toBe('old content');
    expect(fs.readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});
