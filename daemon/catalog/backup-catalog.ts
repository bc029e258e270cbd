/**
 * The repository part of the SQLite catalog (schema: migrations/001-repository.ts).
 *
 * It mirrors what the repository commits, removes and verifies (it is the repository's
 * CatalogSink), and records jobs. The repository's files are the truth: `rebuildFromRepository`
 * replaces the backup, disk and verify tables with what the manifests and verify.json files say.
 * It runs when the catalog file was found unreadable (damaged-catalog.ts, services.ts) and on
 * `pve-cbt catalog rebuild`. A daemon killed between its manifest commit and the catalog insert
 * leaves the catalog behind, never ahead; its next start inserts that row when it settles the
 * interrupted job (service/interrupted-jobs.ts). Jobs exist only here and are kept.
 * `list` and `status` read the backups through catalog-sync.ts, which first records what the
 * repository has and the catalog lacks (another node's backups) and forgets what it lost.
 */
import type Database from 'better-sqlite3';
import type { CatalogSink, Repository } from '../repository/repository';
import type { Manifest } from '../repository/manifest';
import type { VerifyState } from '../repository/verify';

export interface CatalogDisk {
  disk: string;
  format: string;
  size: number;
  chunkSize: number;
  pageEntries: number;
  mode: string;
  reason: string;
  bitmapName: string | null;
  bitmapGeneration: number | null;
  consistency: string | null;
  bytesRead: number;
  bytesStored: number;
  durationMs: number;
}

export interface CatalogBackup {
  id: string;
  vmid: number;
  time: string;
  parent: string | null;
  toolVersion: string;
  manifestChecksum: string;
  verifyState: 'none' | 'ok' | 'failed';
  verifiedAt: string | null;
  disks: CatalogDisk[];
}

export interface CatalogBadChunk {
  backupId: string;
  disk: string;
  offset: number;
  kind: 'chunk' | 'page';
  digest: string;
  problem: 'missing' | 'corrupt';
  foundAt: string;
}

export type JobStatus = 'running' | 'ok' | 'failed' | 'cancelled';

export interface CatalogJob {
  id: string;
  kind: string;
  vmid: number | null;
  startedAt: string;
  endedAt: string | null;
  status: JobStatus;
  backupId: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  result: unknown;
}

interface BackupRow {
  id: string;
  vmid: number;
  time: string;
  parent: string | null;
  tool_version: string;
  manifest_checksum: string;
  verify_state: 'none' | 'ok' | 'failed';
  verified_at: string | null;
}

interface DiskRow {
  backup_id: string;
  disk: string;
  format: string;
  size: number;
  chunk_size: number;
  page_entries: number;
  mode: string;
  reason: string;
  bitmap_name: string | null;
  bitmap_generation: number | null;
  consistency: string | null;
  bytes_read: number;
  bytes_stored: number;
  duration_ms: number;
}

interface JobRow {
  id: string;
  kind: string;
  vmid: number | null;
  started_at: string;
  ended_at: string | null;
  status: JobStatus;
  backup_id: string | null;
  error_code: string | null;
  error_message: string | null;
  result: string | null;
}

export class BackupCatalog implements CatalogSink {
  constructor(private readonly db: Database.Database) {}

  recordBackup(m: Manifest): void {
    this.db.transaction(() => this.insertBackup(m, null))();
  }

  forgetBackup(backupId: string): void {
    this.db.prepare('DELETE FROM backups WHERE id = ?').run(backupId);
  }

  /** Stores a verify result and the bad chunks it found (replacing the previous ones). */
  recordVerify(backupId: string, state: VerifyState): void {
    this.db.transaction(() => this.applyVerify(backupId, state))();
  }

  getBackup(backupId: string): CatalogBackup | null {
    const row = this.db.prepare('SELECT * FROM backups WHERE id = ?').get(backupId) as BackupRow | undefined;
    return row ? this.withDisks(row) : null;
  }

  /** Backups, oldest first. */
  listBackups(vmid?: number): CatalogBackup[] {
    const rows = (
      vmid === undefined
        ? this.db.prepare('SELECT * FROM backups ORDER BY time, vmid, id').all()
        : this.db.prepare('SELECT * FROM backups WHERE vmid = ? ORDER BY time, id').all(vmid)
    ) as BackupRow[];
    return rows.map((r) => this.withDisks(r));
  }

  badChunks(backupId?: string): CatalogBadChunk[] {
    const rows = (
      backupId === undefined
        ? this.db.prepare('SELECT * FROM bad_chunks ORDER BY backup_id, disk, offset').all()
        : this.db.prepare('SELECT * FROM bad_chunks WHERE backup_id = ? ORDER BY disk, offset').all(backupId)
    ) as { backup_id: string; disk: string; offset: number; kind: 'chunk' | 'page'; digest: string; problem: 'missing' | 'corrupt'; found_at: string }[];
    return rows.map((r) => ({
      backupId: r.backup_id,
      disk: r.disk,
      offset: r.offset,
      kind: r.kind,
      digest: r.digest,
      problem: r.problem,
      foundAt: r.found_at,
    }));
  }

  recordJobStart(job: { id: string; kind: string; vmid?: number; startedAt?: Date }): void {
    this.db
      .prepare("INSERT INTO jobs (id, kind, vmid, started_at, status) VALUES (?, ?, ?, ?, 'running')")
      .run(job.id, job.kind, job.vmid ?? null, (job.startedAt ?? new Date()).toISOString());
  }

