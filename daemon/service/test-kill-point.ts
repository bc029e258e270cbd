/**
 * Test-only kill points: when PVE_CBT_TEST_KILL_POINT names the point, the process kills itself
 * with SIGKILL there, so an end-to-end test can stop a real daemon at an exact place that no
 * outside signal can hit reliably (test/e2e/daemon-killed-after-commit.test.ts). Without the
 * variable (always, in production) a kill point does nothing.
 *
 * Points:
 * - `after-manifest-commit`: a backup's manifest is renamed into place and synced, its VM lock is
 *   released; the catalog row, the bitmap settlement and the ledger update have not happened.
 * - `live-restore-after-switch`: a live restore's mirror jobs have completed and concluded (QEMU put
 *   every device on its volume); the switch is not yet checked, the export not closed, the journal
 *   still says `switch` (daemon/restore/live-restore.ts).
 * - `live-restore-export-closed`: the switch is checked, the export closed, the journal says
 *   `config`; the volumes are not yet fsynced and no config is written.
 * - `pack-synced-before-idx`: a backup writer's pack is durable (file and folder fsynced) and its
 *   .idx not yet written (daemon/repository/pack-store.ts, `sealPack`): a pack nothing may trust
 *   (test/daemon/repository/repository-kill.test.ts).
 */
export type KillPoint = 'after-manifest-commit' | 'live-restore-after-switch' | 'live-restore-export-closed' | 'pack-synced-before-idx';

export const KILL_POINT_ENV = 'PVE_CBT_TEST_KILL_POINT';

export function killPoint(name: KillPoint): void {
  if (process.env[KILL_POINT_ENV] === name) process.kill(process.pid, 'SIGKILL');
}
