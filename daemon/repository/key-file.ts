/**
 * The master key of an encrypted repository and the JSON key file that keeps it (as
 * proxmox-backup-client's keyfile does).
 *
 * Key file (`pve-cbt key create`, mode 0600, never overwritten):
 *   {"format":"pve-cbt-key-1","created":"<ISO time>","kdf":"scrypt"|"none",
 *    "scrypt":{"n":65536,"r":8,"p":1,"salt":"<32 hex>"},      only with kdf scrypt
 *    "key":"<hex>",
 *    "fingerprint":"<64 hex>"}
 * - kdf "scrypt": `key` is the 32-byte master key wrapped with AES-256-GCM under
 *   scrypt(passphrase, salt, N, r, p) → 32 bytes: nonce (12) | ciphertext (32) | tag (16), with the
 *   AAD "pve-cbt-key-1 scrypt <n> <r> <p> <salt>" (so the recorded parameters cannot be edited).
 *   A wrong passphrase fails the GCM tag: CBT_KEY_PASSPHRASE_WRONG, never a wrong key.
 * - kdf "none": `key` is the master key itself (for unattended daemons; protect the file).
 * - `fingerprint` is the master key's fingerprint (below); checked after every unlock, so an edited
 *   file is CBT_KEY_FILE_INVALID.
 *
 * Sub-keys (HKDF-SHA256 of the master key, empty salt, 32 bytes each; the info strings are frozen):
 *   "pve-cbt blob encryption v1"  AES-256-GCM key of every blob (blob-cipher.ts)
 *   "pve-cbt digest v1"           HMAC-SHA256 key of the blob digests (digest.ts)
 *   "pve-cbt manifest auth v1"    HMAC-SHA256 key of the manifests' `auth` field (manifest.ts)
 *   "pve-cbt manifest config v1"  AES-256-GCM key of the VM config a manifest keeps (manifest.ts)
 *   "pve-cbt fingerprint v1"      HMAC-SHA256 key of the fingerprint
 * Fingerprint = HMAC-SHA256(fingerprint key, "pve-cbt key fingerprint"), 64 hex (PBS: a keyed hash
 * of the key, never the key itself). The repository marker records it, so a wrong key is refused
 * at open (CBT_REPO_KEY_WRONG) before any blob or manifest is read. Shown as 32 colon-separated
 * byte pairs, as PBS shows its fingerprints.
 *
 * Paper form (`pve-cbt key export --paperkey`): the key file's compact JSON (still protected by its
 * passphrase) as hex lines of 32 bytes between BEGIN/END lines, each line prefixed with its number
 * and followed by a 4-hex check of that line, so a mistyped line is named when it is typed back
 * (`parsePaperKey`). Pure functions apart from `readKeyFile`/`writeNewKeyFile`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import {
  KeyFileExistsError,
  KeyFileInvalidError,
  KeyFileUnreadableError,
  KeyPaperInvalidError,
  KeyPassphraseMissingError,
  KeyPassphraseWrongError,
} from './key-errors';

export const KEY_FILE_FORMAT = 'pve-cbt-key-1';
export const KEY_KDFS = ['scrypt', 'none'] as const;
export type KeyKdf = (typeof KEY_KDFS)[number];
export const MASTER_KEY_BYTES = 32;

export interface ScryptParams {
  n: number;
  r: number;
  p: number;
  /** 16 random bytes, hex. */
  salt: string;
}

/** PBS's defaults: 64 MiB and a fraction of a second per unlock. */
export const DEFAULT_SCRYPT: Omit<ScryptParams, 'salt'> = { n: 65536, r: 8, p: 1 };

export interface KeyFileJson {
  format: typeof KEY_FILE_FORMAT;
  created: string;
  kdf: KeyKdf;
  scrypt?: ScryptParams;
  key: string;
  fingerprint: string;
}

/** The keys a repository is opened with (derived from the master key; never logged or printed). */
export interface RepositoryKeys {
  /** AES-256-GCM key of the blobs. */
  readonly blob: Buffer;
  /** HMAC-SHA256 key of the digests. */
  readonly id: Buffer;
  /** HMAC-SHA256 key of the manifests' `auth`. */
  readonly manifest: Buffer;
  /** AES-256-GCM key of the VM config inside a manifest. */
  readonly config: Buffer;
  readonly fingerprint: string;
}

const hkdf = (master: Buffer, info: string): Buffer => Buffer.from(crypto.hkdfSync('sha256', master, Buffer.alloc(0), info, 32));

export function keyFingerprint(master: Buffer): string {
  return crypto.createHmac('sha256', hkdf(master, 'pve-cbt fingerprint v1')).update('pve-cbt key fingerprint').digest('hex');
}

