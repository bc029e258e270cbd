import fs from 'node:fs';
import path from 'node:path';
import {
  cursorOf,
  parseCursor,
  recordsProblem,
  resumePoint,
  sealBefore,
  shardBlobsToCopy,
  shardsToVisit,
  type SealedRecord,
} from '../../../daemon/repository/upgrade-plan';
import { parseSealedRecord, readUpgradeState, sealedRecordKey, encodeSealedRecord, writeSealedRecord, writeUpgradeStart } from '../../../daemon/repository/upgrade-state';
import { Repository } from '../../../daemon/repository/repository';
import { LocalDirStorage } from '../../../daemon/repository/storage';
import { tempDir } from './repo-test-helpers';

const d = (prefix: string): string => prefix.padEnd(64, '0');
const rec = (seq: number, first: string, last: string, packId = String(seq).padStart(32, 'a')): SealedRecord => ({
  seq,
  packId,
  first,
  last,
  blobs: 1,
  bytes: 100,
  skipped: [],
});

describe('upgrade plan', () => {
  it.each<[string, string, boolean]>([
    ['chunk:' + d('ab'), 'chunk', true],
    ['page:' + d('00'), 'page', true],
    ['blob:' + d('00'), '', false],
    ['chunk:' + d('AB'), '', false],
    ['chunk:abc', '', false],
    ['chunk:' + d('ab') + ':x', '', false],
  ])('parseCursor(%s)', (cursor, kind, ok) => {
    const p = parseCursor(cursor);
    expect(p !== null).toBe(ok);
    if (p) expect(p.kind).toBe(kind);
  });

  it('cursors sort as the copy order: chunks by digest, then pages', () => {
    const list = [cursorOf('page', d('00')), cursorOf('chunk', d('ff')), cursorOf('chunk', d('00')), cursorOf('page', d('10'))];
    expect([...list].sort()).toEqual([cursorOf('chunk', d('00')), cursorOf('chunk', d('ff')), cursorOf('page', d('00')), cursorOf('page', d('10'))]);
  });

  it.each<[string, string | null, number, string]>([
    ['from the start: every chunk shard, then every page shard', null, 512, 'chunk/00'],
    ['after a chunk of shard 7f: that shard again, then the rest', cursorOf('chunk', d('7f12')), 129 + 256, 'chunk/7f'],
    ['after the last chunk of all: the page shards', cursorOf('chunk', 'f'.repeat(64)), 256 + 1, 'chunk/ff'],
    ['after a page of shard 01', cursorOf('page', d('01')), 255, 'page/01'],
    ['after the very last page: only its own shard', cursorOf('page', 'f'.repeat(64)), 1, 'page/ff'],
  ])('shardsToVisit: %s', (_n, after, count, first) => {
    const s = shardsToVisit(after);
    expect(s.length).toBe(count);
    expect(`${s[0].kind}/${s[0].shard}`).toBe(first);
  });

  it.each<[string, string[], string | null, string[]]>([
    ['only digests of the shard, sorted', [d('ab2'), d('ab1'), `${d('ab3')}.tmp-1-2`, `${d('ab4')}.gc-7`, d('cd1')], null, [d('ab1'), d('ab2')]],
    ['only those after the cursor', [d('ab1'), d('ab2'), d('ab3')], cursorOf('chunk', d('ab2')), [d('ab3')]],
    ['a cursor of an earlier shard leaves all', [d('ab1')], cursorOf('chunk', d('aa')), [d('ab1')]],
    ['a cursor of a later shard leaves none', [d('ab1')], cursorOf('chunk', d('ac')), []],
    ['a page cursor leaves no chunk', [d('ab1')], cursorOf('page', d('00')), []],
  ])('shardBlobsToCopy: %s', (_n, names, after, expected) => {
    expect(shardBlobsToCopy('chunk', 'ab', names, after)).toEqual(expected);
  });

  it.each<[string, number, number, boolean]>([
    ['an empty pack takes any blob', 16, 100 << 20, false],
    ['below target and max: keep filling', 10 << 20, 1 << 20, false],
    ['at target: seal', 32 << 20, 1, true],
    ['the blob would pass the max: seal first', 60 << 20, 8 << 20, true],
  ])('sealBefore: %s', (_n, packBytes, next, expected) => {
    expect(sealBefore(packBytes, next, 16, 32 << 20, 64 << 20)).toBe(expected);
  });

  it.each<[string, SealedRecord[], string | null]>([
    ['none', [], null],
    ['in order', [rec(0, cursorOf('chunk', d('0')), cursorOf('chunk', d('1'))), rec(1, cursorOf('chunk', d('2')), cursorOf('page', d('0')))], null],
    ['a gap in seq', [rec(0, cursorOf('chunk', d('0')), cursorOf('chunk', d('1'))), rec(2, cursorOf('chunk', d('2')), cursorOf('chunk', d('3')))], 'expected record 1, found 2'],
    ['overlapping ranges', [rec(0, cursorOf('chunk', d('0')), cursorOf('chunk', d('5'))), rec(1, cursorOf('chunk', d('5')), cursorOf('chunk', d('6')))], 'not after'],
    ['a reversed range', [rec(0, cursorOf('chunk', d('5')), cursorOf('chunk', d('1')))], 'reversed'],
  ])('recordsProblem: %s', (_n, records, problem) => {
    const p = recordsProblem(records);
    if (problem === null) expect(p).toBeNull();
    else expect(p?.reason).toContain(problem);
  });

  it.each<[string, boolean[], string | null, number, number]>([
    ['nothing recorded: from the start', [], null, 0, 0],
    ['all sealed: after the last', [true, true, true], 'c2', 3, 0],
    ['the last pack is gone: redo it', [true, true, false], 'c1', 2, 1],
    ['a middle pack is gone: redo from it on', [true, false, true], 'c0', 1, 2],
    ['the first pack is gone: from the start', [false, true], null, 0, 2],
  ])('resumePoint: %s', (_n, sealed, after, done, redo) => {
    const records = sealed.map((_, i) => rec(i, cursorOf('chunk', d(`${i}0`)), cursorOf('chunk', d(`${i}f`))));
    const r = resumePoint(records, (id) => sealed[records.findIndex((x) => x.packId === id)]);
    const expectAfter = after === null ? null : cursorOf('chunk', d(`${after.slice(1)}f`));
    expect(r.after).toBe(expectAfter);
    expect(r.done.length).toBe(done);
    expect(r.redo.length).toBe(redo);
    expect(r.nextSeq).toBe(done);
  });
});

