/** Test helpers: images on disk and backups of them fed through the DiskWriter API, as the engine does. */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import type { Repository } from '../../../daemon/repository/repository';
import type { Manifest } from '../../../daemon/repository/manifest';
import type { DiskMeta } from '../../../daemon/repository/disk-writer';

export function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
}

/** Deterministic pseudo-random bytes (seeded), so failures reproduce. */
export function seededBytes(seed: string, n: number): Buffer {
  const key = crypto.createHash('sha256').update(seed).digest();
  const cipher = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(n)), cipher.final()]);
}

export function sha256File(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

export interface BackupImageOptions {
  vmid: number;
  disk?: string;
  chunkSize?: number;
  base?: { backupId: string; disk: string };
  parent?: string;
  /** Only these chunk indexes are read and put (incremental); default: all. */
  dirty?: number[];
  mode?: DiskMeta['mode'];
  time?: Date;
}

/** Backs up `file` as one disk; returns the manifest and per-chunk put results. */
export async function backupImage(repo: Repository, file: string, opts: BackupImageOptions): Promise<Manifest> {
  const size = fs.statSync(file).size;
  const w = await repo.startBackup({ vmid: opts.vmid, parent: opts.parent, time: opts.time });
  try {
    const d = await w.openDisk({ name: opts.disk ?? 'scsi0', format: 'raw', size, chunkSize: opts.chunkSize, base: opts.base });
    const fd = fs.openSync(file, 'r');
    let bytesRead = 0;
    try {
      const todo = new Set(opts.dirty ?? Array.from({ length: d.chunkCount }, (_, i) => i));
      for (const i of d.badBaseChunks()) todo.add(i);
      for (const i of [...todo].sort((a, b) => a - b)) {
        const len = Math.min(d.chunkSize, size - i * d.chunkSize);
        const buf = Buffer.alloc(len);
        fs.readSync(fd, buf, 0, len, i * d.chunkSize);
        bytesRead += len;
        await d.putChunk(i, buf);
      }
    } finally {
      fs.closeSync(fd);
    }
    await d.finish({ mode: opts.mode ?? (opts.base ? 'incremental' : 'full'), reason: 'test', bytesRead, durationMs: 1 });
    return await w.commit();
  } catch (err) {
    await w.abort();
    throw err;
  }
}
