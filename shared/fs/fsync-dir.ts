import { fsyncFile } from './fsync-file';

/** Makes a directory entry (a created, renamed or removed file) durable. */
export function fsyncDir(dir: string): void {
  fsyncFile(dir);
}
