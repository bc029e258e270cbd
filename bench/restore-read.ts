/**
 * Restore of one disk against `qemu-img convert -O raw` of the same image (issue 15's restore
 * target, ≤ 1.0×), same run, cold and flushed, as the peers bench measures it.
 *
 * Image: a 2 GiB raw disk with 1 GiB of random data in alternating 1 MiB extents (the peers bench's
 * layout), converted to qcow2 (64 KiB clusters) as qemu-img's source. Backed up through the
 * DiskWriter API into a fresh format-2 repository: a full, fed as the backup engine feeds it
 * (`feed` of repository-fixture.ts: 1 MiB batches, so its packs hold runs of adjacent chunks as a
 * real full's do), then an incremental with 328 random 64 KiB blocks changed; the incremental is
 * restored (the peers bench restores that one too).
 * The qcow2 gets the same change, so both sides produce the same bytes (compared once).
 *
 * Each round, alternating: the page cache of the side's input files is dropped (POSIX_FADV_DONTNEED
 * on each file, so other processes' caches stay), then the side is timed until its output is on
 * disk: `qemu-img convert -f qcow2 -O raw` + syncfs of the target folder; `Repository.open` +
 * `restoreDisk` to a raw file (which fsyncs) + syncfs. Best of ROUNDS counts. The same restore
 * from an encrypted repository of the same data is shown beside the unencrypted one, and the
 * floor of this machine: `cat` of the packs to /dev/null (cold), the read alone; and qemu-img's
 * convert (cold) timed while the packs are SHA-256-hashed beside it from the page cache
 * (bench/support/verify-work.ts): qemu-img's I/O with the CPU of checking every chunk on the same
 * two cores, which is what the ≤ 1.0× target asks a restore that checks every chunk to beat.
 * `BENCH_RESTORE_MIB` sets the disk size (default 2048), `BENCH_RESTORE_ROUNDS` the rounds (3).
 * `BENCH_RESTORE_OLD=DIR` (the `dist` folder of another build, e.g. of main) adds, in every round
 * right after the new one, the same restore by that build's `Repository` (same repository,
 * same target), so old and new alternate in one run; its best is printed beside the new one.
 */
import { execFile, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Repository } from '../daemon/repository/repository';
import { deriveKeys, generateMasterKey } from '../daemon/repository/key-file';
import type { RepositoryKeys } from '../daemon/repository/key-file';
import type { BenchResult } from './support/bench-result';
import { withMaxRatio } from './support/bench-result';
import { feed } from './support/repository-fixture';
import { packFiles, startHashThreads } from './support/verify-work';

const MiB = 1024 * 1024;
const ROUNDS = Number(process.env.BENCH_RESTORE_ROUNDS ?? 3);
const CHANGED_BLOCKS = 328;
const BLOCK = 64 * 1024;

/** Drops the page cache of every file under the given paths (clean pages only: sync first). */
function dropCache(paths: string[]): void {
  const files: string[] = [];
  const walk = (p: string): void => {
    const st = fs.statSync(p);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
    else if (st.isFile()) files.push(p);
  };
  for (const p of paths) walk(p);
  execFileSync('sync');
  execFileSync('python3', ['-c', 'import os,sys\nfor f in sys.argv[1:]:\n  fd=os.open(f,os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED); os.close(fd)', ...files]);
}

function syncfs(dir: string): void {
  execFileSync('sync', ['-f', dir]);
}

function makeImage(file: string, size: number): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, size);
    const buf = Buffer.allocUnsafe(MiB);
    for (let at = 0; at < size; at += 2 * MiB) fs.writeSync(fd, crypto.randomFillSync(buf), 0, MiB, at);
  } finally {
    fs.closeSync(fd);
  }
}

/** Indexes of CHANGED_BLOCKS distinct random 64 KiB blocks. */
function changeSet(size: number): number[] {
  const set = new Set<number>();
  while (set.size < CHANGED_BLOCKS) set.add(crypto.randomInt(size / BLOCK));
  return [...set].sort((a, b) => a - b);
}

