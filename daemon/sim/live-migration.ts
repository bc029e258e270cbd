/**
 * `qm migrate VMID TARGET --online` between two nodes of a simulated cluster (pve-cluster.ts), in
 * the order qemu-server's PVE/QemuMigrate.pm runs it, disks on storage both nodes share:
 *
 *   phase1          `lock: migrate` in the config
 *   phase2, target  `qm start --migratedfrom SOURCE --stateuri unix`: config read from the source
 *                   node, pre-start (PVE_MIGRATED_FROM=SOURCE), QEMU `-incoming unix:RUN/VMID.migrate -S`,
 *                   set_migration_caps, post-start (sim-vm.ts startIncoming)
 *   phase2, source  set_migration_caps (dirty-bitmaps on, migration-caps.ts), `migrate`, poll
 *                   `query-migrate` until completed
 *   phase3_cleanup  config moved to nodes/TARGET/qemu-server (pmxcfs rename), `qm resume --nocheck`
 *                   on the target (`cont`), the source QEMU stopped with nocheck (`quit`: no pre-stop,
 *                   and qmeventd's `qm cleanup` finds no config on this node, so no post-stop either),
 *                   `qm unlock` on the target
 *   failure         phase2_cleanup: the target QEMU is killed, the lock removed, the source goes on
 *                   (qemu-server's `qm stop --migratedfrom` on the target SIGTERMs it and, where its
 *                   cleanup flag is used, also runs post-stop there; the simulator runs no hook). QEMU
 *                   itself refuses to live-migrate a vmdk disk ("does not support live migration").
 *
 * So the source node fires no hook at all, the target node pre-start and post-start (table in
 * shared/docs/pve-qemu-facts.md). The migration stream goes straight to the target's unix socket
 * (Proxmox tunnels it through ssh to the same socket). Local disks (NBD drive-mirror) are not
 * simulated: every disk must be on the shared image directory.
 */
import fs from 'node:fs';
import path from 'node:path';
import { QmpDisconnectedError } from '../qmp/qmp-errors';
import { setMigrationCaps } from './migration-caps';
import { nodeInternals, type PveNode, type SimVm } from './pve-node';
import { SimStateError } from './sim-errors';
import { SimVmImpl } from './sim-vm';

const MIGRATE_TIMEOUT_MS = 60_000;
const POLL_MS = 50;

export async function migrateLive(source: PveNode, target: PveNode, vmid: number): Promise<SimVm> {
  const src = nodeInternals(source);
  const dst = nodeInternals(target);
  const vm = src.vms.get(vmid);
  if (!vm) throw SimStateError({ vmid, op: 'migrate', reason: `not on node ${source.nodeName}` });
  if (!vm.running()) throw SimStateError({ vmid, op: 'migrate online', reason: 'VM is not running' });
  if (dst.vms.has(vmid)) throw SimStateError({ vmid, op: 'migrate', reason: `already on node ${target.nodeName}` });
  const targetConf = path.join(target.configDir, `${vmid}.conf`);
  setConfLock(vm.confPath, 'migrate');
  const incoming = new SimVmImpl(dst.ctx, { vmid, name: vm.name, agent: vm.agent, layout: vm.layout, confPath: targetConf, disks: vm.disks });
  const socket = path.join(target.runDir, `${vmid}.migrate`);
  fs.rmSync(socket, { force: true });
  try {
    await incoming.startIncoming(source.nodeName, `unix:${socket}`, vm.confPath);
    await vm.qmp(async (q) => {
      await setMigrationCaps(q);
      await q.execute('migrate', { uri: `unix:${socket}` });
    });
    await waitCompleted(vm);
  } catch (err) {
    await incoming.kill();
    setConfLock(vm.confPath, undefined);
    throw err;
  } finally {
    fs.rmSync(socket, { force: true });
  }
  fs.renameSync(vm.confPath, targetConf);
  dst.vms.set(vmid, incoming);
  await incoming.qmp((q) => q.execute('cont'));
  await vm.qmp((q) => q.execute('quit')).catch((err: unknown) => {
    if (!QmpDisconnectedError.is(err)) throw err;
  });
  await vm.whenStopped();
  src.vms.delete(vmid);
  setConfLock(targetConf, undefined);
  return incoming;
}

async function waitCompleted(vm: SimVm): Promise<void> {
  const end = Date.now() + MIGRATE_TIMEOUT_MS;
  for (;;) {
    const st = await vm.qmp((q) => q.execute<{ status?: string; 'error-desc'?: string }>('query-migrate'));
    if (st.status === 'completed') return;
    if (st.status === 'failed' || st.status === 'cancelled') {
      throw SimStateError({ vmid: vm.vmid, op: 'migrate', reason: `migration ${st.status}: ${st['error-desc'] ?? 'no reason given'}` });
    }
    if (Date.now() > end) throw SimStateError({ vmid: vm.vmid, op: 'migrate', reason: `still ${st.status ?? 'unknown'} after ${MIGRATE_TIMEOUT_MS} ms` });
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** qemu-server's `lock: NAME` line in the current section (phase1 sets it, `qm unlock` removes it). */
function setConfLock(confPath: string, lock: string | undefined): void {
  const text = fs.readFileSync(confPath, 'utf8');
  const cut = text.search(/^\[/m);
  const head = (cut < 0 ? text : text.slice(0, cut)).split('\n').filter((l) => l !== '' && !l.startsWith('lock:'));
  if (lock !== undefined) head.push(`lock: ${lock}`);
  head.sort();
  const tail = cut < 0 ? '' : `\n${text.slice(cut)}`;
  fs.writeFileSync(confPath, `${head.join('\n')}\n${tail}`);
}
