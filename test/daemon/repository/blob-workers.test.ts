import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BlobWorkers } from '../../../daemon/repository/blob-workers';
import lz4 from 'lz4-napi';
import { CHUNK_MAGIC_V1, decodeBlobSync, encodeBlob } from '../../../daemon/repository/file-formats';
import { tempDir } from './repo-test-helpers';

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

describe('blob workers: hashing', () => {
  const pool = new BlobWorkers(2);
  afterAll(() => pool.close());

  const cases: [string, () => Buffer][] = [
    ['empty (inline)', () => Buffer.alloc(0)],
    ['small (inline)', () => crypto.randomBytes(1000)],
    ['chunk in ordinary memory (copied to a worker)', () => crypto.randomBytes(262144)],
    ['view into a SharedArrayBuffer (no copy)', () => {
      const b = Buffer.from(new SharedArrayBuffer(1 << 20));
      crypto.randomFillSync(b);
      return b.subarray(4096, 4096 + 262144);
    }],
  ];

  it.each(cases)('%s: the digest equals crypto.createHash', async (_name, make) => {
    const data = make();
    expect(await pool.sha256Hex(data)).toBe(sha(data));
  });

  it('many concurrent jobs each get their own digest', async () => {
    const shared = Buffer.from(new SharedArrayBuffer(64 * 131072));
    crypto.randomFillSync(shared);
    const views = Array.from({ length: 64 }, (_, i) => shared.subarray(i * 131072, (i + 1) * 131072));
    expect(await Promise.all(views.map((v) => pool.sha256Hex(v)))).toEqual(views.map(sha));
  });

  it('a pool keeps working after its workers were stopped', async () => {
    const p = new BlobWorkers(1);
    const data = crypto.randomBytes(131072);
    expect(await p.sha256Hex(data)).toBe(sha(data));
    await p.close();
    expect(await p.sha256Hex(data)).toBe(sha(data));
    await p.close();
  });
});

