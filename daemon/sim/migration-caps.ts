/**
 * qemu-server's `set_migration_caps` (PVE/QemuMigrate/Helpers.pm), run on the source before
 * `migrate` and on the target right after its `-incoming` start: every capability QEMU lists in
 * `query-migrate-capabilities` is set, `auto-converge`, `xbzrle` and `dirty-bitmaps` on, all others
 * off. qemu-server turns `dirty-bitmaps` on only when `query-proxmox-support` reports
 * `pbs-dirty-bitmap-migration`, which Proxmox's own QEMU build does; upstream QEMU has no such
 * command, so the simulator takes the answer Proxmox's QEMU gives. With it, QEMU carries every
 * named bitmap (persistent or not) to the target.
 */
import type { QmpClient } from '../qmp/qmp-client';

export const PVE_MIGRATION_CAPS_ON: readonly string[] = ['auto-converge', 'xbzrle', 'dirty-bitmaps'];

export async function setMigrationCaps(q: QmpClient): Promise<void> {
  const supported = await q.execute<Array<{ capability: string }>>('query-migrate-capabilities');
  const capabilities = supported.map((c) => ({ capability: c.capability, state: PVE_MIGRATION_CAPS_ON.includes(c.capability) }));
  await q.execute('migrate-set-capabilities', { capabilities });
}
