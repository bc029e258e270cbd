import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LocalDirStorage } from '../../../daemon/repository/storage';
import { PackLookup, probeDigestPrefix } from '../../../daemon/repository/pack-lookup';
import { encodePackIndex, type PackIndexEntry } from '../../../daemon/repository/pack-index-file';
import { packIndexKeyOf } from '../../../daemon/repository/pack-format';
import { tempDir } from './repo-test-helpers';

const digestOf = (s: string): Buffer => crypto.createHash('sha256').update(s).digest();
const entry = (s: string, offset: number): PackIndexEntry => ({ digest: digestOf(s), offset, storedLength: 50, plainLength: 30, kind: 'chunk' });
const packA = 'aa'.repeat(16);
const packB = 'bb'.repeat(16);

describe('pack lookup', () => {
  let dir: string;
  let storage: LocalDirStorage;
  beforeEach(() => {
    dir = tempDir();
    storage = new LocalDirStorage(dir);
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const writeIdx = (id: string, entries: PackIndexEntry[]): Promise<void> => storage.writeAtomic(packIndexKeyOf(id), encodePackIndex(entries));

  it('loads lazily, finds every location of a digest, and sees a new pack after one refresh on a miss', async () => {
    await writeIdx(packA, [entry('x', 16), entry('y', 66)]);
    const lookup = new PackLookup(storage, 4);
    expect(await lookup.get(digestOf('x').toString('hex'))).toEqual({ packId: packA, offset: 16, storedLength: 50, plainLength: 30, kind: 'chunk' });
    expect(await lookup.get(digestOf('z').toString('hex'))).toBeNull();
    await writeIdx(packB, [entry('z', 16), entry('x', 116)]);
    // Not known without a refresh; getFresh refreshes once.
    expect(lookup.allSync(digestOf('z').toString('hex'))).toEqual([]);
    expect((await lookup.getFresh(digestOf('z').toString('hex'))).map((l) => l.packId)).toEqual([packB]);
    expect((await lookup.all(digestOf('x').toString('hex'))).map((l) => [l.packId, l.offset]).sort()).toEqual([
      [packA, 16],
      [packB, 116],
    ]);
    // A removed .idx is forgotten on the next refresh.
    fs.rmSync(path.join(dir, packIndexKeyOf(packA)));
    await lookup.refresh();
    expect((await lookup.all(digestOf('x').toString('hex'))).map((l) => l.packId)).toEqual([packB]);
    expect(await lookup.get(digestOf('y').toString('hex'))).toBeNull();
  });

  it('keeps many entries in a growing shared table the workers can probe by prefix', async () => {
    const entries = Array.from({ length: 5000 }, (_, i) => entry(`e${i}`, 16 + i * 50));
    await writeIdx(packA, entries);
    const lookup = new PackLookup(storage, 4);
    await lookup.ensureLoaded();
    for (const i of [0, 1234, 4999]) {
      expect((await lookup.get(digestOf(`e${i}`).toString('hex')))?.offset).toBe(16 + i * 50);
      expect(probeDigestPrefix(lookup.table, digestOf(`e${i}`))).toBe(true);
    }
    expect(probeDigestPrefix(lookup.table, digestOf('absent'))).toBe(false);
    // Pending digests (appended, not sealed) are prefix hits until dropped.
    lookup.addPending(digestOf('pending'));
    expect(probeDigestPrefix(lookup.table, digestOf('pending'))).toBe(true);
    expect(await lookup.get(digestOf('pending').toString('hex'))).toBeNull();
    lookup.dropPending(digestOf('pending'));
    expect(probeDigestPrefix(lookup.table, digestOf('pending'))).toBe(false);
    lookup.removePack(packA);
    expect(probeDigestPrefix(lookup.table, digestOf('e7'))).toBe(false);
  });

  it('a corrupt .idx is listed, not loaded', async () => {
    await writeIdx(packA, [entry('x', 16)]);
    const file = path.join(dir, packIndexKeyOf(packA));
    const b = fs.readFileSync(file);
    b[b.length - 1] ^= 1;
    fs.writeFileSync(file, b);
    const lookup = new PackLookup(storage);
    await lookup.refresh();
    expect([...lookup.corrupt]).toEqual([[packA, 'checksum mismatch']]);
    expect(await lookup.get(digestOf('x').toString('hex'))).toBeNull();
  });
});