describe('blob workers: storing a blob into its file', () => {
  const pool = new BlobWorkers(2);
  let dir: string;
  beforeAll(() => {
    dir = tempDir();
  });
  afterAll(async () => {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const text = Buffer.from('pve-cbt stores changed blocks. '.repeat(9000)).subarray(0, 262144);
  const store = (file: string, plain: Buffer, force = false, verify = true): ReturnType<BlobWorkers['store']> =>
    pool.store({ file, plain, magic: CHUNK_MAGIC_V1, compress: true, force, verify, touch: true });
  const old = new Date('2020-01-01T00:00:00Z');
  const decoded = (file: string): Buffer => {
    const plain = decodeBlobSync(fs.readFileSync(file), CHUNK_MAGIC_V1, true, lz4);
    if (typeof plain === 'string') throw new Error(plain);
    return plain;
  };

  it('writes a new blob in the chunk format (creating its folder), then finds it present and touches it', async () => {
    const file = path.join(dir, 'a', 'b', 'blob');
    const first = await store(file, text);
    expect(first.existed).toBe(false);
    expect(first.storedBytes).toBe(fs.statSync(file).size);
    expect(fs.readFileSync(file).equals(Buffer.concat(encodeBlob('chunk', text, 'auto')))).toBe(true);
    expect(decoded(file).equals(text)).toBe(true);
    fs.utimesSync(file, old, old);
    expect(await store(file, text)).toEqual({ existed: true, storedBytes: 0, repaired: false });
    expect(fs.statSync(file).mtimeMs).toBeGreaterThan(old.getTime());
    expect(fs.readdirSync(path.dirname(file))).toEqual(['blob']);
  });

  const damaged: [string, (file: string) => void][] = [
    ['empty (a crash before the sync)', (f) => fs.truncateSync(f, 0)],
    ['truncated to its header', (f) => fs.truncateSync(f, 20)],
    ['truncated in the payload', (f) => fs.truncateSync(f, fs.statSync(f).size - 1)],
    ['another kind of blob under the name', (f) => fs.writeFileSync(f, Buffer.concat(encodeBlob('page', text, 'auto')))],
  ];

  it.each(damaged)('rewrites a blob file that is %s', async (_name, damage) => {
    const file = path.join(dir, 'damaged', crypto.randomBytes(4).toString('hex'));
    await store(file, text);
    damage(file);
    expect((await store(file, text)).existed).toBe(false);
    expect(decoded(file).equals(text)).toBe(true);
  });

  it('force rewrites a complete blob (verify found it bad inside)', async () => {
    const file = path.join(dir, 'forced');
    const random = crypto.randomBytes(262144);
    await store(file, random);
    const bytes = fs.readFileSync(file);
    bytes[1000] ^= 0xff;
    fs.writeFileSync(file, bytes);
    expect((await store(file, random, false, false)).existed).toBe(true);
    expect((await store(file, random, true)).existed).toBe(false);
    expect(decoded(file).equals(random)).toBe(true);
  });

  it.each([
    ['raw', () => crypto.randomBytes(262144)],
    ['lz4', () => text],
  ])('verify finds a complete-sized %s blob with flipped bytes, rewrites it and says repaired', async (_name, make) => {
    const file = path.join(dir, `flipped-${_name}`);
    const plain = make();
    await store(file, plain);
    const bytes = fs.readFileSync(file);
    bytes[bytes.length - 100] ^= 0xff;
    fs.writeFileSync(file, bytes);
    expect(await store(file, plain)).toMatchObject({ existed: false, repaired: true });
    expect(decoded(file).equals(plain)).toBe(true);
    expect(await store(file, plain)).toEqual({ existed: true, storedBytes: 0, repaired: false });
  });

  it('blobs are created 0600 in folders made 0700, whatever the umask', async () => {
    const before = process.umask(0);
    try {
      const file = path.join(dir, 'modes', 'x', 'blob');
      await store(file, text);
      expect(fs.statSync(file).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
      expect(fs.statSync(path.dirname(path.dirname(file))).mode & 0o777).toBe(0o700);
    } finally {
      process.umask(before);
    }
  });

  it('stores from a view into a SharedArrayBuffer', async () => {
    const shared = Buffer.from(new SharedArrayBuffer(1 << 20));
    crypto.randomFillSync(shared);
    const view = shared.subarray(65536, 65536 + 262144);
    const file = path.join(dir, 'shared');
    await store(file, view);
    expect(decoded(file).equals(Buffer.from(view))).toBe(true);
  });

  it('fails with the errno code of the failed call and leaves no temporary file', async () => {
    const blocker = path.join(dir, 'not-a-folder');
    fs.writeFileSync(blocker, 'x');
    await expect(store(path.join(blocker, 'blob'), text)).rejects.toMatchObject({ code: 'ENOTDIR' });
    // The rename fails when a folder holds the name; the temporary file beside it must go.
    const parent = path.join(dir, 'rename-fails');
    fs.mkdirSync(path.join(parent, 'blob', 'x'), { recursive: true });
    await expect(store(path.join(parent, 'blob'), text, true)).rejects.toMatchObject({ code: 'EISDIR' });
    expect(fs.readdirSync(parent)).toEqual(['blob']);
  });

  describe('reading a blob back', () => {
    const random = crypto.randomBytes(262144);
    const digestOf = (b: Buffer): string => sha(b);
    const load = (file: string, plain: Buffer, checkCrc = true): ReturnType<BlobWorkers['load']> =>
      pool.load({ file, digest: digestOf(plain), magic: CHUNK_MAGIC_V1, checkCrc, maxPlain: plain.length });

    it.each([
      ['raw (random)', random],
      ['lz4 (text)', text],
    ])('a stored %s blob comes back whole, in a Buffer of the caller\'s own', async (_name, plain) => {
      const file = path.join(dir, 'load', digestOf(plain));
      await store(file, plain);
      const r = await load(file, plain);
      if (r.state !== 'ok') throw new Error(`state ${r.state}`);
      expect(Buffer.isBuffer(r.plain)).toBe(true);
      expect(r.plain.equals(plain)).toBe(true);
      r.plain.fill(1);
      expect((await load(file, plain)).state).toBe('ok');
    });

    const problems: [string, (file: string) => void, boolean, string][] = [
      ['a flipped payload bit, CRC checked', (f) => flip(f, 5000), true, 'checksum mismatch'],
      ['a flipped payload bit, CRC left to the SHA-256', (f) => flip(f, 5000), false, 'content does not match its digest'],
      ['a truncated file', (f) => fs.truncateSync(f, 1000), true, 'checksum mismatch'],
      ['a page under a chunk name', (f) => fs.writeFileSync(f, Buffer.concat(encodeBlob('page', random, 'none'))), true, 'bad magic'],
    ];
    function flip(file: string, at: number): void {
      const b = fs.readFileSync(file);
      b[at] ^= 0x40;
      fs.writeFileSync(file, b);
    }

    it.each(problems)('%s is reported corrupt with its reason', async (_name, damage, checkCrc, reason) => {
      const file = path.join(dir, 'load-bad', crypto.randomBytes(4).toString('hex'));
      await store(file, random);
      damage(file);
      expect(await load(file, random, checkCrc)).toEqual({ state: 'corrupt', reason });
    });

    it("fills shared memory the caller gives, and only when the length is the content's", async () => {
      const file = path.join(dir, 'load', `into-${digestOf(text)}`);
      await store(file, text);
      const into = Buffer.from(new SharedArrayBuffer(text.length));
      const r = await pool.load({ file, digest: digestOf(text), magic: CHUNK_MAGIC_V1, checkCrc: false, into });
      expect(r.state === 'ok' && r.plain).toBe(into);
      expect(into.equals(text)).toBe(true);
      const short = Buffer.from(new SharedArrayBuffer(text.length - 1));
      expect(await pool.load({ file, digest: digestOf(text), magic: CHUNK_MAGIC_V1, checkCrc: false, into: short })).toEqual({
        state: 'corrupt',
        reason: `length ${text.length}, the index expects ${text.length - 1}`,
      });
      expect(() => pool.load({ file, digest: digestOf(text), magic: CHUNK_MAGIC_V1, checkCrc: false, into: Buffer.alloc(text.length) })).toThrow(TypeError);
    });

    it('a missing file is reported missing; other errors carry their code', async () => {
      expect(await load(path.join(dir, 'load', 'nope'), random)).toEqual({ state: 'missing' });
      await expect(load(dir, random)).rejects.toMatchObject({ code: 'EISDIR', syscall: 'read' });
    });
  });
});
