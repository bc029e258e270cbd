/**
 * Point-in-time and failure behaviour of the engine on a running VM (real QEMU): guest writes during
 * a backup, failures injected mid-read (repository error, NBD export killed, copy-before-write job
 * cancelled through QMP, QEMU's NBD server busy), and leftovers of a crashed engine. After every
 * failure: no manifest, the old bitmap holds every change, and the next incremental restores exactly.
 */
import { FleeceSession } from '../../../daemon/backup/fleece-session';
import { fleeceNames } from '../../../daemon/backup/bitmap-names';
import type { BackupRepository } from '../../../daemon/backup/backup-vm';
import { withQmp } from '../../../daemon/qmp/qmp-session';
import { queryDisks } from '../../../daemon/qmp/query-disks';
import type { BackupWriter, DiskWriter } from '../../../daemon/repository/repository';
import { usePveNode } from '../../sim/jest-cleanup';
import type { SimVm } from '../../../daemon/sim/pve-node';
import { createEngineEnv, dirtyBytes, KiB, MiB, type EngineEnv } from './backup-helpers';

const sim = usePveNode();
let env: EngineEnv;
let vm: SimVm;
const VMID = 300;

beforeAll(async () => {
  env = await createEngineEnv(sim.node);
  vm = await sim.node.addVm({ vmid: VMID, disks: [{ key: 'scsi0', format: 'qcow2', sizeMiB: 16 }] });
  await vm.start();
  await vm.write('scsi0', { pattern: 0x10, offset: 0, length: 8 * MiB });
  const first = await env.backup(VMID);
  expect(first.disks[0].mode).toBe('full');
});
afterAll(() => env?.close());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function ownBitmaps() {
  const disks = await vm.qmp((q) => queryDisks(q));
  return disks[0].bitmaps.filter((b) => b.name.startsWith('pve-cbt-'));
}

/** Everything written since the last committed backup must be in the one pve-cbt bitmap, enabled. */
async function expectBitmapKeeps(writes: { offset: number; length: number }[]) {
  const own = await ownBitmaps();
  expect(own).toHaveLength(1);
  expect(own[0]).toMatchObject({ recording: true, busy: false });
  expect(own[0].count).toBeGreaterThanOrEqual(dirtyBytes(writes));
}

async function expectNextIncrementalRestores(writes: { offset: number; length: number }[]) {
  const ref = await vm.snapshotReference('scsi0');
  const r = await env.backup(VMID);
  expect(r.disks[0]).toMatchObject({ mode: 'incremental', bytesRead: dirtyBytes(writes) });
  await env.expectRestoreEquals(r.id, 'scsi0', ref);
}

async function expectNoNewBackup(before: number) {
  expect((await env.repo.listBackups(VMID)).length).toBe(before);
  expect((await env.repo.listBackupDirs(VMID)).filter((d) => !d.hasManifest)).toEqual([]);
}

test('guest writes during the backup are absent from it and present in the next one', async () => {
  const pre = [{ offset: 1 * MiB, length: 64 * KiB }];
  await vm.write('scsi0', { pattern: 0x21, ...pre[0] });
  const ref = await vm.snapshotReference('scsi0');
  const during = [{ offset: 1 * MiB, length: 4 * KiB }, { offset: 7 * MiB, length: 64 * KiB }, { offset: 12 * MiB, length: 8 * KiB }];
  let wrote = false;
  const r = await env.backup(VMID, {
    onProgress: async () => {
      if (wrote) return;
      wrote = true;
      for (const w of during) await vm.write('scsi0', { pattern: 0xee, ...w });
    },
  }, { nbdConnections: 1, nbdInFlight: 1, nbdRequestSize: 64 * KiB });
  expect(wrote).toBe(true);
  expect(r.disks[0].mode).toBe('incremental');
  await env.expectRestoreEquals(r.id, 'scsi0', ref);
  await expectNextIncrementalRestores(during);
});

test('repository write error mid-read: no manifest, bitmap keeps all changes', async () => {
  const writes = [{ offset: 0, length: 64 * KiB }, { offset: 3 * MiB, length: 256 * KiB }, { offset: 9 * MiB, length: 64 * KiB }];
  for (const w of writes) await vm.write('scsi0', { pattern: 0x31, ...w });
  const before = (await env.repo.listBackups(VMID)).length;
  const failing: BackupRepository = {
    listBackups: (v) => env.repo.listBackups(v),
    readManifest: (id) => env.repo.readManifest(id),
    startBackup: async (o) => {
      const w = await env.repo.startBackup(o);
      let puts = 0;
      const wrapDisk = (dw: DiskWriter): DiskWriter =>
        new Proxy(dw, {
          get(t, p) {
            if (p === 'putChunk') {
              return async (i: number, data: Buffer) => {
                if (++puts > 1) throw new Error('injected: repository full');
                return t.putChunk(i, data);
              };
            }
            if (p === 'putChunks') {
              // The first chunk is stored, every later one fails: mid-read even when the few
              // dirty chunks share one trip.
              return async (items: { index: number; data: Buffer }[]) => {
                if (++puts > 1) throw new Error('injected: repository full');
                if (items.length === 1) return t.putChunks(items);
                await t.putChunks(items.slice(0, 1));
                throw new Error('injected: repository full');
              };
            }
            const v = Reflect.get(t, p, t);
            return typeof v === 'function' ? v.bind(t) : v;
          },
        });
      return new Proxy(w, {
        get(t, p) {
          if (p === 'openDisk') return async (d: Parameters<BackupWriter['openDisk']>[0]) => wrapDisk(await t.openDisk(d));
          const v = Reflect.get(t, p, t);
          return typeof v === 'function' ? v.bind(t) : v;
        },
      });
    },
  };
  await expect(env.backup(VMID, { repo: failing })).rejects.toThrow(/injected: repository full/);
  await expectNoNewBackup(before);
  await expectBitmapKeeps(writes);
  await expectNextIncrementalRestores(writes);
});

