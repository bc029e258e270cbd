/**
 * The repository's one temporary-file-and-rename writer: an object appears under its name whole
 * or not at all. Used by the local storage's `writeAtomic` (manifests, verify records, markers:
 * durable, `fsync: true`, on the main thread's async file calls) and by the blob workers' store
 * (store-blob.ts: chunks and index pages, not synced, the caller's sync batch makes them durable,
 * with plain synchronous calls).
 *
 * Steps: create `<file>.tmp-<pid>-<random>` exclusively (the caller's `create`, which makes the
 * folder and sets the mode), write every part, looping over short writes (a full file system first
 * returns a short count, and a truncated object renamed into place would be taken as complete),
 * fsync if asked, close, rename over the name. On any error the temporary file is removed and the
 * error of the failed call is thrown (ENOSPC stays ENOSPC, for the caller's CBT_REPO_NO_SPACE).
 * Temporary files a crash leaves behind are garbage-collect.ts's to remove.
 *
 * The file calls come from `io`, synchronous or async (each result is awaited), so that one
 * implementation serves both threads. Self-contained (only its arguments, literals and built-in
 * modules), because the workers run its source text.
 */
export interface RenameWriterIo {
  /** Creates `tmp`, which must not exist, for writing ('wx', 0600); answers its descriptor. */
  create(tmp: string): number | Promise<number>;
  writev(fd: number, parts: Buffer[]): number | Promise<number>;
  fsync(fd: number): void | Promise<void>;
  close(fd: number): void | Promise<void>;
  rename(from: string, to: string): void | Promise<void>;
  /** Removes a file if it exists. */
  remove(file: string): void | Promise<void>;
}

export async function writeViaRename(io: RenameWriterIo, file: string, parts: Buffer[], opts: { fsync: boolean }): Promise<void> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const crypto = require('node:crypto') as typeof import('node:crypto');
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  try {
    const fd = await io.create(tmp);
    try {
      let rest = parts.filter((b) => b.length > 0);
      while (rest.length) {
        const written = await io.writev(fd, rest);
        // Not an exception of ours: the errno a failed write would have, so callers treat it as one.
        if (written === 0) throw Object.assign(new Error(`write of ${tmp} returned 0 bytes`), { code: 'EIO', path: tmp });
        let skip = written;
        while (rest.length && skip >= rest[0].length) {
          skip -= rest[0].length;
          rest = rest.slice(1);
        }
        if (rest.length && skip > 0) rest = [rest[0].subarray(skip), ...rest.slice(1)];
      }
      if (opts.fsync) await io.fsync(fd);
    } finally {
      await io.close(fd);
    }
    await io.rename(tmp, file);
  } catch (err) {
    try {
      await io.remove(tmp);
    } catch {
      // The write's own error is the one to report.
    }
    throw err;
  }
}
