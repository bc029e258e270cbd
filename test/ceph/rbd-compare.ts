/** Byte-for-byte comparison of an RBD image (read whole through librbd with qemu-img) with a reference file. */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

export async function expectRbdEquals(rbdName: string, reference: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-rbdcmp-'));
  try {
    const out = path.join(dir, 'image.raw');
    await execFileP('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', rbdName, out], { timeout: 120_000 });
    const got = fs.readFileSync(out);
    const want = fs.readFileSync(reference);
    expect(got.length).toBe(want.length);
    if (!got.equals(want)) {
      let i = 0;
      while (got[i] === want[i]) i++;
      throw new Error(`${rbdName} differs from ${reference} first at byte ${i}`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
