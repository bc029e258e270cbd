/**
 * The target node's half, second step: take over the bitmap records the source node's daemon
 * handed over, when adoption-decision.ts says they describe this very QEMU. Each adopted disk is
 * recorded with Ledger.markValid as if its bitmap had been created at the migrated pre-start (the
 * events stored since then are applied to it) under the QEMU running now, so the mode decision then
 * checks QEMU's own view of it like any other. Called before every backup of the VM and by the
 * watcher; a handoff once judged is removed from the repository.
 */
import { lastBackupsByDisk } from '../backup/last-backups';
import { readQemuProcess } from '../pve/qemu-process';
import { readVmConfig } from '../pve/vm-disks';
import { decideAdoption, type AdoptionVerdict, type MigratedStart } from './adoption-decision';
import { clusterViewOf } from './cluster-view';
import { consumeHandoff, readHandoff } from './handoff-store';
import type { MigrationDeps } from './migration-deps';

/** How far back the ledger's events are searched for the VM's last pre-start. */
const EVENT_WINDOW = 200;

export function lastStartOf(deps: Pick<MigrationDeps, 'ledger'>, vmid: number): MigratedStart | undefined {
  const evs = deps.ledger.events(vmid, EVENT_WINDOW);
  let at = -1;
  for (let k = evs.length - 1; k >= 0 && at < 0; k--) if (evs[k].source === 'hookscript' && evs[k].phase === 'pre-start') at = k;
  if (at < 0) return undefined;
  const pre = evs[at];
  const post = evs.slice(at + 1).find((e) => e.source === 'hookscript' && e.phase === 'post-start');
  return { eventId: pre.id, seq: pre.seq, migratedFrom: pre.migratedFrom, postStartPid: post?.qemuPid ?? null };
}

export async function adoptMigratedBitmaps(deps: MigrationDeps, vmid: number): Promise<AdoptionVerdict | undefined> {
  const view = clusterViewOf(deps.config.qemuServerConfigDir);
  if (!view) return undefined;
  const start = lastStartOf(deps, vmid);
  if (!start || start.migratedFrom === null) return undefined;
  const handoff = await readHandoff(deps.repo.storage, vmid);
  if (!handoff) return { kind: 'wait', reason: `no handoff from ${start.migratedFrom} yet` };
  const qemu = readQemuProcess(deps.config.qemuServerRunDir, vmid);
  const last = await lastBackupsByDisk(deps.repo, vmid);
  const verdict = decideAdoption({
    vmid,
    thisNode: view.nodeName,
    start,
    handoff,
    qemuPid: qemu?.pid,
    configDisks: readVmConfig(deps.config.qemuServerConfigDir, vmid).disks,
    ledgerStates: new Map(deps.ledger.list(vmid).map((r) => [r.disk, r.state])),
    lastBitmaps: new Map([...last].map(([disk, b]) => [disk, b.bitmap])),
  });
  const log = deps.logger?.child({ vmid, from: handoff.from });
  if (verdict.kind === 'adopt' && qemu) {
    for (const d of verdict.disks) {
      const valid = deps.ledger.markValid(
        { vmid, disk: d.disk, format: d.format, bitmapName: d.bitmapName, generation: d.generation, qemuPid: qemu.pid, qemuStartTime: qemu.startTime },
        { sinceEventId: start.eventId },
      );
      log?.info(`bitmap ${d.bitmapName} adopted from ${handoff.from} after live migration${valid ? '' : ', but events since the migration already invalidate it'}`, { disk: d.disk });
    }
    for (const s of verdict.skipped) log?.info(`bitmap record of ${s.disk} from ${handoff.from} not adopted: ${s.reason}`, { disk: s.disk });
  } else if (verdict.kind === 'none') {
    log?.info(`bitmap records from ${handoff.from} not adopted: ${verdict.reason}`);
  }
  if (verdict.kind === 'adopt' || (verdict.kind === 'none' && verdict.consume)) await consumeHandoff(deps.repo.storage, vmid);
  return verdict;
}
