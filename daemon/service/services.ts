/**
 * The daemon's long-lived parts, opened once at start and closed once at stop: the SQLite catalog
 * (backups, jobs, bitmap ledger — one file, `<stateDir>/catalog.sqlite`), the repository and the
 * job queue. Everything that serves a request or a schedule receives this object; nothing else
 * holds global state.
 */
import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import type { Logger } from 'winston';
import type { CbtConfig } from '../config/config-schema';
import { BackupCatalog } from '../catalog/backup-catalog';
import { openCatalogOrSetAside } from '../catalog/damaged-catalog';
import { openMemoryCatalog } from '../catalog/memory-catalog';
import { createJobQueue, type JobQueue } from '../jobs/job-queue';
import { createOffThreadExec, type OffThreadExec } from '../proc/exec-off-thread';
import { Ledger } from '../ledger/ledger';
import { Repository } from '../repository/repository';
import { configuredRepositoryKeys } from '../repository/repository-keys';
import { repositoryStorageOf } from '../repository/repository-storage-of';
import { ensurePrivateDir } from './state-dir';
import { killPoint } from './test-kill-point';

export interface Services {
  readonly config: CbtConfig;
  readonly logger: Logger;
  readonly db: Database.Database;
  readonly catalog: BackupCatalog;
  readonly ledger: Ledger;
  readonly repo: Repository;
  readonly queue: JobQueue;
  /** The daemon's runner of short tools off its event loop (pvesm; daemon/proc/exec-off-thread.ts). */
  readonly exec?: OffThreadExec;
  /**
   * Set when this process found the catalog unreadable, set it aside and rebuilt its backups from
   * the repository: job history and the bitmap ledger are gone, so nothing may be taken as valid
   * from them (startup recovery settles no interrupted commit, every disk is full-compared next).
   */
  readonly catalogRebuilt?: { setAside: string[]; reason: string; backups: number };
}

export function catalogFile(stateDir: string): string {
  return path.join(stateDir, 'catalog.sqlite');
}

/** Scratch files of running backups (fleecing images, NBD sockets); cleaned at start. */
export function workDir(stateDir: string): string {
  return path.join(stateDir, 'work');
}

export interface OpenStoresOptions {
  /** Create the repository if it does not exist (the daemon does; CLI commands never do). Default true. */
  createRepository?: boolean;
  /** Create nothing: no stateDir, and a catalog in memory when the node has no catalog file. */
  readOnly?: boolean;
  /** Where PVE_CBT_ENCRYPTION_PASSWORD is read (an encrypted repository's scrypt key file). Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** Skip SQLite's quick_check of the catalog (read-only CLI commands; damaged-catalog.ts). */
  skipQuickCheck?: boolean;
}

/**
 * Opens catalog and repository for one process (daemon or a local CLI command). A catalog SQLite
 * cannot read is set aside and rebuilt from the repository (damaged-catalog.ts), logged at error
 * level, and the process goes on.
 */
export async function openStores(config: CbtConfig, logger: Logger, opts: OpenStoresOptions = {}): Promise<Omit<Services, 'queue'>> {
  const file = catalogFile(config.stateDir);
  const inMemory = opts.readOnly === true && !fs.existsSync(file);
  if (!inMemory) ensurePrivateDir(config.stateDir);
  const { db, setAside } = inMemory ? { db: openMemoryCatalog(), setAside: undefined } : openCatalogOrSetAside(file, undefined, { quickCheck: opts.skipQuickCheck !== true });
  try {
    const catalog = new BackupCatalog(db);
    const keys = configuredRepositoryKeys(config, opts.env);
    const repo = await Repository.open(config.repository, {
      storage: repositoryStorageOf(config),
      create: opts.createRepository ?? true,
      ...(keys ? { keys } : {}),
      compression: config.compression,
      ...(config.chunkSize !== undefined ? { chunkSize: config.chunkSize } : {}),
      // The catalog as the repository's sink, with the test-only kill point right after a commit.
      catalog: {
        recordBackup: (m) => {
          killPoint('after-manifest-commit');
          catalog.recordBackup(m);
        },
        forgetBackup: (id) => catalog.forgetBackup(id),
        recordVerify: (id, state) => catalog.recordVerify(id, state),
      },
      logger,
    });
    if (!setAside) return { config, logger, db, catalog, ledger: new Ledger(db, logger), repo };
    const { backups } = await catalog.rebuildFromRepository(repo);
    const catalogRebuilt = { setAside: setAside.files, reason: setAside.reason, backups };
    logger.error('catalog was unreadable: set aside and rebuilt from the repository; job history and bitmap ledger are lost, so every disk gets a full-compare next', {
      code: 'CBT_CATALOG_REBUILT',
      file,
      ...catalogRebuilt,
    });
    return { config, logger, db, catalog, ledger: new Ledger(db, logger), repo, catalogRebuilt };
  } catch (err) {
    db.close();
    throw err;
  }
}

export async function openServices(config: CbtConfig, logger: Logger): Promise<Services> {
  const stores = await openStores(config, logger);
  // Task ids are also the catalog's job ids, so they must stay unique across daemon restarts.
  const base = Date.now().toString(36);
  let n = 0;
  return { ...stores, exec: createOffThreadExec(), queue: createJobQueue({ concurrency: config.concurrency, logger, newId: () => `task-${base}-${++n}` }) };
}
