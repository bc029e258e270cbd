/**
 * The daemon's long-lived parts, opened once at start and closed once at stop: the SQLite catalog
 * (backups, jobs, bitmap ledger — one file, `<stateDir>/catalog.sqlite`), the repository and the
 * job queue. Everything that serves a request or a schedule receives this object; nothing else
 * holds global state.
 */
import path from 'node:path';
import type Database from 'better-sqlite3';
import type { Logger } from 'winston';
import type { CbtConfig } from '../config/config-schema';
import { BackupCatalog } from '../catalog/backup-catalog';
import { openCatalog } from '../catalog/open-catalog';
import { createJobQueue, type JobQueue } from '../jobs/job-queue';
import { Ledger } from '../ledger/ledger';
import { Repository } from '../repository/repository';

export interface Services {
  readonly config: CbtConfig;
  readonly logger: Logger;
  readonly db: Database.Database;
  readonly catalog: BackupCatalog;
  readonly ledger: Ledger;
  readonly repo: Repository;
  readonly queue: JobQueue;
}

export function catalogFile(stateDir: string): string {
  return path.join(stateDir, 'catalog.sqlite');
}

/** Scratch files of running backups (fleecing images, NBD sockets); cleaned at start. */
export function workDir(stateDir: string): string {
  return path.join(stateDir, 'work');
}

/** Opens catalog and repository for one process (daemon or a local CLI command). */
export async function openStores(config: CbtConfig, logger: Logger): Promise<Omit<Services, 'queue'>> {
  const db = openCatalog(catalogFile(config.stateDir));
  try {
    const catalog = new BackupCatalog(db);
    const repo = await Repository.open(config.repository, {
      create: true,
      compression: config.compression,
      chunkSize: config.chunkSize,
      catalog,
      logger,
    });
    return { config, logger, db, catalog, ledger: new Ledger(db, logger), repo };
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
  return { ...stores, queue: createJobQueue({ concurrency: config.concurrency, logger, newId: () => `task-${base}-${++n}` }) };
}
