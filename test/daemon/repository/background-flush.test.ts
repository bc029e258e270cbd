import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { BackgroundFlush } from '../../../daemon/repository/background-flush';
import { tempDir } from './repo-test-helpers';

const fdatasync = promisify(fs.fdatasync);

describe('background flush of a file being written', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('flushes once enough was written, and settle reports no error', async () => {
    const fd = fs.openSync(path.join(dir, 'a.raw'), 'w');
    try {
      const flush = new BackgroundFlush(() => fdatasync(fd), 1024);
      fs.writeSync(fd, Buffer.alloc(512, 1));
      flush.wrote(512);
      fs.writeSync(fd, Buffer.alloc(1024, 2));
      flush.wrote(1024);
      expect(await flush.settle()).toBeUndefined();
    } finally {
      fs.closeSync(fd);
    }
  });

  it('keeps the error of a failed flush for settle (the kernel reports it once)', async () => {
    // A descriptor number far beyond any open file: fdatasync fails with EBADF.
    const flush = new BackgroundFlush(() => fdatasync(1 << 20), 1);
    flush.wrote(10);
    flush.wrote(10);
    expect(await flush.settle()).toMatchObject({ code: 'EBADF' });
  });
});
