/**
 * incremental-storage against full-compare on the same RBD disk after a QEMU restart, same run
 * (issue 18 point 2): a real single-host Ceph (scripts/ceph-micro.sh starts it in
 * ${PVE_CBT_CEPH_DIR:-/tmp/pve-cbt-ceph} and stops it again if this bench started it), the simulator's
 * RBD storage, a running VM (TCG) with a 1 GiB RBD disk holding 512 MiB of data.
 *
 *   1. repository B takes a full, then repository A takes a full: A's commit removes B's pve-cbt
 *      snapshot (one per image), so B can only compare after the restart;
 *   2. the VM is restarted (its raw disk's transient bitmap is gone) and 328 random 64 KiB blocks of
 *      the data are rewritten through the guest device (fixed seed);
 *   3. A backs up: incremental-storage, reading what `rbd diff --from-snap PREV` reports;
 *   4. B backs up the same unchanged disk: full-compare, reading all 512 MiB.
 * Target: A's bytes read <= 1.05x the changed bytes (the union of the rewritten blocks). A's time
 * and B's are reported side by side. Both restores are compared byte for byte with the disk.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backupVm, type BackupResult } from '../daemon/backup/backup-vm';
import { openCatalog } from '../daemon/catalog/open-catalog';
import { Ledger } from '../daemon/ledger/ledger';
import { Repository } from '../daemon/repository/repository';
import { createPveNode, type PveNode } from '../daemon/sim/pve-node';
import { withMaxRatio, type BenchResult } from './support/bench-result';
import { mulberry32 } from './support/prng';

const MiB = 1024 * 1024;
const DATA = 512 * MiB;
const BLOCKS = 328;
const BLOCK = 64 * 1024;
const VMID = 900;

const SCRIPT = path.join(__dirname, '../../scripts/ceph-micro.sh');

function ceph(cmd: string, dir: string): string {
  return execFileSync('bash', [SCRIPT, cmd, dir], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 600_000 });
}

function startCeph(): { dir: string; conf: string; pool: string; started: boolean } {
  const dir = process.env.PVE_CBT_CEPH_DIR || '/tmp/pve-cbt-ceph';
  let running = true;
  try {
    execFileSync('bash', [SCRIPT, 'status', dir], { stdio: 'ignore', timeout: 30_000 });
  } catch {
    running = false;
  }
  ceph('start', dir);
  const env = Object.fromEntries([...ceph('env', dir).matchAll(/^export ([A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1], m[2]]));
  return { dir, conf: env.CEPH_CONF, pool: env.RBD_POOL, started: !running };
}

interface Side {
  repo: Repository;
  ledger: Ledger;
  close(): void;
}

async function side(root: string, name: string): Promise<Side> {
  const repo = await Repository.open(path.join(root, `repo-${name}`), { create: true });
  const db = openCatalog(path.join(root, `catalog-${name}.db`));
  return { repo, ledger: new Ledger(db), close: () => db.close() };
}

async function timed(node: PveNode, root: string, s: Side): Promise<{ r: BackupResult; ms: number }> {
  execFileSync('sync');
  const t0 = process.hrtime.bigint();
  const r = await backupVm({
    vmid: VMID,
    config: { qemuServerConfigDir: node.configDir, qemuServerRunDir: node.runDir, pvesmPath: node.pvesmPath, workDir: path.join(root, 'work') },
    repo: s.repo,
    ledger: s.ledger,
  });
  return { r, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
}

/** Union of the blocks in bytes. */
function unionBytes(offsets: number[]): number {
  return new Set(offsets).size * BLOCK;
}

export async function run(): Promise<BenchResult[]> {
  const cluster = startCeph();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-rbd-'));
  const node = await createPveNode({ ceph: { conf: cluster.conf, pool: cluster.pool } });
  const sides: Side[] = [];
  try {
    const a = await side(root, 'a');
    const b = await side(root, 'b');
    sides.push(a, b);
    const vm = await node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'raw', sizeMiB: 1024, storage: 'ceph' }] });
    await vm.write('scsi0', { pattern: 0x5a, offset: 0, length: DATA }); // stopped: qemu-io through librbd
    await vm.start();
    await timed(node, root, b);
    const fullA = await timed(node, root, a);

    await vm.reboot();
    const rnd = mulberry32(18);
    const offsets = Array.from({ length: BLOCKS }, () => Math.floor(rnd() * (DATA / BLOCK)) * BLOCK);
    for (const [i, off] of offsets.entries()) await vm.write('scsi0', { pattern: 1 + (i % 250), offset: off, length: BLOCK });
    const changed = unionBytes(offsets);
    const ref = await vm.snapshotReference('scsi0');

    const incA = await timed(node, root, a);
    const cmpB = await timed(node, root, b);
    const da = incA.r.disks[0];
    const db = cmpB.r.disks[0];
    for (const [s, r] of [[a, incA.r], [b, cmpB.r]] as const) {
      const out = path.join(root, `restore-${r.id.replace(/\W/g, '_')}.raw`);
      await s.repo.restoreDisk(r.id, 'scsi0', { path: out, format: 'raw' });
      execFileSync('cmp', ['--silent', out, ref]); // throws when they differ
      fs.rmSync(out);
    }
    return [
      { name: `full (RBD, 512 MiB data, ${fullA.r.disks[0].mode})`, value: Math.round(fullA.ms), unit: 'ms' },
      withMaxRatio({ name: `after restart: bytes read (${da.mode})`, value: da.bytesRead, unit: 'B', baseline: `changed bytes ${changed}` }, da.bytesRead, changed, 1.05),
      { name: `after restart: bytes read (${db.mode}, same disk)`, value: db.bytesRead, unit: 'B', baseline: `changed bytes ${changed}`, ratio: db.bytesRead / changed },
      { name: `after restart: time (${da.mode})`, value: Math.round(incA.ms), unit: 'ms' },
      { name: `after restart: time (${db.mode}, same disk)`, value: Math.round(cmpB.ms), unit: 'ms', baseline: da.mode, ratio: cmpB.ms / incA.ms },
    ];
  } finally {
    for (const s of sides) s.close();
    await node.cleanup();
    fs.rmSync(root, { recursive: true, force: true });
    if (cluster.started) ceph('stop', cluster.dir);
  }
}
