/**
 * Repository benchmark (issue 4), driven through the DiskWriter API with chunks read from a
 * generated image file, the way the backup engine feeds them:
 * 1. 2 GiB disk, 1 GiB random data in alternating 1 MiB extents; full backup; then 328 scattered
 *    64 KiB-aligned blocks rewritten (fixed seed) and an incremental of the chunks they touch.
 *    Targets: new bytes stored <= 4x the changed bytes; metadata written (pages + manifest) < 1 %
 *    of the new bytes stored. Measured for 64, 128 and 256 KiB chunks (DEFAULT_CHUNK_SIZE is the
 *    default), in a format-2 repository (packs); then the default's full and its restore against a
 *    format-1 repository (one file per 256 KiB chunk) in the same run (ratio = format 1 / format 2).
 * 2. 64 GiB mostly empty disk (64 MiB of data), full, then 1 MiB changed in 16 scattered 64 KiB
 *    blocks: the incremental must write < 1 MiB of metadata.
 * 3. Restore of the 2 GiB incremental to a raw file vs `qemu-img convert -O raw` of the same
 *    image in the same run: ratio (qemu-img time / restore time) >= 0.5. qemu-img's default output
 *    cache mode for convert (`unsafe`) never flushes, while the restore makes its file durable, so
 *    a second row compares with `qemu-img convert -t writeback`, which flushes at the end.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Repository } from '../daemon/repository/repository';
import type { Manifest } from '../daemon/repository/manifest';
import { DEFAULT_CHUNK_SIZE } from '../shared/config/defaults';
import type { BenchResult } from './support/bench-result';
import { settle } from './support/settle';
import { BLOCK, GiB, KiB, MiB, backupImage, makeImage, rewriteBlocks, touchedChunks } from './support/repository-fixture';

async function backup(
  repo: Repository,
  vmid: number,
  file: string,
  size: number,
  chunkSize: number,
  indexes: number[] | 'all',
  base?: Manifest,
): Promise<{ m: Manifest; manifestBytes: number; ms: number }> {
  const { m, ms } = await backupImage(repo, { vmid, file, size, chunkSize, indexes, base });
  const manifestBytes = fs.statSync(path.join(repo.dir, m.id, 'manifest.json')).size;
  return { m, manifestBytes, ms };
}

async function timed<T>(fn: () => Promise<T>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export async function run(): Promise<BenchResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-repo-'));
  const results: BenchResult[] = [];
  try {
    const img = path.join(dir, 'disk2g.img');
    const size = 2 * GiB;
    await makeImage(img, size, GiB);
    const fullImg = path.join(dir, 'disk2g-full.img');
    fs.copyFileSync(img, fullImg);
    const changed = await rewriteBlocks(img, size, 328, 20261125);
    const changedBytes = changed.length * BLOCK;

    let restoreFrom: { repo: Repository; id: string; fullId: string; fullMs: number } | null = null;
    for (const chunkSize of [64 * KiB, 128 * KiB, 256 * KiB]) {
      const repo = await Repository.open(path.join(dir, `repo-${chunkSize / KiB}k`), { create: true });
      const full = await backup(repo, 100, fullImg, size, chunkSize, 'all');
      const inc = await backup(repo, 100, img, size, chunkSize, touchedChunks(changed, chunkSize, BLOCK), full.m);
      const disk = inc.m.disks[0];
      const metadata = disk.pageBytesStored + inc.manifestBytes;
      const tag = `${chunkSize / KiB} KiB chunks`;
      const isDefault = chunkSize === DEFAULT_CHUNK_SIZE;
      const storedRatio = disk.bytesStored / changedBytes;
      const metaPct = (100 * metadata) / disk.bytesStored;
      results.push(
        { name: `repo 2 GiB full backup (${tag})`, value: +(full.ms / 1000).toFixed(2), unit: 's' },
        {
          name: `repo 328x64 KiB incremental: stored / changed (${tag})`,
          value: +storedRatio.toFixed(2),
          unit: 'x',
          ...(isDefault ? { target: '<= 4', pass: storedRatio <= 4 } : {}),
        },
        {
          name: `repo 328x64 KiB incremental: metadata / stored (${tag}, ${disk.pageEntries}-entry pages, ${metadata} B)`,
          value: +metaPct.toFixed(3),
          unit: '%',
          ...(isDefault ? { target: '< 1', pass: metaPct < 1 } : {}),
        },
      );
      if (isDefault) restoreFrom = { repo, id: inc.m.id, fullId: full.m.id, fullMs: full.ms };
      else fs.rmSync(repo.dir, { recursive: true, force: true });
    }
    // Format 2 (packs, the default chunk size) against format 1 (one file per chunk, 256 KiB, its
    // measured best and the previous default) in the same run: the full and its restore.
    if (!restoreFrom) throw new Error('no default-chunk-size repository');
    {
      const f1 = await Repository.open(path.join(dir, 'repo-format1'), { create: true, format: 1 });
      settle();
      const f1Full = await backup(f1, 100, fullImg, size, 256 * KiB, 'all');
      const out = path.join(dir, 'restored-format.raw');
      settle();
      const f1RestoreMs = await timed(() => f1.restoreDisk(f1Full.m.id, 'scsi0', { path: out, format: 'raw' }));
      fs.rmSync(out);
      settle();
      const f2RestoreMs = await timed(() => (restoreFrom as { repo: Repository }).repo.restoreDisk((restoreFrom as { fullId: string }).fullId, 'scsi0', { path: out, format: 'raw' }));
      const same = execFileSync('sha256sum', [out, fullImg]).toString().split('\n').map((l) => l.split(' ')[0]);
      if (same[0] !== same[1]) throw new Error('restored image (format 2) differs from the source image');
      fs.rmSync(out);
      fs.rmSync(f1.dir, { recursive: true, force: true });
      const tag = `format 2 (packs, ${DEFAULT_CHUNK_SIZE / KiB} KiB) vs format 1 (files, 256 KiB)`;
      results.push(
        {
          name: `repo 2 GiB full backup: ${tag}`,
          value: +(restoreFrom.fullMs / 1000).toFixed(2),
          unit: 's',
          baseline: `format 1 ${(f1Full.ms / 1000).toFixed(2)} s`,
          ratio: +(f1Full.ms / restoreFrom.fullMs).toFixed(2),
        },
        {
          name: `repo restore 2 GiB full: ${tag}`,
          value: +(f2RestoreMs / 1000).toFixed(2),
          unit: 's',
          baseline: `format 1 ${(f1RestoreMs / 1000).toFixed(2)} s`,
          ratio: +(f1RestoreMs / f2RestoreMs).toFixed(2),
        },
      );
    }
    fs.rmSync(fullImg);

    // Restore of the 2 GiB incremental vs qemu-img convert of the same image, same run.
    const { repo, id } = restoreFrom;
    const outRestore = path.join(dir, 'restored.raw');
    const outQemu = path.join(dir, 'qemu.raw');
    // Each starts with a clean page cache; otherwise the restore's final fsync would also wait for
    // the write-back of qemu-img's output, which qemu-img itself never flushes.
    settle();
    const qemuMs = await timed(async () => execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', img, outQemu]));
    settle();
    const restoreMs = await timed(() => repo.restoreDisk(id, 'scsi0', { path: outRestore, format: 'raw' }));
    const same = execFileSync('sha256sum', [outRestore, img]).toString().split('\n').map((l) => l.split(' ')[0]);
    if (same[0] !== same[1]) throw new Error('restored image differs from the source image');
    const ratio = qemuMs / restoreMs;
    results.push({
      name: 'repo restore 2 GiB (1 GiB data) to raw',
      value: +((size / MiB) / (restoreMs / 1000)).toFixed(0),
      unit: 'MiB/s',
      baseline: `qemu-img convert -O raw ${((size / MiB) / (qemuMs / 1000)).toFixed(0)} MiB/s`,
      ratio: +ratio.toFixed(2),
      target: 'ratio >= 0.5',
      pass: ratio >= 0.5,
    });
    // The same copy made durable: `-t writeback` makes qemu-img fdatasync its output at the end
    // (checked with strace), as the restore does before renaming its file into place.
    fs.rmSync(outQemu);
    settle();
    const qemuFlushedMs = await timed(async () => execFileSync('qemu-img', ['convert', '-t', 'writeback', '-f', 'raw', '-O', 'raw', img, outQemu]));
    results.push({
      name: 'repo restore 2 GiB vs qemu-img convert -t writeback (flushed too)',
      value: +((size / MiB) / (restoreMs / 1000)).toFixed(0),
      unit: 'MiB/s',
      baseline: `qemu-img convert -t writeback ${((size / MiB) / (qemuFlushedMs / 1000)).toFixed(0)} MiB/s`,
      ratio: +(qemuFlushedMs / restoreMs).toFixed(2),
    });
    fs.rmSync(outRestore);
    fs.rmSync(outQemu);
    fs.rmSync(img);
    fs.rmSync(repo.dir, { recursive: true, force: true });

    // 64 GiB mostly empty disk, 1 MiB changed.
    const bigImg = path.join(dir, 'disk64g.img');
    const big = 64 * GiB;
    await makeImage(bigImg, big, 32 * MiB);
    const bigRepo = await Repository.open(path.join(dir, 'repo-64g'), { create: true });
    const dataChunks = touchedChunks(
      Array.from({ length: 32 }, (_, i) => i * 2 * MiB),
      128 * KiB,
      MiB,
    );
    const bigFull = await backup(bigRepo, 200, bigImg, big, 128 * KiB, dataChunks);
    const bigChanged = await rewriteBlocks(bigImg, big, 16, 64);
    const bigInc = await backup(bigRepo, 200, bigImg, big, 128 * KiB, touchedChunks(bigChanged, 128 * KiB, BLOCK), bigFull.m);
    const bigMeta = bigInc.m.disks[0].pageBytesStored + bigInc.manifestBytes;
    results.push({
      name: `repo 64 GiB sparse disk, 1 MiB changed: metadata written (${bigInc.m.disks[0].pageEntries}-entry pages)`,
      value: +(bigMeta / KiB).toFixed(1),
      unit: 'KiB',
      target: '< 1024 KiB',
      pass: bigMeta < MiB,
    });
    return results;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
