/**
 * Shared set-up for the engine's acceptance tests: a simulated PVE node with real QEMU, a real
 * repository and a real SQLite catalog + ledger in a temporary directory, and byte-exact restore
 * checks against the simulator's reference twins.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { backupVm, type BackupResult, type BackupVmConfig, type BackupVmOptions } from '../../../daemon/backup/backup-vm';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { Ledger } from '../../../daemon/ledger/ledger';
import { Repository } from '../../../daemon/repository/repository';
import type { RepositoryKeys } from '../../../daemon/repository/key-file';
import type { RepositoryStorage } from '../../../daemon/repository/storage';
import type { PveNode } from '../../../daemon/sim/pve-node';

export interface EngineEnv {
  dir: string;
  repo: Repository;
  db: Database.Database;
  ledger: Ledger;
  backup(vmid: number, extra?: Partial<BackupVmOptions>, tuning?: Partial<BackupVmConfig>): Promise<BackupResult>;
  /** Restores one disk and asserts it equals the reference file byte for byte. */
  expectRestoreEquals(backupId: string, disk: string, reference: string): Promise<void>;
  close(): void;
}

/**
 * `repoDir`: where the repository lives (default: inside the env's temporary directory); `keys`:
 * create (or open) it encrypted under these keys; `storage`: another backend (S3).
 */
export async function createEngineEnv(node: PveNode, opts: { repoDir?: string; keys?: RepositoryKeys; storage?: RepositoryStorage } = {}): Promise<EngineEnv> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  const repo = await Repository.open(opts.repoDir ?? path.join(dir, 'repo'), { create: true, ...(opts.keys ? { keys: opts.keys } : {}), ...(opts.storage ? { storage: opts.storage } : {}) });
  const db = openCatalog(path.join(dir, 'catalog.db'));
  const ledger = new Ledger(db);
  const env: EngineEnv = {
    dir,
    repo,
    db,
    ledger,
    backup: (vmid, extra = {}, tuning = {}) =>
      backupVm({
        vmid,
        config: {
          ...tuning,
          qemuServerConfigDir: node.configDir,
          qemuServerRunDir: node.runDir,
          pvesmPath: node.pvesmPath,
          workDir: path.join(dir, 'work'),
          jobPollMs: 300,
          nbdBusyTimeoutMs: 1500,
          vzdumpWaitMs: 500,
        },
        repo,
        ledger,
        ...extra,
      }),
    async expectRestoreEquals(backupId, disk, reference) {
      const out = path.join(dir, `restore-${backupId.replace(/\W/g, '_')}-${disk}.raw`);
      await repo.restoreDisk(backupId, disk, { path: out, format: 'raw' });
      const got = fs.readFileSync(out);
      const want = fs.readFileSync(reference);
      expect(got.length).toBe(want.length);
      if (!got.equals(want)) {
        let i = 0;
        while (got[i] === want[i]) i++;
        throw new Error(`restore of ${backupId} ${disk} differs from ${reference} first at byte ${i}`);
      }
      fs.rmSync(out);
    },
    close() {
      db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return env;
}

/** Bytes a set of writes dirties at a bitmap granularity (union of the touched granules). */
export function dirtyBytes(writes: { offset: number; length: number }[], granularity = 65536): number {
  const granules = new Set<number>();
  for (const w of writes) {
    for (let g = Math.floor(w.offset / granularity); g * granularity < w.offset + w.length; g++) granules.add(g);
  }
  return granules.size * granularity;
}

export const MiB = 1024 * 1024;
export const KiB = 1024;