export function deriveKeys(master: Buffer): RepositoryKeys {
  if (master.length !== MASTER_KEY_BYTES) throw new RangeError(`a master key has ${MASTER_KEY_BYTES} bytes, not ${master.length}`);
  return Object.freeze({
    blob: hkdf(master, 'pve-cbt blob encryption v1'),
    id: hkdf(master, 'pve-cbt digest v1'),
    manifest: hkdf(master, 'pve-cbt manifest auth v1'),
    config: hkdf(master, 'pve-cbt manifest config v1'),
    fingerprint: keyFingerprint(master),
  });
}

/** `aa:bb:…` as people compare fingerprints. */
export function formatFingerprint(fingerprint: string): string {
  return (fingerprint.match(/../g) ?? []).join(':');
}

export function generateMasterKey(): Buffer {
  return crypto.randomBytes(MASTER_KEY_BYTES);
}

function scryptKey(passphrase: string, s: ScryptParams): Buffer {
  return crypto.scryptSync(Buffer.from(passphrase, 'utf8'), Buffer.from(s.salt, 'hex'), 32, { N: s.n, r: s.r, p: s.p, maxmem: 256 * s.n * s.r + 1024 * 1024 });
}

const wrapAad = (s: ScryptParams): Buffer => Buffer.from(`${KEY_FILE_FORMAT} scrypt ${s.n} ${s.r} ${s.p} ${s.salt}`);

/** A new key file's content for `master`; kdf scrypt needs a non-empty passphrase. */
export function sealKeyFile(
  master: Buffer,
  opts: { kdf: KeyKdf; passphrase?: string; scrypt?: Omit<ScryptParams, 'salt'>; now?: Date; file?: string },
): KeyFileJson {
  const base = { format: KEY_FILE_FORMAT, created: (opts.now ?? new Date()).toISOString(), kdf: opts.kdf } as const;
  const fingerprint = keyFingerprint(master);
  if (opts.kdf === 'none') return { ...base, key: master.toString('hex'), fingerprint };
  if (!opts.passphrase) {
    throw KeyPassphraseMissingError({ file: opts.file ?? '(new key)', hint: 'give --passphrase-file FILE or set PVE_CBT_ENCRYPTION_PASSWORD, or use --kdf none' });
  }
  const scrypt: ScryptParams = { ...(opts.scrypt ?? DEFAULT_SCRYPT), salt: crypto.randomBytes(16).toString('hex') };
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', scryptKey(opts.passphrase, scrypt), nonce);
  c.setAAD(wrapAad(scrypt));
  const wrapped = Buffer.concat([nonce, c.update(master), c.final(), c.getAuthTag()]);
  return { ...base, scrypt, key: wrapped.toString('hex'), fingerprint };
}

export function serializeKeyFile(k: KeyFileJson): Buffer {
  return Buffer.from(`${JSON.stringify(k, null, 2)}\n`);
}

const isHex = (s: unknown, bytes?: number): s is string => typeof s === 'string' && /^([0-9a-f]{2})+$/.test(s) && (bytes === undefined || s.length === 2 * bytes);
const isPowerOfTwo = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 2 && ((n as number) & ((n as number) - 1)) === 0;

/** Parses and checks the shape of a key file (not the passphrase: `unlockKeyFile`). */
export function parseKeyFile(file: string, data: Buffer | string): KeyFileJson {
  const bad = (reason: string): never => {
    throw KeyFileInvalidError({ file, reason });
  };
  let k: KeyFileJson;
  try {
    k = JSON.parse(data.toString()) as KeyFileJson;
  } catch (err) {
    return bad(`not JSON (${(err as Error).message})`);
  }
  if (!k || typeof k !== 'object') return bad('not an object');
  if (k.format !== KEY_FILE_FORMAT) return bad(`unknown format ${JSON.stringify(k.format)}`);
  if (!isHex(k.fingerprint, 32)) return bad('fingerprint missing or malformed');
  if (k.kdf === 'none') {
    if (!isHex(k.key, MASTER_KEY_BYTES)) return bad('key missing or malformed');
  } else if (k.kdf === 'scrypt') {
    const s = k.scrypt;
    if (!s || !isPowerOfTwo(s.n) || s.n > 2 ** 22 || !Number.isSafeInteger(s.r) || s.r < 1 || s.r > 32 || !Number.isSafeInteger(s.p) || s.p < 1 || s.p > 16 || !isHex(s.salt)) {
      return bad('scrypt parameters missing or out of range');
    }
    if (!isHex(k.key, 12 + MASTER_KEY_BYTES + 16)) return bad('wrapped key missing or malformed');
  } else return bad(`unknown kdf ${JSON.stringify(k.kdf)}`);
  return k;
}