test('NBD export killed mid-read: CBT_BACKUP_READ, no manifest, bitmap keeps all changes', async () => {
  const writes = [{ offset: 2 * MiB, length: 1 * MiB }, { offset: 14 * MiB, length: 64 * KiB }];
  for (const w of writes) await vm.write('scsi0', { pattern: 0x41, ...w });
  const before = (await env.repo.listBackups(VMID)).length;
  let killed = false;
  await expect(
    env.backup(VMID, {
      onProgress: async () => {
        if (killed) return;
        killed = true;
        await vm.qmp((q) => q.execute('block-export-del', { id: fleeceNames(VMID, 'scsi0').exportId, mode: 'hard' }));
      },
    }, { nbdConnections: 1, nbdInFlight: 1, nbdRequestSize: 64 * KiB }),
  ).rejects.toMatchObject({ code: 'CBT_BACKUP_READ' });
  expect(killed).toBe(true);
  await expectNoNewBackup(before);
  await expectBitmapKeeps(writes);
  await expectNextIncrementalRestores(writes);
});

test('copy-before-write job cancelled through QMP mid-read: CBT_BACKUP_FLEECE_JOB, bitmap keeps all changes', async () => {
  const writes = [{ offset: 5 * MiB, length: 512 * KiB }];
  for (const w of writes) await vm.write('scsi0', { pattern: 0x51, ...w });
  const before = (await env.repo.listBackups(VMID)).length;
  let cancelled = false;
  await expect(
    env.backup(VMID, {
      onProgress: async () => {
        if (cancelled) return;
        cancelled = true;
        const job = fleeceNames(VMID, 'scsi0').job;
        await vm.qmp((q) => q.execute('block-job-cancel', { device: job, force: true }));
        // Reading resumes once QEMU no longer lists the job as running: what the engine checks.
        await vm.qmp(async (q) => {
          for (;;) {
            const jobs = await q.execute<{ device: string; status?: string }[]>('query-block-jobs');
            const status = jobs.find((j) => j.device === job)?.status ?? 'gone';
            if (status !== 'running' && status !== 'ready') return;
            await sleep(20);
          }
        });
      },
    }),
  ).rejects.toMatchObject({ code: 'CBT_BACKUP_FLEECE_JOB' });
  await expectNoNewBackup(before);
  await expectBitmapKeeps(writes);
  await expectNextIncrementalRestores(writes);
});

test("QEMU's NBD server held by someone else: waits a bounded time, fails CBT_BACKUP_NBD_BUSY, touches nothing", async () => {
  const writes = [{ offset: 6 * MiB, length: 64 * KiB }];
  await vm.write('scsi0', { pattern: 0x61, ...writes[0] });
  const bitmapsBefore = await ownBitmaps();
  await vm.qmp((q) => q.execute('nbd-server-start', { addr: { type: 'unix', data: { path: `${env.dir}/pve-migration.nbd` } } }));
  const t0 = Date.now();
  try {
    await expect(env.backup(VMID)).rejects.toMatchObject({ code: 'CBT_BACKUP_NBD_BUSY' });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect((await ownBitmaps()).map((b) => b.name)).toEqual(bitmapsBefore.map((b) => b.name));
  } finally {
    await vm.qmp((q) => q.execute('nbd-server-stop'));
  }
  await expectNextIncrementalRestores(writes);
});

test("a crashed engine's leftovers (export, job, node, server, new bitmap) are cleaned and merged back", async () => {
  const writes = [{ offset: 4 * MiB, length: 64 * KiB }];
  await vm.write('scsi0', { pattern: 0x71, ...writes[0] });
  const [disk] = await vm.qmp((q) => queryDisks(q));
  const old = (await ownBitmaps())[0].name;
  const gen = Number(/-g(\d+)$/.exec(old)?.[1]);
  // An engine that dies after setting up leaves everything behind; never torn down here.
  const abandoned = await FleeceSession.start({ vmid: VMID, qmpSocket: vm.qmpPath, workDir: `${env.dir}/work`, jobPollMs: 60_000 }, [
    { drive: 'scsi0', device: disk.device, nodeName: disk.nodeName, size: disk.size, newBitmap: `pve-cbt-scsi0-g${gen + 1}`, persistent: true, granularity: 65536, readBitmap: old },
  ]);
  expect(abandoned.socketPath).toBeTruthy();
  const late = [{ offset: 10 * MiB, length: 64 * KiB }];
  await vm.write('scsi0', { pattern: 0x72, ...late[0] });
  await expectNextIncrementalRestores([...writes, ...late]);
  const nodes = await withQmp(vm.qmpPath, (q) => q.execute<{ 'node-name': string }[]>('query-named-block-nodes', { flat: true }));
  expect(nodes.filter((n) => n['node-name'].startsWith('pve-cbt-'))).toEqual([]);
});