  recordJobEnd(
    id: string,
    end: { status: Exclude<JobStatus, 'running'>; backupId?: string; error?: { code: string; message: string }; result?: unknown; endedAt?: Date },
  ): void {
    this.db
      .prepare('UPDATE jobs SET ended_at = ?, status = ?, backup_id = ?, error_code = ?, error_message = ?, result = ? WHERE id = ?')
      .run(
        (end.endedAt ?? new Date()).toISOString(),
        end.status,
        end.backupId ?? null,
        end.error?.code ?? null,
        end.error?.message ?? null,
        end.result === undefined ? null : JSON.stringify(end.result),
        id,
      );
  }

  /** Jobs, newest first. */
  listJobs(filter: { vmid?: number; limit?: number } = {}): CatalogJob[] {
    const rows = (
      filter.vmid === undefined
        ? this.db.prepare('SELECT * FROM jobs ORDER BY started_at DESC, id LIMIT ?').all(filter.limit ?? -1)
        : this.db.prepare('SELECT * FROM jobs WHERE vmid = ? ORDER BY started_at DESC, id LIMIT ?').all(filter.vmid, filter.limit ?? -1)
    ) as JobRow[];
    return rows.map((r) => this.jobFromRow(r));
  }

  getJob(id: string): CatalogJob | null {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row ? this.jobFromRow(row) : null;
  }

  private jobFromRow(r: JobRow): CatalogJob {
    return {
      id: r.id,
      kind: r.kind,
      vmid: r.vmid,
      startedAt: r.started_at,
      endedAt: r.ended_at,
      status: r.status,
      backupId: r.backup_id,
      errorCode: r.error_code,
      errorMessage: r.error_message,
      result: r.result === null ? null : (JSON.parse(r.result) as unknown),
    };
  }

  /**
   * Replaces backups, disks and bad chunks with what the repository holds (committed manifests and
   * their verify.json). Reads everything first, then swaps in one transaction.
   */
  async rebuildFromRepository(repo: Repository): Promise<{ backups: number }> {
    const entries: { m: Manifest; v: VerifyState | null }[] = [];
    for (const b of await repo.listBackups()) {
      entries.push({ m: await repo.readManifest(b.id), v: await repo.readVerifyState(b.id) });
    }
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM backups').run();
      for (const { m, v } of entries) this.insertBackup(m, v);
    })();
    return { backups: entries.length };
  }

  private insertBackup(m: Manifest, verify: VerifyState | null): void {
    this.db.prepare('DELETE FROM backups WHERE id = ?').run(m.id);
    this.db
      .prepare(
        `INSERT INTO backups (id, vmid, time, parent, tool_version, manifest_checksum, verify_state, verified_at)
         VALUES (?, ?, ?, ?, ?, ?, 'none', NULL)`,
      )
      .run(m.id, m.vmid, m.time, m.parent, m.toolVersion, m.checksum);
    const disk = this.db.prepare(
      `INSERT INTO backup_disks (backup_id, disk, format, size, chunk_size, page_entries, mode, reason, bitmap_name,
         bitmap_generation, consistency, bytes_read, bytes_stored, duration_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const d of m.disks) {
      disk.run(
        m.id,
        d.name,
        d.format,
        d.size,
        d.chunkSize,
        d.pageEntries,
        d.mode,
        d.reason,
        d.bitmap?.name ?? null,
        d.bitmap?.generation ?? null,
        d.consistency,
        d.bytesRead,
        d.bytesStored,
        d.durationMs,
      );
    }
    if (verify) this.applyVerify(m.id, verify);
  }

  private applyVerify(backupId: string, state: VerifyState): void {
    const changed = this.db
      .prepare('UPDATE backups SET verify_state = ?, verified_at = ? WHERE id = ?')
      .run(state.state, state.time, backupId).changes;
    if (!changed) return;
    this.db.prepare('DELETE FROM bad_chunks WHERE backup_id = ?').run(backupId);
    const ins = this.db.prepare(
      'INSERT OR REPLACE INTO bad_chunks (backup_id, disk, offset, kind, digest, problem, found_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    for (const p of state.problems) {
      if (p.kind === 'manifest' || p.disk === null || p.offset === null || p.digest === null) continue;
      ins.run(backupId, p.disk, p.offset, p.kind, p.digest, p.problem, state.time);
    }
  }

  private withDisks(row: BackupRow): CatalogBackup {
    const disks = this.db.prepare('SELECT * FROM backup_disks WHERE backup_id = ? ORDER BY disk').all(row.id) as DiskRow[];
    return {
      id: row.id,
      vmid: row.vmid,
      time: row.time,
      parent: row.parent,
      toolVersion: row.tool_version,
      manifestChecksum: row.manifest_checksum,
      verifyState: row.verify_state,
      verifiedAt: row.verified_at,
      disks: disks.map((d) => ({
        disk: d.disk,
        format: d.format,
        size: d.size,
        chunkSize: d.chunk_size,
        pageEntries: d.page_entries,
        mode: d.mode,
        reason: d.reason,
        bitmapName: d.bitmap_name,
        bitmapGeneration: d.bitmap_generation,
        consistency: d.consistency,
        bytesRead: d.bytes_read,
        bytesStored: d.bytes_stored,
        durationMs: d.duration_ms,
      })),
    };
  }
}
