/**
 * Where a repository key lives in the bucket (pure; table-tested in s3-keys.test.ts).
 *
 * - A key `a/b/c` of the storage interface is the object `PREFIX` + `a/b/c`, byte for byte.
 * - A folder made with `mkdir(a/b)` is the empty object `PREFIX` + `a/b/` (the usual S3 console
 *   convention): it makes `mkdir` answer "already there" (backup ids are reserved that way) and
 *   keeps an empty backup folder visible to `list` until it is removed.
 * - `list(a)` is one delimiter listing of `PREFIX a/`: objects give their names, common prefixes
 *   give folder names, the folder's own marker is left out.
 */
import type { S3Location } from './s3-url';

export function objectName(loc: S3Location, key: string): string {
  return loc.prefix + key;
}

export function folderMarker(loc: S3Location, key: string): string {
  return `${loc.prefix}${key}/`;
}

/** The listing prefix of the children of folder `key` ('' is the repository root). */
export function childrenPrefix(loc: S3Location, key: string): string {
  return key === '' ? loc.prefix : `${loc.prefix}${key}/`;
}

/**
 * The child names of a delimiter listing: `names` are object names and common prefixes (those end
 * in '/') under `listed`. Sorted and unique, as readdir of a local folder would give.
 */
export function childNames(listed: string, names: readonly string[]): string[] {
  const out = new Set<string>();
  for (const n of names) {
    if (!n.startsWith(listed)) continue;
    let child = n.slice(listed.length);
    if (child.endsWith('/')) child = child.slice(0, -1);
    if (child !== '' && !child.includes('/')) out.add(child);
  }
  return [...out].sort();
}
