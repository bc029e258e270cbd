/**
 * `pve-cbt list` over a big repository (issue 12): 1,000 VMs × 365 daily backups (one 32 GiB disk
 * each, a real manifest per backup on disk, the same backups in a file catalog), listed
 *   - through the catalog (catalog/catalog-sync.ts: folder listing, diff, two queries), and
 *   - by reading the repository (Repository.listBackups: every manifest and verify.json),
 * for all VMs and for one VM, in the same run. Both answers are compared and must be equal.
 * Target: the catalog path takes at most a tenth of the repository path's time.
 * PVE_CBT_BENCH_LIST_VMS / PVE_CBT_BENCH_LIST_BACKUPS shrink the synthetic repository for a quick run.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { openCatalog } from '../daemon/catalog/open-catalog';
import { BackupCatalog } from '../daemon/catalog/backup-catalog';
import { listBackupsFromCatalog } from '../daemon/catalog/catalog-sync';
import { Repository, type BackupInfo } from '../daemon/repository/repository';
import { formatBackupId } from '../daemon/repository/backup-id';
import { geometry } from '../daemon/repository/disk-index';
import { MANIFEST_FORMAT, sealManifest, serializeManifest } from '../daemon/repository/manifest';
import { DEFAULT_CHUNK_SIZE } from '../shared/config/defaults';
import { withMaxRatio, type BenchResult } from './support/bench-result';
import { mulberry32 } from './support/prng';

const GiB = 1024 ** 3;
const DAY = 86_400_000;

function envInt(name: string, dflt: number): number {
  const v = Number(process.env[name]);
  return Number.isSafeInteger(v) && v > 0 ? v : dflt;
}

/** Writes the manifests and records them in the catalog (one transaction). */
function populate(repoDir: string, catalog: BackupCatalog, db: ReturnType<typeof openCatalog>, vms: number, perVm: number): void {
  const rnd = mulberry32(12);
  const digest = () => crypto.createHash('sha256').update(String(rnd())).digest('hex');
  const g = geometry(32 * GiB, DEFAULT_CHUNK_SIZE);
  const start = Date.UTC(2025, 0, 1, 1, 0, 0);
  db.transaction(() => {
    for (let v = 0; v < vms; v++) {
      const vmid = 100 + v;
      let parent: string | null = null;
      for (let i = 0; i < perVm; i++) {
        const time = new Date(start + i * DAY + v * 1000);
        const id = formatBackupId(vmid, time);
        const m = sealManifest({
          format: MANIFEST_FORMAT,
          id,
          vmid,
          time: time.toISOString().replace(/\.\d{3}Z$/, 'Z'),
          parent,
          toolVersion: 'bench',
          disks: [
            {
              name: 'scsi0',
              format: 'qcow2',
              size: g.size,
              chunkSize: g.chunkSize,
              pageEntries: g.pageEntries,
              pages: Array.from({ length: g.pageCount }, digest),
              mode: i === 0 ? 'full' : 'incremental',
              reason: i === 0 ? 'first backup' : 'bitmap valid',
              bitmap: { name: 'pve-cbt-scsi0', generation: i + 1 },
              consistency: 'frozen',
              base: parent ? { backupId: parent, disk: 'scsi0' } : null,
              bytesRead: Math.floor(rnd() * GiB),
              bytesStored: Math.floor(rnd() * GiB),
              chunksStored: 100,
              pageBytesStored: 4096,
              durationMs: 1000,
            },
          ],
          extra: {},
        });
        const folder = path.join(repoDir, id);
        fs.mkdirSync(folder, { recursive: true });
        fs.writeFileSync(path.join(folder, 'manifest.json'), serializeManifest(m));
        catalog.recordBackup(m);
        parent = id;
      }
    }
  })();
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, value };
}

function same(what: string, a: BackupInfo[], b: BackupInfo[]): void {
  if (!isDeepStrictEqual(a, b)) throw new Error(`catalog-list: ${what}: the catalog and the repository answer differently`);
}

export async function run(): Promise<BenchResult[]> {
  const vms = envInt('PVE_CBT_BENCH_LIST_VMS', 1000);
  const perVm = envInt('PVE_CBT_BENCH_LIST_BACKUPS', 365);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-list-'));
  const db = openCatalog(path.join(dir, 'catalog.sqlite'));
  try {
    const catalog = new BackupCatalog(db);
    const repo = await Repository.open(path.join(dir, 'repo'), { create: true, catalog });
    const t0 = Date.now();
    populate(repo.dir, catalog, db, vms, perVm);
    console.log(`catalog-list: ${vms} VMs × ${perVm} backups written in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const s = { db, catalog, repo };
    const scale = `${vms} VMs × ${perVm}`;

    // All VMs: the catalog path three times (median), the repository path once (it is the slow one).
    const viaCatalog: number[] = [];
    let listed: BackupInfo[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await timed(() => listBackupsFromCatalog(s));
      viaCatalog.push(r.ms);
      listed = r.value;
    }
    const catalogAll = viaCatalog.sort((a, b) => a - b)[1];
    const repoAll = await timed(() => repo.listBackups());
    if (listed.length !== vms * perVm) throw new Error(`catalog-list: listed ${listed.length} backups, wrote ${vms * perVm}`);
    same('all VMs', listed, repoAll.value);

    // One VM, over 20 VMs spread across the range: sums of both paths.
    let catalogOne = 0;
    let repoOne = 0;
    for (let k = 0; k < 20; k++) {
      const vmid = 100 + Math.floor((k * vms) / 20);
      const c = await timed(() => listBackupsFromCatalog(s, vmid));
      const r = await timed(() => repo.listBackups(vmid));
      same(`VM ${vmid}`, c.value, r.value);
      catalogOne += c.ms;
      repoOne += r.ms;
    }
    return [
      withMaxRatio({ name: `list all (${scale}) via catalog`, value: catalogAll, unit: 'ms', baseline: `repository read: ${repoAll.ms.toFixed(0)} ms` }, catalogAll, repoAll.ms, 0.1),
      withMaxRatio({ name: `list one VM (of ${scale}) via catalog`, value: catalogOne / 20, unit: 'ms', baseline: `repository read: ${(repoOne / 20).toFixed(1)} ms` }, catalogOne, repoOne, 0.1),
    ];
  } finally {
    db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
