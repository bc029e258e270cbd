import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import {
  deriveKeys,
  formatFingerprint,
  generateMasterKey,
  keyFingerprint,
  loadRepositoryKeys,
  paperKey,
  parseKeyFile,
  parsePaperKey,
  readKeyFile,
  sealKeyFile,
  serializeKeyFile,
  unlockKeyFile,
  writeNewKeyFile,
  type KeyFileJson,
} from '../../../daemon/repository/key-file';
import { readPassphrase } from '../../../daemon/repository/key-passphrase';
import { tempDir } from './repo-test-helpers';

/** Small scrypt cost: the parameters are recorded in the file, so any valid ones round-trip. */
const FAST = { n: 1024, r: 8, p: 1 };

/** RFC 5869 HKDF-SHA256 with an empty salt and one output block, written out independently. */
function hkdf32(ikm: Buffer, info: string): Buffer {
  const prk = crypto.createHmac('sha256', Buffer.alloc(32)).update(ikm).digest();
  return crypto.createHmac('sha256', prk).update(Buffer.concat([Buffer.from(info), Buffer.from([1])])).digest();
}

describe('key file', () => {
  let dir: string;
  beforeAll(() => (dir = tempDir()));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('sub-keys and fingerprint are HKDF-SHA256 with the frozen info strings', () => {
    const master = Buffer.alloc(32, 7);
    const k = deriveKeys(master);
    expect(k.blob).toEqual(hkdf32(master, 'pve-cbt blob encryption v1'));
    expect(k.id).toEqual(hkdf32(master, 'pve-cbt digest v1'));
    expect(k.manifest).toEqual(hkdf32(master, 'pve-cbt manifest auth v1'));
    expect(k.config).toEqual(hkdf32(master, 'pve-cbt manifest config v1'));
    expect(k.fingerprint).toBe(crypto.createHmac('sha256', hkdf32(master, 'pve-cbt fingerprint v1')).update('pve-cbt key fingerprint').digest('hex'));
    expect(new Set([k.blob.toString('hex'), k.id.toString('hex'), k.manifest.toString('hex'), k.config.toString('hex'), k.fingerprint]).size).toBe(5);
    expect(formatFingerprint(k.fingerprint)).toMatch(/^([0-9a-f]{2}:){31}[0-9a-f]{2}$/);
  });

  it('scrypt: the right passphrase unlocks the same key; a wrong or missing one is refused by code', () => {
    const master = generateMasterKey();
    const k = sealKeyFile(master, { kdf: 'scrypt', passphrase: 'correct horse', scrypt: FAST });
    expect(k.scrypt).toMatchObject(FAST);
    expect(k.key).not.toContain(master.toString('hex'));
    const parsed = parseKeyFile('k', serializeKeyFile(k));
    expect(unlockKeyFile('k', parsed, 'correct horse')).toEqual(master);
    expect(() => unlockKeyFile('k', parsed, 'correct hors')).toThrow(expect.objectContaining({ code: 'CBT_KEY_PASSPHRASE_WRONG' }));
    expect(() => unlockKeyFile('k', parsed, undefined)).toThrow(expect.objectContaining({ code: 'CBT_KEY_PASSPHRASE_MISSING' }));
    expect(() => sealKeyFile(master, { kdf: 'scrypt' })).toThrow(expect.objectContaining({ code: 'CBT_KEY_PASSPHRASE_MISSING' }));
  });

  it('kdf none holds the key itself and needs no passphrase', () => {
    const master = generateMasterKey();
    const k = sealKeyFile(master, { kdf: 'none' });
    expect(k.key).toBe(master.toString('hex'));
    expect(unlockKeyFile('k', parseKeyFile('k', serializeKeyFile(k)), undefined)).toEqual(master);
    expect(k.fingerprint).toBe(keyFingerprint(master));
  });

  const master = Buffer.alloc(32, 9);
  const none = (): KeyFileJson => sealKeyFile(master, { kdf: 'none', now: new Date('2026-12-01T00:00:00Z') });
  const scrypt = (): KeyFileJson => sealKeyFile(master, { kdf: 'scrypt', passphrase: 'pw', scrypt: FAST });
  const malformed: [string, () => unknown, string][] = [
    ['not JSON', () => '{', 'not JSON'],
    ['another format', () => ({ ...none(), format: 'pve-cbt-key-0' }), 'unknown format'],
    ['an unknown kdf', () => ({ ...none(), kdf: 'pbkdf2' }), 'unknown kdf'],
    ['a short key', () => ({ ...none(), key: 'abcd' }), 'key missing'],
    ['no fingerprint', () => ({ ...none(), fingerprint: undefined }), 'fingerprint'],
    ['scrypt without parameters', () => ({ ...scrypt(), scrypt: undefined }), 'scrypt parameters'],
    ['scrypt N not a power of two', () => ({ ...scrypt(), scrypt: { ...scrypt().scrypt, n: 1000 } }), 'scrypt parameters'],
    ['scrypt N absurdly large', () => ({ ...scrypt(), scrypt: { ...scrypt().scrypt, n: 2 ** 30 } }), 'scrypt parameters'],
  ];
  it.each(malformed)('refuses a key file with %s (CBT_KEY_FILE_INVALID)', (_name, make, reason) => {
    const v = make();
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    expect(() => parseKeyFile('k', text)).toThrow(expect.objectContaining({ code: 'CBT_KEY_FILE_INVALID', details: expect.objectContaining({ reason: expect.stringContaining(reason) }) }));
  });

  it('an edited key or edited scrypt parameters never yield another key', () => {
    const edited = { ...none(), key: generateMasterKey().toString('hex') };
    expect(() => unlockKeyFile('k', edited, undefined)).toThrow(expect.objectContaining({ code: 'CBT_KEY_FILE_INVALID' }));
    const s = scrypt();
    const cheaper = { ...s, scrypt: { ...(s.scrypt as NonNullable<KeyFileJson['scrypt']>), n: 512 } };
    expect(() => unlockKeyFile('k', cheaper, 'pw')).toThrow(expect.objectContaining({ code: 'CBT_KEY_PASSPHRASE_WRONG' }));
  });

  it('writes a new file 0600, never over an existing one, and loads the repository keys from it', () => {
    const file = path.join(dir, 'repo.key');
    const k = sealKeyFile(master, { kdf: 'scrypt', passphrase: 'pw', scrypt: FAST });
    writeNewKeyFile(file, k);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(() => writeNewKeyFile(file, none())).toThrow(expect.objectContaining({ code: 'CBT_KEY_FILE_EXISTS' }));
    expect(readKeyFile(file)).toEqual(k);
    expect(loadRepositoryKeys(file, 'pw')).toEqual(deriveKeys(master));
    expect(() => readKeyFile(path.join(dir, 'absent.key'))).toThrow(expect.objectContaining({ code: 'CBT_KEY_FILE_UNREADABLE', details: expect.objectContaining({ reason: 'ENOENT' }) }));
  });

  it('the paper form types back into the same key file, and names a mistyped line', () => {
    const k = scrypt();
    const paper = paperKey(k);
    expect(paper).toContain(formatFingerprint(k.fingerprint));
    expect(parsePaperKey(`some notes\n${paper}\nmore`)).toEqual(k);
    const lines = paper.split('\n');
    const third = lines.findIndex((l) => l.startsWith('003: '));
    const typo = [...lines];
    typo[third] = typo[third].replace(/^(003: )(.)/, (_m, p: string, c: string) => `${p}${c === 'a' ? 'b' : 'a'}`);
    expect(() => parsePaperKey(typo.join('\n'))).toThrow(expect.objectContaining({ code: 'CBT_KEY_PAPER_INVALID', details: expect.objectContaining({ line: 3 }) }));
    const missing = lines.filter((_l, i) => i !== third);
    expect(() => parsePaperKey(missing.join('\n'))).toThrow(expect.objectContaining({ code: 'CBT_KEY_PAPER_INVALID', details: expect.objectContaining({ line: 3 }) }));
    expect(() => parsePaperKey('nothing here')).toThrow(expect.objectContaining({ code: 'CBT_KEY_PAPER_INVALID' }));
  });

  it('the passphrase comes from a file (one trailing newline dropped) before the environment', () => {
    const file = path.join(dir, 'pass');
    fs.writeFileSync(file, 'secret words\n');
    expect(readPassphrase({ file, env: { PVE_CBT_ENCRYPTION_PASSWORD: 'env' } })).toBe('secret words');
    expect(readPassphrase({ env: { PVE_CBT_ENCRYPTION_PASSWORD: 'env' } })).toBe('env');
    expect(readPassphrase({ env: {} })).toBeUndefined();
    expect(() => readPassphrase({ file: path.join(dir, 'nope'), env: {} })).toThrow(expect.objectContaining({ code: 'CBT_KEY_PASSPHRASE_UNREADABLE' }));
  });
});