/** The master key of a parsed key file; checks the passphrase (scrypt) and the fingerprint. */
export function unlockKeyFile(file: string, k: KeyFileJson, passphrase: string | undefined): Buffer {
  let master: Buffer;
  if (k.kdf === 'none') master = Buffer.from(k.key, 'hex');
  else {
    if (passphrase === undefined) {
      throw KeyPassphraseMissingError({ file, hint: 'set PVE_CBT_ENCRYPTION_PASSWORD, or name a passphrase file (--passphrase-file, config encryption.passphraseFile)' });
    }
    const s = k.scrypt as ScryptParams;
    const wrapped = Buffer.from(k.key, 'hex');
    const d = crypto.createDecipheriv('aes-256-gcm', scryptKey(passphrase, s), wrapped.subarray(0, 12));
    d.setAAD(wrapAad(s));
    d.setAuthTag(wrapped.subarray(12 + MASTER_KEY_BYTES));
    try {
      master = Buffer.concat([d.update(wrapped.subarray(12, 12 + MASTER_KEY_BYTES)), d.final()]);
    } catch {
      throw KeyPassphraseWrongError({ file });
    }
  }
  if (keyFingerprint(master) !== k.fingerprint) throw KeyFileInvalidError({ file, reason: 'the key does not match the recorded fingerprint (edited or damaged)' });
  return master;
}

export function readKeyFile(file: string): KeyFileJson {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (err) {
    throw KeyFileUnreadableError({ file, reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, err);
  }
  return parseKeyFile(file, data);
}

/** Reads, unlocks and derives: the keys a repository is opened with. */
export function loadRepositoryKeys(file: string, passphrase: string | undefined): RepositoryKeys {
  const k = readKeyFile(file);
  return deriveKeys(unlockKeyFile(file, k, passphrase));
}

/** Writes a new key file (0600, fsynced); refuses to replace an existing file. */
export function writeNewKeyFile(file: string, k: KeyFileJson): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw KeyFileExistsError({ file });
    throw KeyFileUnreadableError({ file, reason: (err as NodeJS.ErrnoException).code ?? (err as Error).message }, err);
  }
  try {
    fs.writeSync(fd, serializeKeyFile(k));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

const PAPER_BEGIN = '-----BEGIN PVE-CBT KEY FILE-----';
const PAPER_END = '-----END PVE-CBT KEY FILE-----';
const PAPER_LINE_BYTES = 32;

const lineCheck = (n: number, hex: string): string => crypto.createHash('sha256').update(`${n}:${hex}`).digest('hex').slice(0, 4);

/** The paper form of a key file (see the module header). */
export function paperKey(k: KeyFileJson): string {
  const bytes = Buffer.from(JSON.stringify(k));
  const lines = [PAPER_BEGIN, `# kdf ${k.kdf}, fingerprint ${formatFingerprint(k.fingerprint)}`];
  for (let o = 0, n = 1; o < bytes.length; o += PAPER_LINE_BYTES, n++) {
    const hex = bytes.subarray(o, o + PAPER_LINE_BYTES).toString('hex');
    lines.push(`${String(n).padStart(3, '0')}: ${hex} ${lineCheck(n, hex)}`);
  }
  lines.push(PAPER_END);
  return `${lines.join('\n')}\n`;
}

/** The key file a paper form was made of; names the first line that was typed wrong. */
export function parsePaperKey(text: string): KeyFileJson {
  const all = text.split(/\r?\n/).map((l) => l.trim());
  const begin = all.indexOf(PAPER_BEGIN);
  const end = all.indexOf(PAPER_END);
  if (begin < 0 || end < begin) throw KeyPaperInvalidError({ line: 0, reason: `no ${PAPER_BEGIN} … ${PAPER_END} block` });
  const parts: Buffer[] = [];
  let expected = 1;
  for (const line of all.slice(begin + 1, end)) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\d+):\s*([0-9a-fA-F\s]+?)\s+([0-9a-fA-F]{4})$/.exec(line);
    if (!m) throw KeyPaperInvalidError({ line: expected, reason: `cannot read "${line}"` });
    const n = Number(m[1]);
    if (n !== expected) throw KeyPaperInvalidError({ line: expected, reason: `line ${n} found where line ${expected} belongs` });
    const hex = m[2].replace(/\s+/g, '').toLowerCase();
    if (!isHex(hex) || lineCheck(n, hex) !== m[3].toLowerCase()) throw KeyPaperInvalidError({ line: n, reason: 'check digits do not match (mistyped)' });
    parts.push(Buffer.from(hex, 'hex'));
    expected++;
  }
  if (parts.length === 0) throw KeyPaperInvalidError({ line: 0, reason: 'no key lines' });
  return parseKeyFile('(paper key)', Buffer.concat(parts));
}
