/**
 * Two-level fixed-size index of one disk in one backup (pure; no I/O here).
 *
 * Level 1: the disk is cut into chunks of `chunkSize` bytes (the last one may be shorter); each has
 * a 32-byte SHA-256 digest, or the all-zero digest for an all-zero chunk (never stored).
 * Level 2: the digest list is cut into pages of `pageEntries` entries; a page's plain content is
 * the concatenation of its binary digests (the last page may be shorter), stored as a blob named by
 * its own SHA-256, except an all-zero page, which is the zero digest and never stored.
 * The manifest lists the page digests run-length encoded: an entry is `<digest>` or
 * `<digest>*<count>` for a run, so a large empty disk costs a few bytes.
 *
 * Both sizes are recorded per index, so a later default (smaller chunks, other pages) needs no
 * format change. An incremental copies the previous page list and writes only the pages it changed.
 */
import { DEFAULT_CHUNK_SIZE } from '../../shared/config/defaults';
import { DIGEST_BYTES, ZERO_DIGEST, isDigest } from './digest';

export { DEFAULT_CHUNK_SIZE };
export const BITMAP_GRANULE = 64 * 1024;
export const MAX_CHUNK_SIZE = 16 * 1024 * 1024;

export interface IndexGeometry {
  size: number;
  chunkSize: number;
  chunkCount: number;
  pageEntries: number;
  pageCount: number;
}

export function isValidChunkSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= BITMAP_GRANULE && n <= MAX_CHUNK_SIZE && (n & (n - 1)) === 0;
}

/**
 * Entries per page: the power of two at or above 2·sqrt(N), from 16 up to 1024 (32 KiB pages).
 * Every page is a file, and files are what costs: an incremental loads all N/P pages of its base and
 * writes one per page it touches, a full writes them all. Small pages (the former sqrt(N)/8) saved
 * bytes but cost a 2 GiB disk 512 page files per full and per base load. The cap keeps an
 * incremental's scattered changes cheap on large disks: 16 changes on a 64 GiB disk write at most
 * 16 × 32 KiB.
 */
export function defaultPageEntries(chunkCount: number): number {
  const want = Math.ceil(2 * Math.sqrt(chunkCount));
  let p = 16;
  while (p < want && p < 1024) p *= 2;
  return p;
}

export function geometry(size: number, chunkSize: number, pageEntries?: number): IndexGeometry {
  const chunkCount = Math.ceil(size / chunkSize);
  const entries = pageEntries ?? defaultPageEntries(chunkCount);
  return { size, chunkSize, chunkCount, pageEntries: entries, pageCount: Math.ceil(chunkCount / entries) };
}

/** Length in bytes of chunk `index` (only the last chunk can be short). */
export function chunkLength(g: IndexGeometry, index: number): number {
  return Math.min(g.chunkSize, g.size - index * g.chunkSize);
}

/** Plain content of page `page` taken from the full binary digest table of the disk. */
export function pageContent(g: IndexGeometry, table: Buffer, page: number): Buffer {
  const first = page * g.pageEntries;
  const last = Math.min(first + g.pageEntries, g.chunkCount);
  return table.subarray(first * DIGEST_BYTES, last * DIGEST_BYTES);
}

/** Number of entries page `page` holds. */
export function pageLength(g: IndexGeometry, page: number): number {
  return Math.min(g.pageEntries, g.chunkCount - page * g.pageEntries);
}

export function encodePageList(digests: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < digests.length; ) {
    let j = i + 1;
    while (j < digests.length && digests[j] === digests[i]) j++;
    out.push(j - i === 1 ? digests[i] : `${digests[i]}*${j - i}`);
    i = j;
  }
  return out;
}

/** Expands the run-length encoded list; returns an error string instead of throwing (manifest validation uses it). */
export function decodePageList(entries: unknown, pageCount: number): string[] | string {
  if (!Array.isArray(entries)) return 'pages is not an array';
  const out: string[] = [];
  for (const e of entries) {
    if (typeof e !== 'string') return 'page entry is not a string';
    const [digest, countText, ...rest] = e.split('*');
    const count = countText === undefined ? 1 : Number(countText);
    if (!isDigest(digest) || rest.length || !Number.isSafeInteger(count) || count < 1) return `bad page entry '${e.slice(0, 80)}'`;
    if (out.length + count > pageCount) return `page list is longer than the ${pageCount} pages the geometry needs`;
    for (let i = 0; i < count; i++) out.push(digest);
  }
  if (out.length !== pageCount) return `page list has ${out.length} pages, geometry needs ${pageCount}`;
  return out;
}

export function isZeroDigest(d: string): boolean {
  return d === ZERO_DIGEST;
}
