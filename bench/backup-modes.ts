/**
 * The backup engine's three modes on a 2 GiB disk, beside nbdcopy and qemu-img convert in the same run.
 *
 * Image: 2 GiB with 1 GiB of random data in alternating 1 MiB extents (every even MiB), as a qcow2
 * (only the data clusters allocated) and as a sparse raw twin holding the same bytes.
 *   baselines     `nbdcopy [ qemu-nbd -r -f qcow2 IMG ] null:` and `qemu-img convert -O raw IMG OUT`
 *                 on the stopped qcow2 (the page cache is warm for all readers alike)
 *   full          running VM (real QEMU, TCG) with the qcow2 as scsi0: fleecing + NBD + repository
 *   incremental   after 328 random 64 KiB blocks were rewritten through the guest device (fixed seed)
 *   full-compare  a second VM on the raw twin: full, QEMU restarted (transient bitmap gone), then the
 *                 full-compare backup that reads the whole allocated disk and stores only what differs
 *   write floor   1 GiB written into one file on the repository's file system and fsynced: what
 *                 storing the full's data durably costs at the least, whatever the repository format
 *   file floor    the same 1 GiB as one file per chunk (the chunk store's layout) + syncfs, after
 *                 the backups: what the file system alone charges for the full's files
 * Every timed step starts after a sync(1), so write-back of the images just created (3 GiB) or of the
 * previous step is not charged to the next one.
 * Targets (issue 5): full ≤ 1.2× nbdcopy; incremental reads ≤ 1.05× the dirty bytes and takes
 * ≤ 0.2× nbdcopy's full time; full-compare ≤ 1.3× nbdcopy's time.
 * The VMs are laid out like a PVE node (config file, run dir) in a temp dir; disks are given as
 * absolute paths, which `pvesm path` passes through, so no pvesm is needed.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { backupVm, type BackupResult } from '../daemon/backup/backup-vm';
import { openCatalog } from '../daemon/catalog/open-catalog';
import { Ledger } from '../daemon/ledger/ledger';
import { withQmp } from '../daemon/qmp/qmp-session';
import { Repository } from '../daemon/repository/repository';
import { DEFAULT_CHUNK_SIZE } from '../shared/config/defaults';
import { withMaxRatio, type BenchResult } from './support/bench-result';
import { mulberry32 } from './support/prng';
import { settle } from './support/settle';

const MiB = 1024 * 1024;
const SIZE = 2048 * MiB;
const BLOCKS = 328;
const BLOCK = 64 * 1024;

function writeAlternatingRandom(file: string): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, SIZE);
    const buf = Buffer.allocUnsafe(MiB);
    for (let at = 0; at < SIZE; at += 2 * MiB) {
      crypto.randomFillSync(buf);
      fs.writeSync(fd, buf, 0, MiB, at);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** 1 GiB (the full's data) written into one file and fsynced, 1 MiB at a time. */
