/**
 * Loads a disk's whole digest table from its index pages (restore, verify, and the clone of a base
 * index by the disk writer). A page that is missing, corrupt or of the wrong length does not stop
 * the others: it is reported with its problem and its part of the table stays zero.
 */
import type { BlobStore } from './blob-store';
import { DIGEST_BYTES } from './digest';
import { isZeroDigest, pageLength, type IndexGeometry } from './disk-index';
import { inParallel } from './in-parallel';
import { RepoPageCorruptError, RepoPageMissingError } from './repository-errors';

export interface BadPage {
  page: number;
  digest: string;
  problem: 'missing' | 'corrupt';
}

const PAGE_READ_CONCURRENCY = 16;

export async function loadDigestTable(pagesStore: BlobStore, g: IndexGeometry, pages: string[]): Promise<{ table: Buffer; badPages: BadPage[] }> {
  const table = Buffer.alloc(g.chunkCount * DIGEST_BYTES);
  const badPages: BadPage[] = [];
  const todo = pages.map((d, p) => ({ d, p })).filter(({ d }) => !isZeroDigest(d));
  await inParallel(todo, PAGE_READ_CONCURRENCY, async ({ d, p }) => {
    try {
      const content = await pagesStore.read(d);
      if (content.length !== pageLength(g, p) * DIGEST_BYTES) {
        badPages.push({ page: p, digest: d, problem: 'corrupt' });
        return;
      }
      content.copy(table, p * g.pageEntries * DIGEST_BYTES);
    } catch (err) {
      if (!RepoPageCorruptError.is(err) && !RepoPageMissingError.is(err)) throw err;
      badPages.push({ page: p, digest: d, problem: RepoPageMissingError.is(err) ? 'missing' : 'corrupt' });
    }
  });
  badPages.sort((a, b) => a.page - b.page);
  return { table, badPages };
}
