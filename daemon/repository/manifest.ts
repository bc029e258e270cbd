/**
 * The manifest is a backup's commit marker: `vm/<vmid>/<time>/manifest.json`, written last,
 * atomically (temporary file, fsync, rename, folder fsync). A backup folder without a valid manifest
 * is partial: never listed, never a base, never restored, removed by GC.
 *
 * It is JSON with a `checksum` field holding the SHA-256 of the canonical JSON (keys sorted, no
 * spaces) of everything else, so truncation or an edit is detected. Mutable state, such as the
 * verify result, lives beside it in `verify.json`, outside the checksum.
 *
 * In an encrypted repository the manifest is also authenticated: `auth` holds HMAC-SHA256 under
 * the key file's manifest key (key-file.ts) of the canonical JSON of everything but `checksum` and
 * `auth`; the checksum then covers `auth` too. Readers with the key refuse a manifest whose `auth`
 * is missing or wrong with CBT_REPO_MANIFEST_AUTH_FAILED (an edit with a recomputed checksum, a
 * manifest copied in from another repository), so its page digests are never followed. The VM's
 * `config` (which may hold secrets) is stored there as `configSealed` instead: base64 of
 * nonce (12) | AES-256-GCM ciphertext of its JSON | tag (16) under the config key, the backup id as
 * AAD; readers with the key return it as `config` again. Same format name: the fields are optional
 * and older readers checksum them like any other.
 *
 * `config` (since the VM config travels with the backup) holds the current section of VMID.conf and
 * VMID.fw at backup time, inside the checksum. Older manifests have no `config` field and stay valid
 * (same format name): readers treat a missing field as "no config saved".
 */
import { InternalError } from '../../shared/errors/internal-errors';
import crypto from 'node:crypto';
import { sha256Hex } from './digest';
import { decodePageList, geometry, isValidChunkSize } from './disk-index';
import { formatBackupId } from './backup-id';
import { RepoManifestAuthFailedError, RepoManifestCorruptError } from './repository-errors';

export const MANIFEST_FORMAT = 'pve-cbt-manifest-1';

/** `incremental-storage`: only what the storage's own change tracking reports (backup/storage-delta.ts). */
export type BackupMode = 'full' | 'incremental' | 'full-compare' | 'incremental-storage';
export type Consistency = 'frozen' | 'crash-consistent' | 'offline';

export interface DiskEntry {
  name: string;
  format: string;
  size: number;
  chunkSize: number;
  pageEntries: number;
  /** Page digests, run-length encoded (see disk-index.ts). */
  pages: string[];
  mode: BackupMode;
  reason: string;
  bitmap: { name: string; generation: number } | null;
  consistency: Consistency | null;
  /** The index this one was cloned from, if any. */
  base: { backupId: string; disk: string } | null;
  bytesRead: number;
  /** Bytes of new chunk files written (after compression). */
  bytesStored: number;
  chunksStored: number;
  /** Bytes of new index page files written. */
  pageBytesStored: number;
  durationMs: number;
}

/** The VM's config at backup time (daemon/pve/saved-vm-config.ts reads it). */
export interface SavedVmConfig {
  /** The current section of VMID.conf, verbatim (no snapshot sections). */
  readonly conf: string;
  /** VMID.fw verbatim, or null when the VM had none. */
  readonly firewall: string | null;
}

export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  id: string;
  vmid: number;
  /** ISO 8601 UTC, whole seconds; equals the time in the id. */
  time: string;
  parent: string | null;
  toolVersion: string;
  disks: DiskEntry[];
  extra: Record<string, unknown>;
  /** Absent in backups made before configs were saved. */
  config?: SavedVmConfig;
  /** Encrypted repositories: HMAC-SHA256 (manifest key) of everything but checksum and auth. */
  auth?: string;
  /** Encrypted repositories, on disk only: `config` encrypted (see the module header). */
  configSealed?: string;
  checksum: string;
}

/** JSON with object keys sorted at every level: the form the checksum is computed over. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    return `{${Object.keys(obj)
      .filter((k) => obj[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

export function manifestChecksum(m: Omit<Manifest, 'checksum'>): string {
  const { checksum: _ignored, ...rest } = m as Manifest;
  return sha256Hex(Buffer.from(canonicalJson(rest)));
}

export function manifestAuth(m: Omit<Manifest, 'checksum' | 'auth'>, manifestKey: Buffer): string {
  const { checksum: _c, auth: _a, ...rest } = m as Manifest;
  return crypto.createHmac('sha256', manifestKey).update(canonicalJson(rest)).digest('hex');
}

/** An encrypted repository's keys for its manifests (key-file.ts). */
export interface ManifestKeys {
  /** HMAC-SHA256 key of `auth`. */
  auth: Buffer;
  /** AES-256-GCM key of `configSealed`. */
  config: Buffer;
}