function writeFloorMs(dir: string): number {
  const file = path.join(dir, 'floor.bin');
  const buf = crypto.randomBytes(MiB);
  settle();
  const ms = timeMs(() => {
    const fd = fs.openSync(file, 'w');
    try {
      for (let i = 0; i < 1024; i++) fs.writeSync(fd, buf);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  });
  fs.rmSync(file);
  return ms;
}

/**
 * The same gigabyte as the full writes it: one file per 256 KiB chunk in 256 folders, then one
 * syncfs. Beside the write floor it shows what the file system charges per file. Run after the
 * backups and not deleted before the end: deleting thousands of files makes the next creations
 * slower on this VM's ext4 (no journal: the inode allocator skips recently deleted inodes one by one).
 */
function fileFloorMs(dir: string): number {
  const buf = crypto.randomBytes(DEFAULT_CHUNK_SIZE);
  for (let i = 0; i < 256; i++) fs.mkdirSync(path.join(dir, i.toString(16).padStart(2, '0')), { recursive: true });
  settle();
  return timeMs(() => {
    for (let i = 0; i < (1024 * MiB) / DEFAULT_CHUNK_SIZE; i++) {
      const fd = fs.openSync(path.join(dir, (i % 256).toString(16).padStart(2, '0'), String(i)), 'wx');
      try {
        fs.writeSync(fd, buf);
      } finally {
        fs.closeSync(fd);
      }
    }
    execFileSync('sync', ['--file-system', dir]);
  });
}

function timeMs(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

interface BenchVm {
  vmid: number;
  start(): void;
  stop(): Promise<void>;
}

function makeVm(root: string, vmid: number, image: string, format: 'qcow2' | 'raw'): BenchVm {
  const configDir = path.join(root, 'etc/pve/qemu-server');
  const runDir = path.join(root, 'var/run/qemu-server');
  fs.mkdirSync(configDir, { recursive: true });
  fs.mkdirSync(runDir, { recursive: true });
  fs.writeFileSync(path.join(configDir, `${vmid}.conf`), `memory: 64\nscsihw: virtio-scsi-pci\nscsi0: ${image},format=${format},size=2G\n`);
  const qmp = path.join(runDir, `${vmid}.qmp`);
  const pidFile = path.join(runDir, `${vmid}.pid`);
  const pid = (): number | undefined => {
    try {
      return Number(fs.readFileSync(pidFile, 'utf8').trim());
    } catch {
      return undefined;
    }
  };
  return {
    vmid,
    start() {
      execFileSync('qemu-system-x86_64', [
        '-machine', 'accel=tcg', '-m', '64', '-nographic', '-nodefaults', '-daemonize', '-no-shutdown',
        '-pidfile', pidFile,
        '-chardev', `socket,id=qmp,path=${qmp},server=on,wait=off`, '-mon', 'chardev=qmp,mode=control',
        '-device', 'virtio-scsi-pci,id=scsihw0',
        '-drive', `file=${image},if=none,id=drive-scsi0,format=${format},cache=writeback,aio=threads`,
        '-device', 'scsi-hd,bus=scsihw0.0,channel=0,scsi-id=0,lun=0,drive=drive-scsi0,id=scsi0',
      ]);
    },
    async stop() {
      const p = pid();
      if (p === undefined) return;
      try {
        await withQmp(qmp, (q) => q.execute('quit'));
      } catch {
        // QEMU closes the socket while answering quit
      }
      for (let i = 0; i < 200; i++) {
        try {
          process.kill(p, 0);
        } catch {
          break;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // already gone
      }
      fs.rmSync(pidFile, { force: true });
    },
  };
}

export async function run(): Promise<BenchResult[]> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-modes-'));
  const qcow2 = path.join(root, 'disk.qcow2');
  const raw = path.join(root, 'disk.raw');
  const vms: BenchVm[] = [];
  const results: BenchResult[] = [];
  try {
    writeAlternatingRandom(raw);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);

    // Baselines on the same (stopped) disk, same run.
    settle();
    const nbdcopyMs = timeMs(() => {
      const r = spawnSync('nbdcopy', ['--', '[', 'qemu-nbd', '-r', '-f', 'qcow2', qcow2, ']', 'null:'], { stdio: 'inherit' });
      if (r.status !== 0) throw new Error(`nbdcopy failed with ${r.status}`);
    });
    const convertOut = path.join(root, 'convert.raw');
    settle();
    const convertMs = timeMs(() => execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, convertOut]));
    fs.rmSync(convertOut);
    results.push({ name: 'nbdcopy full read (qcow2, 1 GiB data)', value: Math.round(nbdcopyMs), unit: 'ms' });
    results.push({ name: 'qemu-img convert full copy', value: Math.round(convertMs), unit: 'ms', baseline: 'nbdcopy', ratio: convertMs / nbdcopyMs });
    const floorMs = writeFloorMs(root);
    results.push({ name: 'write floor: 1 GiB into one file + fsync', value: Math.round(floorMs), unit: 'ms', baseline: 'nbdcopy', ratio: floorMs / nbdcopyMs });

    const repo = await Repository.open(path.join(root, 'repo'), { create: true });
    const db = openCatalog(path.join(root, 'catalog.db'));
    const ledger = new Ledger(db);
    const config = {
      qemuServerConfigDir: path.join(root, 'etc/pve/qemu-server'),
      qemuServerRunDir: path.join(root, 'var/run/qemu-server'),
      pvesmPath: '/usr/sbin/pvesm',
      workDir: path.join(root, 'work'),
    };
    const backup = async (vmid: number): Promise<{ r: BackupResult; ms: number }> => {
      settle();
      const t0 = process.hrtime.bigint();
      const r = await backupVm({ vmid, config, repo, ledger });
      return { r, ms: Number(process.hrtime.bigint() - t0) / 1e6 };
    };

    const vm = makeVm(root, 900, qcow2, 'qcow2');
    vms.push(vm);
    vm.start();
    const full = await backup(900);
    results.push(
      withMaxRatio(
        { name: `full (${full.r.disks[0].mode}, read ${Math.round(full.r.disks[0].bytesRead / MiB)} MiB)`, value: Math.round(full.ms), unit: 'ms', baseline: 'nbdcopy' },
        full.ms,
        nbdcopyMs,
        1.2,
      ),
    );

    const rnd = mulberry32(328);
    const granules = new Set<number>();
    await withQmp(path.join(config.qemuServerRunDir, '900.qmp'), async (q) => {
      for (let i = 0; i < BLOCKS; i++) {
        const offset = Math.floor(rnd() * (SIZE / BLOCK)) * BLOCK;
        granules.add(offset / BLOCK);
        const pattern = 1 + Math.floor(rnd() * 254);
        await q.execute('human-monitor-command', { 'command-line': `qemu-io -d scsi0 "write -P ${pattern} ${offset} ${BLOCK}"` });
      }
    });
    const dirty = granules.size * BLOCK;
    const inc = await backup(900);
    const incRead = inc.r.disks[0].bytesRead;
    results.push(withMaxRatio({ name: `incremental bytes read (${inc.r.disks[0].mode})`, value: incRead, unit: 'B', baseline: `dirty bytes ${dirty}` }, incRead, dirty, 1.05));
    results.push(withMaxRatio({ name: 'incremental time', value: Math.round(inc.ms), unit: 'ms', baseline: 'nbdcopy full' }, inc.ms, nbdcopyMs, 0.2));
    results.push({ name: 'incremental bytes stored', value: inc.r.disks[0].bytesStored, unit: 'B', baseline: `dirty bytes ${dirty}`, ratio: inc.r.disks[0].bytesStored / dirty });
    await vm.stop();

    const rawVm = makeVm(root, 901, raw, 'raw');
    vms.push(rawVm);
    rawVm.start();
    await backup(901);
    await rawVm.stop();
    rawVm.start();
    const fc = await backup(901);
    results.push(
      withMaxRatio(
        {
          name: `full-compare after restart (${fc.r.disks[0].mode}, read ${Math.round(fc.r.disks[0].bytesRead / MiB)} MiB, stored ${fc.r.disks[0].bytesStored} B)`,
          value: Math.round(fc.ms),
          unit: 'ms',
          baseline: 'nbdcopy',
        },
        fc.ms,
        nbdcopyMs,
        1.3,
      ),
    );
    const filesMs = fileFloorMs(path.join(root, 'file-floor'));
    results.push({ name: `file floor: 1 GiB as ${(1024 * MiB) / DEFAULT_CHUNK_SIZE} files + syncfs`, value: Math.round(filesMs), unit: 'ms', baseline: 'nbdcopy', ratio: filesMs / nbdcopyMs });
    db.close();
    return results;
  } finally {
    for (const v of vms) await v.stop();
    fs.rmSync(root, { recursive: true, force: true });
  }
}
