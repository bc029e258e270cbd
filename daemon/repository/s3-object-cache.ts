/**
 * The per-node cache of an S3 repository's immutable objects: pack index files (`*.idx`) and
 * manifests (`vm/…/manifest.json`). Dedup lookups and restores read every pack index and the
 * manifests; without the cache each process (a CLI restore, a daemon start) would download them
 * all again.
 *
 * A cached copy is tied to the object's ETag: it is served only when the caller knows the current
 * ETag (from a listing it made anyway, or from one HEAD), so a removed or rewritten object is never
 * served from here; a miss (or another ETag) downloads the object and replaces the copy. Only
 * `read` of such keys goes through the cache; writes by this node store their copy at once.
 *
 * Files: `<dir>/<key>`, each holding one JSON header line `{"etag":...,"size":...}` and the object's
 * bytes, written via a temporary file and rename (a crash leaves the old copy or none).
 */
import fsp from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';
import { DIR_MODE, FILE_MODE } from './storage';

export function isCacheableKey(key: string): boolean {
  return key.endsWith('.idx') || key.endsWith('/manifest.json');
}

export class S3ObjectCache {
  constructor(readonly dir: string) {}

  private fileOf(key: string): string {
    return path.join(this.dir, ...key.split('/'));
  }

  async get(key: string, etag: string): Promise<Buffer | null> {
    let raw: Buffer;
    try {
      raw = await fsp.readFile(this.fileOf(key));
    } catch {
      return null;
    }
    const nl = raw.indexOf(10);
    if (nl < 0) return null;
    try {
      const head = JSON.parse(raw.subarray(0, nl).toString('utf8')) as { etag?: string; size?: number };
      const data = raw.subarray(nl + 1);
      return head.etag === etag && head.size === data.length ? data : null;
    } catch {
      return null;
    }
  }

  async put(key: string, etag: string, data: Buffer): Promise<void> {
    const file = this.fileOf(key);
    const tmp = `${file}.tmp-${crypto.randomBytes(4).toString('hex')}`;
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true, mode: DIR_MODE });
      await fsp.writeFile(tmp, Buffer.concat([Buffer.from(`${JSON.stringify({ etag, size: data.length })}\n`), data]), { mode: FILE_MODE });
      await fsp.rename(tmp, file);
    } catch {
      // A cache that cannot be written (full or read-only state dir) only costs downloads.
      await fsp.rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  async drop(key: string): Promise<void> {
    await fsp.rm(this.fileOf(key), { force: true }).catch(() => undefined);
  }
}
