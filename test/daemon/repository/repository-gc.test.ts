import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { Repository } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, sha256File, tempDir } from './repo-test-helpers';

const CHUNK = 128 * 1024;
const SIZE = 24 * CHUNK;

/** Sets every blob's mtime to `ms` ago, as if written long before. */
function ageBlobs(repoDir: string, ms: number): void {
  const t = new Date(Date.now() - ms);
  for (const store of ['.chunks', '.pages']) {
    for (const shard of fs.readdirSync(path.join(repoDir, store))) {
      for (const f of fs.readdirSync(path.join(repoDir, store, shard))) fs.utimesSync(path.join(repoDir, store, shard, f), t, t);
    }
  }
}

function countBlobs(repoDir: string, store: string): number {
  return fs.readdirSync(path.join(repoDir, store)).reduce((n, s) => n + fs.readdirSync(path.join(repoDir, store, s)).length, 0);
}

/** A pid that surely is not running: a child that has exited. */
function deadPid(): number {
  const r = spawnSync('/bin/true');
  return r.pid as number;
}

/** Format 1's sweep, blob file by blob file (format 2's, pack by pack: repository-gc-packs.test.ts). */
describe('garbage collection (format 1)', () => {
  let dir: string;
  let repo: Repository;
  let img: string;
  let data: Buffer;

  beforeEach(async () => {
    dir = tempDir();
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK, format: 1 });
    img = path.join(dir, 'disk.img');
    data = seededBytes('gc', SIZE);
    fs.writeFileSync(img, data);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function restoresExactly(id: string, expected: string): Promise<void> {
    const out = path.join(dir, 'check.raw');
    await repo.restoreDisk(id, 'scsi0', { path: out, format: 'raw' });
    expect(sha256File(out)).toBe(expected);
    fs.rmSync(out);
  }

  it('removes only unreferenced chunks and pages, and only once they are older than the grace period', async () => {
    const a = await backupImage(repo, img, { vmid: 100 });
    const hashA = sha256File(img);
    for (const i of [2, 9]) seededBytes(`gc-change-${i}`, CHUNK).copy(data, i * CHUNK);
    fs.writeFileSync(img, data);
    const b = await backupImage(repo, img, { vmid: 100, base: { backupId: a.id, disk: 'scsi0' }, dirty: [2, 9] });
    const hashB = sha256File(img);
    const chunksBefore = countBlobs(repo.dir, '.chunks');
    expect(chunksBefore).toBe(26);

    // Referenced by both: nothing to remove even with no grace.
    expect((await repo.gc({ graceMs: 0 })).chunksRemoved).toBe(0);

    await repo.removeBackup(a.id);
    ageBlobs(repo.dir, 10 * 60_000);
    const young = await repo.gc({ graceMs: 60 * 60_000 });
    expect(young).toMatchObject({ chunksRemoved: 0, pagesRemoved: 0 });

    const old = await repo.gc({ graceMs: 60_000 });
    expect(old.chunksRemoved).toBe(2);
    expect(old.pagesRemoved).toBeGreaterThanOrEqual(1);
    expect(old.chunkBytesRemoved).toBeGreaterThan(2 * CHUNK);
    expect(countBlobs(repo.dir, '.chunks')).toBe(24);
    expect((await repo.verify()).ok).toBe(true);
    await restoresExactly(b.id, hashB);
    expect(hashA).not.toBe(hashB);
  });

  it('keeps what a running writer stored or reused, and its partial backup', async () => {
    const a = await backupImage(repo, img, { vmid: 100 });
    await repo.removeBackup(a.id);
    ageBlobs(repo.dir, 60 * 60_000);

    // A writer of another VM stores the same content: the old, unreferenced chunks are reused (touched).
    const w = await repo.startBackup({ vmid: 200 });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: SIZE });
    const first = await d.putChunk(0, data.subarray(0, CHUNK));
    expect(first).toMatchObject({ stored: false, unchanged: false, zero: false });
    const fresh = Buffer.alloc(CHUNK, 7);
    expect((await d.putChunk(1, fresh)).stored).toBe(true);

    const r = await repo.gc({ graceMs: 0 });
    expect(r.chunksRemoved).toBe(SIZE / CHUNK - 1);
    expect(r.partialsRemoved).toEqual([]);

    for (let i = 2; i < d.chunkCount; i++) await d.putChunk(i, data.subarray(i * CHUNK, (i + 1) * CHUNK));
    await d.finish({ mode: 'full', reason: 'test', bytesRead: SIZE, durationMs: 1 });
    const m = await w.commit();
    expect((await repo.verify()).ok).toBe(true);
    const expected = Buffer.from(data);
    fresh.copy(expected, CHUNK);
    fs.writeFileSync(img, expected);
    await restoresExactly(m.id, sha256File(img));
  });

  it('removes partial backups whose writer is dead, old temporary files and a dead GC leftover', async () => {
    const a = await backupImage(repo, img, { vmid: 100 });
    const partial = `vm/300/2026-01-01T00_00_00Z`;
    fs.mkdirSync(path.join(repo.dir, partial), { recursive: true });
    fs.writeFileSync(
      path.join(repo.dir, '.locks', 'vm-300.lock'),
      JSON.stringify({ pid: deadPid(), procStart: null, host: os.hostname(), what: 'backup', startedAtMs: 0, vmid: 300 }),
    );
    const shard = fs.readdirSync(path.join(repo.dir, '.chunks'))[0];
    const tmp = path.join(repo.dir, '.chunks', shard, `${'a'.repeat(64)}.tmp-1-deadbeef`);
    fs.writeFileSync(tmp, 'partial write');
    const old = new Date(Date.now() - 3_600_000);
    fs.utimesSync(tmp, old, old);
    const victim = fs.readdirSync(path.join(repo.dir, '.chunks', shard))[0];
    fs.renameSync(path.join(repo.dir, '.chunks', shard, victim), path.join(repo.dir, '.chunks', shard, `${victim}.gc-1`));

    const r = await repo.gc({ graceMs: 60_000 });
    expect(r.partialsRemoved).toEqual([partial]);
    expect(r.tempFilesRemoved).toBe(1);
    expect(fs.existsSync(path.join(repo.dir, partial))).toBe(false);
    expect(fs.existsSync(path.join(repo.dir, '.chunks', shard, victim))).toBe(true);
    expect((await repo.verify()).ok).toBe(true);
    expect((await repo.listBackups()).map((x) => x.id)).toEqual([a.id]);
  });
});

