/**
 * The work a verified read adds to a plain one, run on its own beside a baseline so that a bench can
 * show the floor of this machine: every pack file of a repository read in 1 MiB pieces and each
 * 64 KiB of it hashed with SHA-256, on worker threads (the serve and restore workers' share of the
 * work, without decoding, replies or writes). `nbdcopy` from qemu-nbd (or `qemu-img convert`) timed
 * while this runs is what the same cores give a reader that also checks every byte; a verified
 * server or restore cannot beat that, whatever its code.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

/** Every `*.pack` file under `dir` (a repository's `.packs`). */
export function packFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.pack')) out.push(p);
    }
  };
  walk(dir);
  return out.sort();
}

const SOURCE = `
const fs = require('node:fs');
const crypto = require('node:crypto');
const { parentPort, workerData } = require('node:worker_threads');
const buf = Buffer.allocUnsafe(1024 * 1024);
parentPort.once('message', () => {
let bytes = 0;
for (const file of workerData.files) {
  const fd = fs.openSync(file, 'r');
  try {
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) {
      for (let at = 0; at < n; at += 65536) crypto.createHash('sha256').update(buf.subarray(at, Math.min(n, at + 65536))).digest();
      bytes += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}
parentPort.postMessage(bytes);
});
parentPort.postMessage('ready');
`;

/**
 * Starts `threads` threads that will read and hash `files` (dealt round-robin) and waits until they
 * are up, so that the timed part holds only the work: `run()` starts it and resolves with the bytes
 * hashed once every thread is done.
 */
export async function startHashThreads(files: string[], threads: number): Promise<{ run(): Promise<number> }> {
  const workers = await Promise.all(
    Array.from({ length: threads }, async (_, t) => {
      const w = new Worker(SOURCE, { eval: true, workerData: { files: files.filter((_, i) => i % threads === t) } });
      const done = new Promise<number>((resolve, reject) => {
        w.on('message', (m: unknown) => {
          if (typeof m === 'number') resolve(m);
        });
        w.once('error', reject);
        w.once('exit', (code) => reject(new Error(`hash thread exited with ${code} before it answered`)));
      });
      await new Promise<void>((resolve, reject) => {
        w.once('message', () => resolve());
        w.once('error', reject);
      });
      return { w, done };
    }),
  );
  return {
    async run(): Promise<number> {
      for (const { w } of workers) w.postMessage('go');
      const counts = await Promise.all(workers.map((x) => x.done));
      return counts.reduce((a, b) => a + b, 0);
    },
  };
}
