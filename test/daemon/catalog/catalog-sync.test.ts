import fs from 'node:fs';
import path from 'node:path';
import type Database from 'better-sqlite3';
import { openCatalog } from '../../../daemon/catalog/open-catalog';
import { openMemoryCatalog } from '../../../daemon/catalog/memory-catalog';
import { BackupCatalog } from '../../../daemon/catalog/backup-catalog';
import { diffCatalog, foldersToList, listBackupsFromCatalog, markSettled, MARK_SETTLED_MS, syncCatalog } from '../../../daemon/catalog/catalog-sync';
import { listVmGroups } from '../../../daemon/catalog/catalog-groups';
import { listCatalogBackups } from '../../../daemon/catalog/catalog-backup-list';
import { Repository, REPOSITORY_MARKER } from '../../../daemon/repository/repository';
import { backupImage, seededBytes, tempDir } from '../repository/repo-test-helpers';

const CHUNK = 128 * 1024;

describe('diffCatalog', () => {
  it.each([
    { known: [], folders: [], unknown: [], gone: [] },
    { known: [], folders: ['vm/1/a', 'vm/2/b'], unknown: ['vm/1/a', 'vm/2/b'], gone: [] },
    { known: ['vm/1/a', 'vm/2/b'], folders: [], unknown: [], gone: ['vm/1/a', 'vm/2/b'] },
    { known: ['vm/1/a', 'vm/1/b'], folders: ['vm/1/b', 'vm/1/c'], unknown: ['vm/1/c'], gone: ['vm/1/a'] },
    { known: ['vm/1/a'], folders: ['vm/1/a'], unknown: [], gone: [] },
  ])('known $known, folders $folders', ({ known, folders, unknown, gone }) => {
    expect(diffCatalog(known, folders)).toEqual({ unknown, gone });
  });
});

describe('foldersToList', () => {
  const disk = (o: Record<string, number | null>) => new Map(Object.entries(o));
  type Row = { what: string; onDisk: Record<string, number | null>; catalog: string[]; marks: Record<string, number>; refresh: boolean; out: string[] };
  it.each<Row>([
    { what: 'no marks: all', onDisk: { 1: 10, 2: 20 }, catalog: ['1'], marks: {}, refresh: false, out: ['1', '2'] },
    { what: 'marks match: none', onDisk: { 1: 10, 2: 20 }, catalog: ['1', '2'], marks: { 1: 10, 2: 20 }, refresh: false, out: [] },
    { what: 'refresh: all', onDisk: { 1: 10, 2: 20 }, catalog: ['1', '2'], marks: { 1: 10, 2: 20 }, refresh: true, out: ['1', '2'] },
    { what: 'one changed', onDisk: { 1: 10, 2: 21 }, catalog: ['1', '2'], marks: { 1: 10, 2: 20 }, refresh: false, out: ['2'] },
    { what: 'no time (gone or no folder)', onDisk: { 1: null }, catalog: ['1'], marks: { 1: 10 }, refresh: false, out: ['1'] },
    { what: 'known VM whose folder is gone', onDisk: { 1: 10 }, catalog: ['1', '3'], marks: { 1: 10, 3: 30 }, refresh: false, out: ['3'] },
  ])('$what', ({ onDisk, catalog, marks, refresh, out }) => {
    expect(foldersToList(disk(onDisk), catalog, new Map(Object.entries(marks)), refresh)).toEqual(out);
  });
  it.each([
    { mtime: 0, now: MARK_SETTLED_MS, settled: true },
    { mtime: 0, now: MARK_SETTLED_MS - 1, settled: false },
    { mtime: 5000, now: 4000, settled: false }, // a folder time ahead of this clock (another node's)
  ])('markSettled($mtime, $now) = $settled', ({ mtime, now, settled }) => {
    expect(markSettled(mtime, now)).toBe(settled);
  });
});

