/** What the migration handling needs of the daemon's services (service/services.ts). */
import type { Logger } from 'winston';
import type { Ledger } from '../ledger/ledger';
import type { Repository } from '../repository/repository';

export interface MigrationDeps {
  readonly config: { readonly qemuServerConfigDir: string; readonly qemuServerRunDir: string; readonly stateDir: string };
  readonly ledger: Ledger;
  readonly repo: Pick<Repository, 'storage' | 'listBackups' | 'readManifest'>;
  readonly logger?: Logger;
  /** VMs with a queued or running job: their records are not handed over mid-backup. */
  readonly busyVmids?: () => ReadonlySet<number>;
}

/** The daemon's services seen as MigrationDeps. */
export function migrationDepsOf(s: {
  readonly config: MigrationDeps['config'];
  readonly ledger: Ledger;
  readonly repo: MigrationDeps['repo'];
  readonly logger: Logger;
  readonly queue?: { list(): ReadonlyArray<{ readonly vmid: number }> };
}): MigrationDeps {
  const queue = s.queue;
  return {
    config: s.config,
    ledger: s.ledger,
    repo: s.repo,
    logger: s.logger,
    ...(queue ? { busyVmids: () => new Set(queue.list().map((h) => h.vmid)) } : {}),
  };
}