describe('locking', () => {
  let dir: string;
  let repo: Repository;

  beforeEach(async () => {
    dir = tempDir();
    repo = await Repository.open(path.join(dir, 'repo'), { create: true, chunkSize: CHUNK });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('opens only real repositories and checks its options', async () => {
    await expect(Repository.open(path.join(dir, 'nothing'))).rejects.toMatchObject({ code: 'CBT_REPO_NOT_A_REPOSITORY' });
    fs.mkdirSync(path.join(dir, 'other'));
    fs.writeFileSync(path.join(dir, 'other', '.pve-cbt-repository'), '{"format":"something-else"}');
    await expect(Repository.open(path.join(dir, 'other'), { create: true, chunkSize: CHUNK })).rejects.toMatchObject({ code: 'CBT_REPO_NOT_A_REPOSITORY' });
    await expect(Repository.open(repo.dir, { chunkSize: 96 * 1024 })).rejects.toMatchObject({ code: 'CBT_REPO_INVALID_ARGUMENT' });
    await expect(repo.startBackup({ vmid: 0 })).rejects.toMatchObject({ code: 'CBT_REPO_INVALID_ARGUMENT' });
    await expect(repo.readManifest('vm/100/../../etc')).rejects.toMatchObject({ code: 'CBT_REPO_BAD_BACKUP_ID' });
    await expect(repo.readManifest('vm/100/2026-01-01T00_00_00Z')).rejects.toMatchObject({ code: 'CBT_REPO_BACKUP_NOT_FOUND' });
    const w = await repo.startBackup({ vmid: 100 });
    await expect(w.openDisk({ name: 'scsi0', format: 'raw', size: 4096, chunkSize: 1000 })).rejects.toMatchObject({ code: 'CBT_REPO_INVALID_ARGUMENT' });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: 4096 });
    await expect(w.openDisk({ name: 'scsi0', format: 'raw', size: 4096 })).rejects.toMatchObject({ code: 'CBT_REPO_INVALID_ARGUMENT' });
    await expect(d.putChunk(0, Buffer.alloc(100, 1))).rejects.toMatchObject({ code: 'CBT_REPO_INVALID_ARGUMENT' });
    await expect(d.putChunk(1, Buffer.alloc(4096, 1))).rejects.toMatchObject({ code: 'CBT_REPO_INVALID_ARGUMENT' });
    await expect(w.commit()).rejects.toMatchObject({ code: 'CBT_REPO_WRITER_STATE' });
    await w.abort();
  });

  it('one writer per VM fails fast; other VMs write at the same time', async () => {
    const w1 = await repo.startBackup({ vmid: 100 });
    await expect(repo.startBackup({ vmid: 100 })).rejects.toMatchObject({ code: 'CBT_REPO_LOCKED', details: { holderPid: process.pid } });
    const w2 = await repo.startBackup({ vmid: 101 });
    await w2.abort();
    await w1.abort();
    expect(fs.readdirSync(path.join(repo.dir, 'vm', '100'))).toEqual([]);
    const w3 = await repo.startBackup({ vmid: 100 });
    await w3.abort();
  });

  it('a dead writer’s lock is taken over', async () => {
    fs.writeFileSync(
      path.join(repo.dir, '.locks', 'vm-100.lock'),
      JSON.stringify({ pid: deadPid(), procStart: null, host: os.hostname(), what: 'backup', startedAtMs: 0, vmid: 100 }),
    );
    const w = await repo.startBackup({ vmid: 100 });
    await w.abort();
  });

  it('GC is exclusive', async () => {
    const other = await Repository.open(repo.dir);
    fs.writeFileSync(
      path.join(repo.dir, '.locks', 'gc.lock'),
      JSON.stringify({ pid: process.pid, procStart: null, host: os.hostname(), what: 'gc', startedAtMs: Date.now() }),
    );
    await expect(other.gc()).rejects.toMatchObject({ code: 'CBT_REPO_LOCKED' });
    fs.unlinkSync(path.join(repo.dir, '.locks', 'gc.lock'));
    await expect(other.gc()).resolves.toMatchObject({ chunksRemoved: 0 });
  });

  it('a backup a running writer cloned from cannot be removed until the writer is done', async () => {
    const img = path.join(dir, 'd.img');
    fs.writeFileSync(img, seededBytes('lock', 4 * CHUNK));
    const a = await backupImage(repo, img, { vmid: 100 });
    const w = await repo.startBackup({ vmid: 100, parent: a.id });
    const d = await w.openDisk({ name: 'scsi0', format: 'raw', size: 4 * CHUNK, base: { backupId: a.id, disk: 'scsi0' } });
    await expect(repo.removeBackup(a.id)).rejects.toMatchObject({ code: 'CBT_REPO_BACKUP_IN_USE' });
    expect((await repo.listBackups()).map((b) => b.id)).toEqual([a.id]);
    await d.finish({ mode: 'incremental', reason: 'nothing changed', bytesRead: 0, durationMs: 0 });
    const m = await w.commit();
    await repo.removeBackup(a.id);
    expect((await repo.prune({ keepLast: 1 })).map((x) => [x.id, x.keep])).toEqual([[m.id, true]]);
  });

  it('an explicit time that is taken is refused; without one the next free second is used', async () => {
    const t = new Date('2026-11-25T15:04:05.678Z');
    const w1 = await repo.startBackup({ vmid: 100, time: t });
    expect(w1.id).toBe('vm/100/2026-11-25T15_04_05Z');
    await w1.commit();
    await expect(repo.startBackup({ vmid: 100, time: t })).rejects.toMatchObject({ code: 'CBT_REPO_BACKUP_EXISTS' });
    const w2 = await repo.startBackup({ vmid: 100 });
    const w2id = w2.id;
    await w2.commit();
    const w3 = await repo.startBackup({ vmid: 100 });
    expect(w3.id > w2id).toBe(true);
    await w3.abort();
  });
});
