/**
 * A catalog SQLite cannot read is set aside and replaced (damaged-catalog.ts), on real SQLite files:
 * garbage in the database file, a page damaged inside a valid file, garbage in the WAL only.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openCatalogOrSetAside } from '../../../daemon/catalog/damaged-catalog';
import { openCatalog } from '../../../daemon/catalog/open-catalog';

let tmp: string;
let file: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-cat-'));
  file = path.join(tmp, 'catalog.sqlite');
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function withJobs(n: number): void {
  const db = openCatalog(file);
  const ins = db.prepare("INSERT INTO jobs (id, kind, started_at, status, error_message) VALUES (?, 'backup', ?, 'ok', ?)");
  for (let i = 0; i < n; i++) ins.run(`job-${i}`, new Date().toISOString(), 'x'.repeat(2000));
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

const jobCount = (db: ReturnType<typeof openCatalog>): number => (db.prepare('SELECT COUNT(*) AS n FROM jobs').get() as { n: number }).n;

describe('openCatalogOrSetAside', () => {
  test('a healthy catalog is opened as it is', () => {
    withJobs(3);
    const { db, setAside } = openCatalogOrSetAside(file);
    expect(setAside).toBeUndefined();
    expect(jobCount(db)).toBe(3);
    db.close();
  });

  test('garbage in catalog.sqlite and its WAL: both moved aside, a fresh catalog opened', () => {
    fs.writeFileSync(file, crypto.randomBytes(64 * 1024));
    fs.writeFileSync(`${file}-wal`, crypto.randomBytes(32 * 1024));
    const { db, setAside } = openCatalogOrSetAside(file);
    expect(setAside?.reason).toMatch(/^SQLITE_NOTADB/);
    expect(setAside?.files.map((f) => path.basename(f).replace(/corrupt-.*/, 'corrupt-'))).toEqual(['catalog.sqlite.corrupt-', 'catalog.sqlite-wal.corrupt-']);
    for (const f of setAside!.files) expect(fs.existsSync(f)).toBe(true);
    expect(jobCount(db)).toBe(0);
    db.close();
  });

  test('a damaged page inside a valid file is found by the quick check', () => {
    withJobs(200);
    const size = fs.statSync(file).size;
    const fd = fs.openSync(file, 'r+');
    // Overwrite a page in the middle with garbage, keeping the header intact.
    fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, Math.floor(size / 2 / 4096) * 4096);
    fs.closeSync(fd);
    const { db, setAside } = openCatalogOrSetAside(file);
    expect(setAside?.reason).toMatch(/^SQLITE_CORRUPT/);
    expect(jobCount(db)).toBe(0);
    db.close();
  });
});
