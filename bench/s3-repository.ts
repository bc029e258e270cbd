/**
 * The repository on S3 (Ceph radosgw) next to the local-directory repository, same run, same data
 * (issue 18.3), driven through the DiskWriter API as the engine feeds it:
 *   full          a 1 GiB disk with 512 MiB of random data in alternating 1 MiB extents
 *   incremental   328 scattered 64 KiB blocks rewritten (fixed seed), only the touched chunks put
 *   restore       the incremental restored to a raw file (checked against the image)
 * Ratios are S3 time / local time; no target (radosgw on memstore in the same 2 cores is the
 * baseline's own competitor), the numbers are for the README.
 *
 * Needs a Ceph radosgw: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY as `micro-ceph.sh env DIR`
 * prints them (the Ceph test project's start script sets the same). Without them the bench reports
 * one MISSED row saying so instead of numbers.
 */
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as Minio from 'minio';
import { Repository } from '../daemon/repository/repository';
import type { Manifest } from '../daemon/repository/manifest';
import { S3Storage } from '../daemon/repository/s3-storage';
import type { BenchResult } from './support/bench-result';
import { settle } from './support/settle';
import { BLOCK, MiB, backupImage, makeImage, rewriteBlocks, touchedChunks } from './support/repository-fixture';

const SIZE = 1024 * MiB;
const DATA = 512 * MiB;

function backup(repo: Repository, file: string, changed: number[] | 'all', base?: Manifest): Promise<{ m: Manifest; ms: number }> {
  return backupImage(repo, { vmid: 100, file, size: SIZE, indexes: changed === 'all' ? 'all' : (chunkSize) => touchedChunks(changed, chunkSize, BLOCK), base });
}

interface Timings {
  fullMs: number;
  incMs: number;
  restoreMs: number;
  storedFull: number;
}

async function measure(repo: Repository, dir: string, fullImg: string, img: string, changed: number[]): Promise<Timings> {
  settle();
  const full = await backup(repo, fullImg, 'all');
  settle();
  const inc = await backup(repo, img, changed, full.m);
  const out = path.join(dir, 'restored.raw');
  settle();
  const t0 = process.hrtime.bigint();
  await repo.restoreDisk(inc.m.id, 'scsi0', { path: out, format: 'raw' });
  const restoreMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const sums = execFileSync('sha256sum', [out, img]).toString().split('\n').map((l) => l.split(' ')[0]);
  if (sums[0] !== sums[1]) throw new Error(`restore from ${repo.dir} differs from the image`);
  fs.rmSync(out);
  return { fullMs: full.ms, incMs: inc.ms, restoreMs, storedFull: full.m.disks[0]!.bytesStored };
}

export async function run(): Promise<BenchResult[]> {
  const endpoint = process.env.S3_ENDPOINT;
  const accessKey = process.env.S3_ACCESS_KEY;
  const secretKey = process.env.S3_SECRET_KEY;
  if (!endpoint || !accessKey || !secretKey) {
    return [{ name: 'S3 repository bench not run: S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY unset (micro-ceph.sh env)', value: NaN, unit: '', pass: false }];
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-s3-'));
  const u = new URL(endpoint);
  const admin = new Minio.Client({ endPoint: u.hostname, port: Number(u.port || 80), useSSL: u.protocol === 'https:', accessKey, secretKey, region: 'us-east-1', pathStyle: true });
  const bucket = `cbt-bench-${crypto.randomBytes(4).toString('hex')}`;
  await admin.makeBucket(bucket, 'us-east-1');
  try {
    const img = path.join(dir, 'disk.img');
    await makeImage(img, SIZE, DATA);
    const fullImg = path.join(dir, 'disk-full.img');
    fs.copyFileSync(img, fullImg);
    const changed = await rewriteBlocks(img, SIZE, 328, 20261202);

    const local = await measure(await Repository.open(path.join(dir, 'repo'), { create: true }), dir, fullImg, img, changed);
    const storage = new S3Storage({ endpoint, accessKey, secretKey, location: { bucket, prefix: 'repo/' }, cacheDir: path.join(dir, 's3-cache') });
    const s3 = await measure(await Repository.open('s3', { storage, create: true }), dir, fullImg, img, changed);

    const row = (name: string, s3Ms: number, localMs: number, bytes: number): BenchResult => ({
      name,
      value: +(bytes / MiB / (s3Ms / 1000)).toFixed(1),
      unit: 'MiB/s',
      baseline: `local dir ${(bytes / MiB / (localMs / 1000)).toFixed(1)} MiB/s`,
      ratio: +(s3Ms / localMs).toFixed(2),
    });
    return [
      row(`S3 full 1 GiB (512 MiB data, ${(s3.storedFull / MiB).toFixed(0)} MiB stored): time S3/local`, s3.fullMs, local.fullMs, DATA),
      { name: 'S3 incremental 328x64 KiB', value: +(s3.incMs / 1000).toFixed(2), unit: 's', baseline: `local dir ${(local.incMs / 1000).toFixed(2)} s`, ratio: +(s3.incMs / local.incMs).toFixed(2) },
      row('S3 restore of the incremental (1 GiB raw): time S3/local', s3.restoreMs, local.restoreMs, SIZE),
    ];
  } finally {
    const names: string[] = [];
    for await (const o of admin.listObjectsV2(bucket, '', true)) names.push((o as { name: string }).name);
    for (let i = 0; i < names.length; i += 1000) await admin.removeObjects(bucket, names.slice(i, i + 1000));
    await admin.removeBucket(bucket);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
