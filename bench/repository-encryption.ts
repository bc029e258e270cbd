/**
 * What encryption at rest costs (issue 15), same run, same data, through the DiskWriter API the
 * engine feeds: a 1 GiB disk with 512 MiB of data in alternating 1 MiB extents (random and
 * compressible text by turns, so both the raw + AES-GCM and the lz4 + AES-GCM paths run), a full
 * backup, then 328 scattered 64 KiB blocks rewritten (fixed seed) and an incremental of the chunks
 * they touch, then a restore of the incremental to a raw file. Each step runs into an unencrypted
 * and into an encrypted repository (key: a kdf-none key file's keys), the two taking turns, every
 * step after a sync(1). Targets: the encrypted full, incremental and restore each ≤ 1.3× the
 * unencrypted one (AES-256-GCM and HMAC-SHA256 run on the blob workers beside the hashing).
 * Both restores are compared with the source image.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { Repository } from '../daemon/repository/repository';
import type { Manifest } from '../daemon/repository/manifest';
import { deriveKeys, generateMasterKey } from '../daemon/repository/key-file';
import { withMaxRatio, type BenchResult } from './support/bench-result';
import { settle } from './support/settle';
import { BLOCK, MiB, backupImage, makeImage, rewriteBlocks, touchedChunks } from './support/repository-fixture';

const SIZE = 1024 * MiB;
const DATA = 512 * MiB;
const MAX_RATIO = 1.3;

/** Only the extents that hold data are read and put on the full (as the engine reads allocated data). */
function dataChunks(chunkSize: number): number[] {
  const out: number[] = [];
  for (let off = 0; off < DATA * 2; off += 2 * MiB) for (let c = off / chunkSize; c < (off + MiB) / chunkSize; c++) out.push(c);
  return out;
}

async function backup(repo: Repository, file: string, indexes: number[] | typeof dataChunks, base?: Manifest): Promise<{ m: Manifest; ms: number }> {
  settle();
  return backupImage(repo, { vmid: 100, file, size: SIZE, indexes, base });
}

export async function run(): Promise<BenchResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-enc-'));
  try {
    const img = path.join(dir, 'disk.img');
    await makeImage(img, SIZE, DATA, { text: true });
    const repos = {
      plain: await Repository.open(path.join(dir, 'plain'), { create: true }),
      encrypted: await Repository.open(path.join(dir, 'encrypted'), { create: true, keys: deriveKeys(generateMasterKey()) }),
    };
    const kinds = ['plain', 'encrypted'] as const;
    const full: Record<string, { m: Manifest; ms: number }> = {};
    for (const k of kinds) full[k] = await backup(repos[k], img, dataChunks);
    const changed = await rewriteBlocks(img, SIZE, 328, 20261202);
    const touched = touchedChunks(changed, full.plain.m.disks[0].chunkSize, BLOCK);
    const inc: Record<string, { m: Manifest; ms: number }> = {};
    for (const k of kinds) inc[k] = await backup(repos[k], img, touched, full[k].m);
    const restoreMs: Record<string, number> = {};
    const want = execFileSync('sha256sum', [img]).toString().split(' ')[0];
    for (const k of kinds) {
      const out = path.join(dir, `restored-${k}.raw`);
      settle();
      const t0 = process.hrtime.bigint();
      await repos[k].restoreDisk(inc[k].m.id, 'scsi0', { path: out, format: 'raw' });
      restoreMs[k] = Number(process.hrtime.bigint() - t0) / 1e6;
      if (execFileSync('sha256sum', [out]).toString().split(' ')[0] !== want) throw new Error(`the ${k} restore differs from the source image`);
      fs.rmSync(out);
    }
    const s = (ms: number): number => +(ms / 1000).toFixed(2);
    const stored = (m: Manifest): string => `${(m.disks[0].bytesStored / MiB).toFixed(1)} MiB stored`;
    return [
      withMaxRatio({ name: `encrypted full, 1 GiB disk, 512 MiB data (${stored(full.encrypted.m)})`, value: s(full.encrypted.ms), unit: 's', baseline: `unencrypted ${s(full.plain.ms)} s (${stored(full.plain.m)})` }, full.encrypted.ms, full.plain.ms, MAX_RATIO),
      withMaxRatio({ name: `encrypted incremental, 328x64 KiB changed (${stored(inc.encrypted.m)})`, value: s(inc.encrypted.ms), unit: 's', baseline: `unencrypted ${s(inc.plain.ms)} s (${stored(inc.plain.m)})` }, inc.encrypted.ms, inc.plain.ms, MAX_RATIO),
      withMaxRatio({ name: 'encrypted restore of the incremental to raw', value: s(restoreMs.encrypted), unit: 's', baseline: `unencrypted ${s(restoreMs.plain)} s` }, restoreMs.encrypted, restoreMs.plain, MAX_RATIO),
    ];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