async function fullAndIncremental(repo: Repository, image: string, size: number, changed: number[]): Promise<string> {
  const fh = await fs.promises.open(image, 'r');
  try {
    const w = await repo.startBackup({ vmid: 100 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size });
    await feed(d, image, Array.from({ length: d.chunkCount }, (_, i) => i));
    await d.finish({ mode: 'full', reason: 'bench', bytesRead: size, durationMs: 0 });
    const full = (await w.commit()).id;
    const w2 = await repo.startBackup({ vmid: 100, parent: full, time: new Date(Date.now() + 1000) });
    const d2 = await w2.openDisk({ name: 'scsi0', format: 'raw', size, base: { backupId: full, disk: 'scsi0' } });
    if (!d2.cloned) throw new Error('the incremental did not clone its base');
    for (const b of changed) {
      const buf = Buffer.allocUnsafe(BLOCK);
      await fh.read(buf, 0, BLOCK, b * BLOCK);
      await d2.putChunk((b * BLOCK) / d2.chunkSize, buf);
    }
    await d2.finish({ mode: 'incremental', reason: 'bench', bytesRead: changed.length * BLOCK, durationMs: 0 });
    return (await w2.commit()).id;
  } finally {
    await fh.close();
  }
}

function sha256(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 * MiB);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export async function run(): Promise<BenchResult[]> {
  const size = Number(process.env.BENCH_RESTORE_MIB ?? 2048) * MiB;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-restore-'));
  try {
    const raw = path.join(dir, 'disk.raw');
    const qcow = path.join(dir, 'disk.qcow2');
    makeImage(raw, size);
    const changed = changeSet(size);
    // The change goes into the raw twin (the backup's source) and the qcow2 alike.
    const rfd = fs.openSync(raw, 'r+');
    for (const b of changed) fs.writeSync(rfd, crypto.randomBytes(BLOCK), 0, BLOCK, b * BLOCK);
    fs.closeSync(rfd);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'compat=1.1,cluster_size=65536', raw, qcow]);
    const keys: RepositoryKeys = deriveKeys(generateMasterKey());
    const repos = { plain: path.join(dir, 'repo'), encrypted: path.join(dir, 'repo-enc') };
    const ids = {
      plain: await (async () => {
        const r = await Repository.open(repos.plain, { create: true });
        return fullAndIncremental(r, raw, size, changed);
      })(),
      encrypted: await (async () => {
        const r = await Repository.open(repos.encrypted, { create: true, keys });
        return fullAndIncremental(r, raw, size, changed);
      })(),
    };
    const want = sha256(raw);
    fs.rmSync(raw);
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const target = path.join(out, 'restored.raw');

    const convert = (): number => {
      dropCache([qcow]);
      const t0 = process.hrtime.bigint();
      execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow, target]);
      syncfs(out);
      const t = ms(t0);
      fs.rmSync(target);
      return t;
    };
    const oldDist = process.env.BENCH_RESTORE_OLD;
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const OldRepository = oldDist ? (require(path.resolve(oldDist, 'daemon/repository/repository')) as { Repository: typeof Repository }).Repository : null;
    const restore = async (kind: 'plain' | 'encrypted', check: boolean, impl: typeof Repository = Repository): Promise<number> => {
      dropCache([repos[kind]]);
      const t0 = process.hrtime.bigint();
      const repo = await impl.open(repos[kind], kind === 'encrypted' ? { keys } : {});
      await repo.restoreDisk(ids[kind], 'scsi0', { path: target, format: 'raw' });
      syncfs(out);
      const t = ms(t0);
      if (check && sha256(target) !== want) throw new Error(`the ${kind} restore differs from the image`);
      fs.rmSync(target);
      return t;
    };
    // The floor of a verified restore here: qemu-img's convert (cold) while the packs are hashed on
    // one thread per core, both timed until the last is done. The packs are read from the page cache
    // (read once before): the hashing adds the CPU of the checks, not a second read of the disk.
    const verifiedFloor = async (): Promise<number> => {
      const packs = packFiles(path.join(repos.plain, '.packs'));
      const hashing = await startHashThreads(packs, os.availableParallelism());
      dropCache([qcow]);
      execFileSync('cat', packs, { stdio: ['ignore', 'ignore', 'inherit'] });
      const t0 = process.hrtime.bigint();
      await Promise.all([
        new Promise<void>((resolve, reject) => execFile('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow, target], (err) => (err ? reject(err) : resolve()))),
        hashing.run(),
      ]);
      syncfs(out);
      const t = ms(t0);
      fs.rmSync(target);
      return t;
    };
    const floor = (): number => {
      dropCache([repos.plain]);
      const t0 = process.hrtime.bigint();
      execFileSync('sh', ['-c', `find "${repos.plain}/.packs" -name '*.pack' -exec cat {} + >/dev/null`]);
      return ms(t0);
    };
    // Correctness first: a fast wrong answer would be no figure.
    await restore('plain', true);
    await restore('encrypted', true);
    if (OldRepository) await restore('plain', true, OldRepository);
    execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', qcow, target]);
    if (sha256(target) !== want) throw new Error('qemu-img convert differs from the image');
    fs.rmSync(target);

    const best = { verified: Infinity, convert: Infinity, plain: Infinity, old: Infinity, encrypted: Infinity, floor: Infinity };
    const pairs: string[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      best.convert = Math.min(best.convert, convert());
      const tNew = await restore('plain', false);
      best.plain = Math.min(best.plain, tNew);
      if (OldRepository) {
        const tOld = await restore('plain', false, OldRepository);
        best.old = Math.min(best.old, tOld);
        pairs.push(`${(tNew / 1000).toFixed(2)}/${(tOld / 1000).toFixed(2)}`);
      }
      best.encrypted = Math.min(best.encrypted, await restore('encrypted', false));
      best.floor = Math.min(best.floor, floor());
      best.verified = Math.min(best.verified, await verifiedFloor());
    }
    const s = (x: number): number => +(x / 1000).toFixed(2);
    const gib = size / 1024 / MiB;
    return [
      withMaxRatio(
        { name: `restore ${gib} GiB (half random data) to raw, cold, flushed`, value: s(best.plain), unit: 's', baseline: `qemu-img convert -O raw of the qcow2 ${s(best.convert)} s` },
        best.plain,
        best.convert,
        1.0,
      ),
      { name: `restore ${gib} GiB from an encrypted repository, cold, flushed`, value: s(best.encrypted), unit: 's', baseline: `unencrypted ${s(best.plain)} s`, ratio: +(best.encrypted / best.plain).toFixed(2) },
      ...(OldRepository
        ? [{ name: `restore ${gib} GiB by the build in BENCH_RESTORE_OLD, alternating (new/old per round: ${pairs.join(' ')})`, value: s(best.old), unit: 's', baseline: `this build ${s(best.plain)} s`, ratio: +(best.plain / best.old).toFixed(2) }]
        : []),
      {
        name: `qemu-img convert (cold, flushed) with a verified restore's checks beside it (the packs SHA-256-hashed from the page cache, one thread per core)`,
        value: s(best.verified),
        unit: 's',
        baseline: `qemu-img convert alone ${s(best.convert)} s; this restore ${s(best.plain)} s`,
        ratio: +(best.verified / best.convert).toFixed(2),
      },
      { name: `floor: cat of the packs to /dev/null, cold (the read alone)`, value: s(best.floor), unit: 's', baseline: `qemu-img convert ${s(best.convert)} s`, ratio: +(best.floor / best.convert).toFixed(2) },
    ];
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