describe('upgrade state records', () => {
  const good = rec(3, cursorOf('chunk', d('1')), cursorOf('chunk', d('2')), 'ab'.repeat(16));

  it('round-trips a record', () => {
    const back = parseSealedRecord(sealedRecordKey(3), encodeSealedRecord({ ...good, skipped: [{ cursor: cursorOf('chunk', d('15')), reason: 'checksum mismatch' }] }));
    expect(back.skipped).toEqual([{ cursor: cursorOf('chunk', d('15')), reason: 'checksum mismatch' }]);
    expect(back.packId).toBe(good.packId);
  });

  it.each<[string, unknown, string]>([
    ['not JSON', '{', 'not JSON'],
    ['a bad packId', { ...good, packId: 'xyz' }, 'packId'],
    ['a bad cursor', { ...good, last: 'chunk:zz' }, 'last'],
    ['negative bytes', { ...good, bytes: -1 }, 'bytes'],
    ['skipped not a list', { ...good, skipped: 'none' }, 'skipped'],
    ['seq other than the file name', { ...good, seq: 4 }, 'file name'],
  ])('refuses %s with CBT_REPO_UPGRADE_STATE_CORRUPT', (_n, value, reason) => {
    const data = Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
    let err: unknown;
    try {
      parseSealedRecord(sealedRecordKey(3), data);
    } catch (e) {
      err = e;
    }
    expect((err as { code?: string }).code).toBe('CBT_REPO_UPGRADE_STATE_CORRUPT');
    expect((err as { details: { reason: string } }).details.reason).toContain(reason);
  });

  it('reads the records from the repository folder in seq order, ignoring temporaries', async () => {
    const dir = tempDir();
    try {
      const storage = new LocalDirStorage(dir);
      for (const seq of [2, 0, 1]) await writeSealedRecord(storage, rec(seq, cursorOf('chunk', d(`${seq}0`)), cursorOf('chunk', d(`${seq}f`))));
      fs.writeFileSync(path.join(dir, '.upgrade/sealed/00000003.json.tmp-1-abcd'), '{');
      const state = await readUpgradeState(storage);
      expect(state.start).toBeNull();
      expect(state.records.map((r) => r.seq)).toEqual([0, 1, 2]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a backup is refused while the start record exists, and its lock is released', async () => {
    const dir = tempDir();
    try {
      const repo = await Repository.open(dir, { create: true });
      await writeUpgradeStart(new LocalDirStorage(dir), { format: 'pve-cbt-upgrade-1', from: 'pve-cbt-repository-1', to: 'pve-cbt-repository-2', started: new Date().toISOString(), tool: 'test' });
      await expect(repo.startBackup({ vmid: 100 })).rejects.toMatchObject({ code: 'CBT_REPO_UPGRADE_IN_PROGRESS' });
      expect(fs.readdirSync(path.join(dir, '.locks')).filter((n) => n.startsWith('vm-'))).toEqual([]);
      fs.rmSync(path.join(dir, '.upgrade'), { recursive: true });
      await (await repo.startBackup({ vmid: 100 })).abort();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
