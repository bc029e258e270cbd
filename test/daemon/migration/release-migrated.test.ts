/**
 * The source node's half against a real SQLite ledger, a real pmxcfs-like folder tree and a real
 * repository directory: who is released, with or without a handoff, and who is left alone.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { migration as ledgerMigration } from '../../../daemon/catalog/migrations/002-ledger';
import { migration as ledgerVolumesMigration } from '../../../daemon/catalog/migrations/003-ledger-volumes';
import { Ledger } from '../../../daemon/ledger/ledger';
import { CLAIM_FORMAT, claimKey, handoffKey } from '../../../daemon/migration/handoff-format';
import { writeClaim } from '../../../daemon/migration/handoff-store';
import { releaseMigratedVms } from '../../../daemon/migration/release-migrated';
import { Repository } from '../../../daemon/repository/repository';
import type { LifecycleEvent } from '../../../shared/ipc/messages';

let dir: string;
let db: Database.Database;
let ledger: Ledger;
let repo: Repository;
let deps: Parameters<typeof releaseMigratedVms>[0];
let busy: Set<number>;
let seq = 0;

const conf = (node: string, vmid: number): string => path.join(dir, 'pve/nodes', node, 'qemu-server', `${vmid}.conf`);
const moveConf = (vmid: number, from: string, to: string): void => fs.renameSync(conf(from, vmid), conf(to, vmid));

function event(vmid: number, phase: string, extra: { migratedFrom?: string; qemuPid?: number } = {}): string {
  const s = `seq-${++seq}`;
  const ev: LifecycleEvent = { source: 'hookscript', phase, vmid, time: new Date().toISOString(), seq: s, ...extra };
  ledger.recordEvent(ev);
  return s;
}

/** A VM running on pve1 with a valid record of scsi0 (as after a backup). */
function runningHere(vmid: number): void {
  fs.writeFileSync(conf('pve1', vmid), 'scsi0: local:1/x.raw\n');
  event(vmid, 'pre-start');
  event(vmid, 'post-start', { qemuPid: 4000 + vmid });
  ledger.markValid({ vmid, disk: 'scsi0', format: 'raw', bitmapName: 'pve-cbt-scsi0-g1', generation: 1, qemuPid: 4000 + vmid, qemuStartTime: 1 });
}

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-rel-'));
  for (const n of ['pve1', 'pve2']) fs.mkdirSync(path.join(dir, 'pve/nodes', n, 'qemu-server'), { recursive: true });
  fs.symlinkSync(path.join(dir, 'pve/nodes/pve1/qemu-server'), path.join(dir, 'qemu-server'));
  fs.mkdirSync(path.join(dir, 'state'));
  db = openCatalog(path.join(dir, 'state', 'catalog.sqlite'), [ledgerMigration, ledgerVolumesMigration]);
  ledger = new Ledger(db);
  repo = await Repository.open(path.join(dir, 'repo'), { create: true });
  busy = new Set();
  deps = {
    config: { qemuServerConfigDir: path.join(dir, 'qemu-server'), qemuServerRunDir: path.join(dir, 'run'), stateDir: path.join(dir, 'state') },
    ledger,
    repo,
    busyVmids: () => busy,
  };
});
afterEach(() => {
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const readJson = (key: string): unknown => {
  const f = path.join(repo.dir, ...key.split('/'));
  return fs.existsSync(f) ? JSON.parse(fs.readFileSync(f, 'utf8')) : undefined;
};

describe('releaseMigratedVms', () => {
  it('hands the valid records over with the claim id of the target and drops the rows', async () => {
    runningHere(100);
    await writeClaim(repo.storage, { format: CLAIM_FORMAT, vmid: 100, from: 'pve1', to: 'pve2', claimId: 'c-100', claimedAt: 't' });
    moveConf(100, 'pve1', 'pve2');
    expect(await releaseMigratedVms(deps)).toEqual([{ vmid: 100, to: 'pve2', handedOver: 1, claimId: 'c-100' }]);
    expect(readJson(handoffKey(100))).toMatchObject({
      vmid: 100,
      from: 'pve1',
      to: 'pve2',
      claimId: 'c-100',
      disks: [{ disk: 'scsi0', format: 'raw', bitmapName: 'pve-cbt-scsi0-g1', generation: 1 }],
    });
    expect(ledger.list(100)).toEqual([]);
    expect(ledger.activity(100)).toBeUndefined();
    expect(ledger.knownVmids()).toEqual([]);
    expect(await releaseMigratedVms(deps)).toEqual([]);
  });

  it('without a claim naming this node as source it drops the rows and hands nothing over', async () => {
    runningHere(101);
    await writeClaim(repo.storage, { format: CLAIM_FORMAT, vmid: 101, from: 'pve3', to: 'pve2', claimId: 'other', claimedAt: 't' });
    moveConf(101, 'pve1', 'pve2');
    expect(await releaseMigratedVms(deps)).toEqual([{ vmid: 101, to: 'pve2', handedOver: 0, claimId: null }]);
    expect(readJson(handoffKey(101))).toBeUndefined();
    expect(readJson(claimKey(101))).toMatchObject({ claimId: 'other' });
    expect(ledger.list(101)).toEqual([]);
  });

  it('leaves alone a VM still here, one with a job running, one it knows nothing of, and one arriving from the node holding its config', async () => {
    runningHere(102);
    runningHere(103);
    moveConf(103, 'pve1', 'pve2');
    busy.add(103);
    fs.writeFileSync(conf('pve2', 104), '');
    // 105 is being migrated from pve2 to this node: its config stays in pve2's folder until the end.
    fs.writeFileSync(conf('pve2', 105), '');
    event(105, 'pre-start', { migratedFrom: 'pve2' });
    event(105, 'post-start', { qemuPid: 5105 });
    await writeClaim(repo.storage, { format: CLAIM_FORMAT, vmid: 105, from: 'pve2', to: 'pve1', claimId: 'in', claimedAt: 't' });
    expect(await releaseMigratedVms(deps)).toEqual([]);
    expect(ledger.knownVmids()).toEqual([102, 103, 105]);
    expect(ledger.activity(105)).toMatchObject({ running: true, qemuPid: 5105 });

    // Once the job is over, 103 goes.
    busy.delete(103);
    expect((await releaseMigratedVms(deps)).map((r) => r.vmid)).toEqual([103]);
  });

  it('a VM that came from pve2 and went back there is released once pve2 claims it from this node', async () => {
    fs.writeFileSync(conf('pve2', 106), '');
    event(106, 'pre-start', { migratedFrom: 'pve2' });
    event(106, 'post-start', { qemuPid: 5106 });
    moveConf(106, 'pve2', 'pve1');
    ledger.markValid({ vmid: 106, disk: 'scsi0', format: 'qcow2', bitmapName: 'pve-cbt-scsi0-g2', generation: 2, qemuPid: 5106, qemuStartTime: 1 });
    moveConf(106, 'pve1', 'pve2');
    expect(await releaseMigratedVms(deps)).toEqual([]);
    await writeClaim(repo.storage, { format: CLAIM_FORMAT, vmid: 106, from: 'pve1', to: 'pve2', claimId: 'back', claimedAt: 't' });
    expect(await releaseMigratedVms(deps)).toEqual([{ vmid: 106, to: 'pve2', handedOver: 1, claimId: 'back' }]);
  });
});
