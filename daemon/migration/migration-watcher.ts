/**
 * Looks every few seconds (and once at start) for VMs that left this node (release-migrated.ts) and
 * for VMs that arrived by live migration with a handoff waiting (adopt-migrated.ts). pmxcfs offers
 * no change notification a daemon can rely on (inotify does not see other nodes' writes), so this
 * polls; it costs one readdir of each node folder the ledger's VMs could be in. Runs never overlap;
 * a failure is logged and the next run tries again.
 */
import { listNodeVmids } from '../service/select-vms';
import { adoptMigratedBitmaps } from './adopt-migrated';
import { clusterViewOf } from './cluster-view';
import type { MigrationDeps } from './migration-deps';
import { releaseMigratedVms } from './release-migrated';

export const WATCH_INTERVAL_MS = 2_000;

export interface MigrationWatcher {
  /** One pass now (also what the timer runs). */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

export function startMigrationWatcher(deps: MigrationDeps, intervalMs = WATCH_INTERVAL_MS): MigrationWatcher {
  let running: Promise<void> | undefined;
  const pass = async (): Promise<void> => {
    if (!clusterViewOf(deps.config.qemuServerConfigDir)) return;
    await releaseMigratedVms(deps);
    for (const vmid of listNodeVmids(deps.config.qemuServerConfigDir)) {
      if (deps.busyVmids?.().has(vmid)) continue;
      await adoptMigratedBitmaps(deps, vmid);
    }
  };
  const runOnce = (): Promise<void> => {
    if (running) return running;
    const run = pass()
      .catch((err: Error) => {
        deps.logger?.warn(`migration watcher: ${err.message}`, { code: (err as { code?: string }).code });
      })
      .finally(() => {
        running = undefined;
      });
    running = run;
    return run;
  };
  const timer = setInterval(() => void runOnce(), intervalMs);
  timer.unref();
  void runOnce();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