describe('catalog sync lists only the VM folders that changed', () => {
  let dir: string;
  let repoDir: string;
  let dbA: Database.Database;
  let dbB: Database.Database;
  let repoA: Repository;
  let repoB: Repository;
  let img: string;
  // Each settle puts a VM folder's time in the past, a different second every time (as a later change would).
  let settles = 0;
  const times = new Map<number, Date>();
  const setTime = (vm: number, t: Date) => fs.utimesSync(path.join(repoDir, 'vm', String(vm)), t, t);
  const settle = (vm: number) => {
    times.set(vm, new Date(Date.parse('2026-01-01T00:00:00Z') + ++settles * 1000));
    setTime(vm, times.get(vm) as Date);
  };
  const nodeB = () => ({ db: dbB, catalog: new BackupCatalog(dbB), repo: repoB });

  beforeAll(async () => {
    dir = tempDir();
    repoDir = path.join(dir, 'repo');
    dbA = openCatalog(path.join(dir, 'a.sqlite'));
    dbB = openCatalog(path.join(dir, 'b.sqlite'));
    repoA = await Repository.open(repoDir, { create: true, chunkSize: CHUNK, catalog: new BackupCatalog(dbA) });
    repoB = await Repository.open(repoDir, { create: false, chunkSize: CHUNK });
    img = path.join(dir, 'x.img');
    fs.writeFileSync(img, seededBytes('marks', 3 * CHUNK + 5));
  });
  afterAll(() => {
    dbA.close();
    dbB.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('skips settled folders, notices a new backup, a partial one, a removed VM, and --refresh finds what a kept time hides', async () => {
    const t0 = Date.parse('2026-01-01T00:00:00Z');
    await backupImage(repoA, img, { vmid: 101, time: new Date(t0) });
    await backupImage(repoA, img, { vmid: 102, time: new Date(t0 + 1000) });
    await backupImage(repoA, img, { vmid: 103, time: new Date(t0 + 2000) });
    // Folders just written are not marked (their time is within the settling window): listed again.
    expect(await syncCatalog(nodeB())).toEqual({ added: 3, forgotten: 0, listed: 3 });
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 3 });
    for (const vm of [101, 102, 103]) settle(vm);
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 3 });
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 0 });
    expect(await listBackupsFromCatalog(nodeB())).toEqual(await repoA.listBackups());

    // Another node's backup of VM 102: only that folder is listed.
    const m = await backupImage(repoA, img, { vmid: 102, time: new Date(t0 + 86_400_000) });
    expect(await syncCatalog(nodeB())).toEqual({ added: 1, forgotten: 0, listed: 1 });
    expect(await listBackupsFromCatalog(nodeB(), 102)).toEqual(await repoA.listBackups(102));
    expect(listVmGroups(dbB).find((g) => g.vmid === 102)).toMatchObject({ backups: 2, lastId: m.id });

    // A backup being written (folder, no manifest yet) keeps its VM from being marked, even settled.
    const partial = path.join(repoDir, 'vm', '101', '2026-01-03T00_00_00Z');
    fs.mkdirSync(partial);
    settle(101);
    settle(102);
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 2 });
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 1 });
    fs.rmdirSync(partial);

    // A whole VM folder gone (removed on another node): its backups are forgotten.
    fs.rmSync(path.join(repoDir, 'vm', '103'), { recursive: true });
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 1, listed: 2 });
    settle(101);
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 1 });
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 0 });
    expect(await listBackupsFromCatalog(nodeB())).toEqual(await repoA.listBackups());

    // A change that puts the folder's time back (only a hand edit does that) is found by refresh.
    const gone = (await repoA.listBackups(102))[0].id;
    fs.rmSync(path.join(repoDir, gone), { recursive: true });
    setTime(102, times.get(102) as Date);
    expect(await syncCatalog(nodeB())).toEqual({ added: 0, forgotten: 0, listed: 0 });
    expect(await syncCatalog(nodeB(), undefined, { refresh: true })).toEqual({ added: 0, forgotten: 1, listed: 2 });
    expect(await listBackupsFromCatalog(nodeB())).toEqual(await repoB.listBackups());
    expect(listVmGroups(dbB).map((g) => [g.vmid, g.backups])).toEqual([
      [101, 1],
      [102, 1],
    ]);
  });

  it('judges a folder by the clock it is given: one changed within the settling window is listed again', async () => {
    const db = openMemoryCatalog();
    try {
      const s = { db, catalog: new BackupCatalog(db), repo: repoB };
      const t = fs.statSync(path.join(repoDir, 'vm', '101')).mtimeMs;
      expect(await syncCatalog(s, 101, { nowMs: t + MARK_SETTLED_MS - 1 })).toMatchObject({ listed: 1 });
      expect(await syncCatalog(s, 101, { nowMs: t + MARK_SETTLED_MS - 1 })).toMatchObject({ listed: 1 });
      expect(await syncCatalog(s, 101, { nowMs: t + MARK_SETTLED_MS })).toMatchObject({ listed: 1 });
      expect(await syncCatalog(s, 101, { nowMs: t + MARK_SETTLED_MS })).toMatchObject({ listed: 0 });
    } finally {
      db.close();
    }
  });
});

/** Two disks, named so that manifest order (virtio1 first) is not alphabetical order. */
async function twoDiskBackup(repo: Repository, vmid: number, a: string, b: string) {
  const w = await repo.startBackup({ vmid });
  for (const [name, file] of [
    ['virtio1', a],
    ['scsi0', b],
  ]) {
    const data = fs.readFileSync(file);
    const d = await w.openDisk({ name, format: 'raw', size: data.length, chunkSize: CHUNK });
    for (let i = 0; i < d.chunkCount; i++) await d.putChunk(i, data.subarray(i * CHUNK, (i + 1) * CHUNK));
    await d.finish({ mode: 'full', reason: 'test', bytesRead: data.length, durationMs: 1 });
  }
  return w.commit();
}