function sealConfig(config: SavedVmConfig, id: string, key: Buffer): string {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(id));
  const body = Buffer.concat([c.update(JSON.stringify({ conf: config.conf, firewall: config.firewall })), c.final()]);
  return Buffer.concat([nonce, body, c.getAuthTag()]).toString('base64');
}

function openConfig(sealed: string, id: string, key: Buffer): SavedVmConfig | null {
  try {
    const b = Buffer.from(sealed, 'base64');
    const d = crypto.createDecipheriv('aes-256-gcm', key, b.subarray(0, 12));
    d.setAAD(Buffer.from(id));
    d.setAuthTag(b.subarray(b.length - 16));
    return JSON.parse(Buffer.concat([d.update(b.subarray(12, b.length - 16)), d.final()]).toString('utf8')) as SavedVmConfig;
  } catch {
    return null;
  }
}

/**
 * The manifest as it is written: with keys (an encrypted repository) `config` becomes
 * `configSealed` and `auth` is added; then the checksum.
 */
export function sealManifest(m: Omit<Manifest, 'checksum'>, keys: ManifestKeys | null = null): Manifest {
  if (!keys) return { ...m, checksum: manifestChecksum(m) };
  const { config, ...rest } = m;
  const hidden = config ? { ...rest, configSealed: sealConfig(config, m.id, keys.config) } : rest;
  const signed = { ...hidden, auth: manifestAuth(hidden, keys.auth) };
  return { ...signed, checksum: manifestChecksum(signed) };
}

export function serializeManifest(m: Manifest): Buffer {
  return Buffer.from(`${JSON.stringify(m, null, 1)}\n`);
}

/**
 * Parses and validates a manifest read from `backupId`'s folder; throws CBT_REPO_MANIFEST_CORRUPT,
 * or with `keys` (an encrypted repository) CBT_REPO_MANIFEST_AUTH_FAILED when `auth` is missing
 * or does not match. With keys a sealed config is returned opened, as `config`.
 */
export function parseManifest(backupId: string, data: Buffer, keys: ManifestKeys | null = null): Manifest {
  const bad = (reason: string): never => {
    throw RepoManifestCorruptError({ backupId, reason });
  };
  let m: Manifest;
  try {
    m = JSON.parse(data.toString('utf8')) as Manifest;
  } catch (err) {
    return bad(`not JSON (${(err as Error).message})`);
  }
  if (!m || typeof m !== 'object') return bad('not an object');
  if (m.format !== MANIFEST_FORMAT) return bad(`unknown format ${JSON.stringify(m.format)}`);
  if (typeof m.checksum !== 'string' || manifestChecksum(m) !== m.checksum) return bad('checksum mismatch');
  if (keys) {
    if (typeof m.auth !== 'string') throw RepoManifestAuthFailedError({ backupId, reason: 'not authenticated (no auth field), in an encrypted repository' });
    const want = Buffer.from(manifestAuth(m, keys.auth), 'hex');
    const got = Buffer.from(m.auth, 'hex');
    if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) throw RepoManifestAuthFailedError({ backupId, reason: 'auth does not match (edited, or from another repository or key)' });
    if (m.configSealed !== undefined) {
      const config = typeof m.configSealed === 'string' && m.config === undefined ? openConfig(m.configSealed, backupId, keys.config) : null;
      if (!config) return bad('sealed config does not open');
      const { configSealed: _s, ...rest } = m;
      m = { ...rest, config };
    }
  }
  if (m.id !== backupId) return bad(`names backup ${m.id}`);
  if (formatBackupId(m.vmid, new Date(m.time)) !== backupId) return bad('vmid/time do not match the id');
  if (!Array.isArray(m.disks)) return bad('disks missing');
  if (m.config !== undefined) {
    const c = m.config as Partial<SavedVmConfig> | null;
    if (!c || typeof c.conf !== 'string' || (c.firewall !== null && typeof c.firewall !== 'string')) return bad('config malformed');
  }
  for (const d of m.disks) {
    if (!Number.isSafeInteger(d.size) || d.size < 0) return bad(`disk ${d.name}: bad size`);
    if (!isValidChunkSize(d.chunkSize)) return bad(`disk ${d.name}: bad chunk size`);
    if (!Number.isSafeInteger(d.pageEntries) || d.pageEntries < 1) return bad(`disk ${d.name}: bad page size`);
    const pages = decodePageList(d.pages, geometry(d.size, d.chunkSize, d.pageEntries).pageCount);
    if (typeof pages === 'string') return bad(`disk ${d.name}: ${pages}`);
  }
  return m;
}

/** The expanded page digest list of a disk entry (validated by parseManifest). */
export function diskPages(d: DiskEntry): string[] {
  const pages = decodePageList(d.pages, geometry(d.size, d.chunkSize, d.pageEntries).pageCount);
  if (typeof pages === 'string') throw InternalError({ what: `page list of disk ${d.name} (checked by parseManifest): ${pages}`, disk: d.name });
  return pages;
}