describe('listing backups from a catalog kept up to a shared repository', () => {
  let dir: string;
  let repoDir: string;
  // Node A writes through its own catalog; node B shares the repository with its own catalog.
  let dbA: Database.Database;
  let dbB: Database.Database;
  let repoA: Repository;
  let repoB: Repository;
  let catalogB: BackupCatalog;

  beforeAll(async () => {
    dir = tempDir();
    repoDir = path.join(dir, 'repo');
    dbA = openCatalog(path.join(dir, 'a.sqlite'));
    dbB = openCatalog(path.join(dir, 'b.sqlite'));
    repoA = await Repository.open(repoDir, { create: true, chunkSize: CHUNK, catalog: new BackupCatalog(dbA) });
    catalogB = new BackupCatalog(dbB);
    repoB = await Repository.open(repoDir, { create: false, chunkSize: CHUNK, catalog: catalogB });
  });
  afterAll(async () => {
    dbA.close();
    dbB.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const nodeB = () => ({ db: dbB, catalog: catalogB, repo: repoB });

  it('answers exactly what the repository answers, notices backups and removals made by another node, and restores what it lists', async () => {
    const a = path.join(dir, 'a.img');
    const b = path.join(dir, 'b.img');
    fs.writeFileSync(a, seededBytes('sync-a', 5 * CHUNK + 7));
    fs.writeFileSync(b, seededBytes('sync-b', 3 * CHUNK));
    const m1 = await backupImage(repoA, a, { vmid: 102 });
    const m2 = await twoDiskBackup(repoA, 101, a, b);
    const m3 = await backupImage(repoA, b, { vmid: 103, time: new Date(Date.parse(m2.time) + 3600_000) });
    // A partial backup (folder without manifest) is listed by neither.
    fs.mkdirSync(path.join(repoDir, 'vm', '104', '2026-01-01T00_00_00Z'), { recursive: true });
    await repoA.verify({ backupId: m1.id });

    expect(listCatalogBackups(dbB)).toEqual([]);
    const all = await listBackupsFromCatalog(nodeB());
    expect(all).toEqual(await repoA.listBackups());
    expect(all.map((x) => x.id)).toEqual(
      [m1, m2, m3].sort((x, y) => x.time.localeCompare(y.time) || x.vmid - y.vmid).map((x) => x.id),
    );
    expect(all.find((x) => x.id === m2.id)?.disks.map((d) => d.name)).toEqual(['virtio1', 'scsi0']);
    expect(all.find((x) => x.id === m1.id)?.verifyState).toBe('ok');
    expect(await listBackupsFromCatalog(nodeB(), 101)).toEqual(await repoA.listBackups(101));
    // Up to date now: nothing more to learn.
    expect(await syncCatalog(nodeB())).toMatchObject({ added: 0, forgotten: 0 });

    // Node A removes one and adds one; node B's next listing shows both changes.
    await repoA.removeBackup(m3.id);
    const m4 = await backupImage(repoA, b, { vmid: 103, time: new Date(Date.parse(m2.time) + 7200_000) });
    expect(await syncCatalog(nodeB(), 103)).toMatchObject({ added: 1, forgotten: 1 });
    expect(await listBackupsFromCatalog(nodeB())).toEqual(await repoA.listBackups());
    expect(listCatalogBackups(dbB).map((x) => x.id)).toContain(m4.id);

    // What the catalog listed restores byte for byte.
    const listed = (await listBackupsFromCatalog(nodeB(), 101))[0];
    for (const [disk, src] of [
      ['virtio1', a],
      ['scsi0', b],
    ]) {
      const out = path.join(dir, `restored-${disk}.raw`);
      await repoB.restoreDisk(listed.id, disk, { path: out, format: 'raw' });
      expect(fs.readFileSync(out).equals(fs.readFileSync(src))).toBe(true);
    }
  });

  it('forgets nothing while the repository looks unmounted (no marker, no folders)', async () => {
    const before = listCatalogBackups(dbB);
    expect(before.length).toBeGreaterThan(0);
    const aside = path.join(dir, 'repo-aside');
    fs.renameSync(repoDir, aside);
    fs.mkdirSync(repoDir);
    try {
      expect(fs.existsSync(path.join(repoDir, REPOSITORY_MARKER))).toBe(false);
      expect(await syncCatalog(nodeB())).toMatchObject({ added: 0, forgotten: 0 });
      expect(listCatalogBackups(dbB)).toEqual(before);
    } finally {
      fs.rmdirSync(repoDir);
      fs.renameSync(aside, repoDir);
    }
  });

  it('fills an in-memory catalog (a read-only command on a node without a catalog file) from the repository', async () => {
    const db = openMemoryCatalog();
    try {
      const s = { db, catalog: new BackupCatalog(db), repo: repoB };
      expect(await listBackupsFromCatalog(s)).toEqual(await repoB.listBackups());
    } finally {
      db.close();
    }
  });
});
