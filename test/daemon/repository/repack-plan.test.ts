import { planRepack, type PackEntryRef, type PackFacts } from '../../../daemon/repository/repack-plan';

/** Digest of a one-letter name, so tables stay readable: 'a' → 'aaaa…' (64 hex). */
const d = (c: string): string => c.repeat(64);
const CUTOFF = 1_000_000;
const OLD = CUTOFF - 1;
const YOUNG = CUTOFF;
const HEADER = 16;

/** A pack of blobs back to back after the 16-byte header; `spec` is "a:100 b:50" (name:stored bytes). */
function pack(packId: string, spec: string, mtime = OLD, extraDead = 0): PackFacts {
  let offset = HEADER;
  const entries: PackEntryRef[] = [];
  for (const part of spec.split(' ').filter(Boolean)) {
    const [name, len] = part.split(':');
    entries.push({ digest: d(name), offset, storedLength: Number(len), kind: 'chunk' });
    offset += Number(len);
  }
  return { packId, entries, packBytes: offset + extraDead, idxMtimeMs: mtime };
}

/** "packId:action:reason:live digests" per pack. */
function run(packs: PackFacts[], marked: string, threshold?: number): string[] {
  const set = new Set(marked.split('').map(d));
  const plan = planRepack({ packs, isMarked: (x) => set.has(x.digest), cutoffMs: CUTOFF, threshold });
  return plan.decisions.map((x) => `${x.packId}:${x.action}:${x.reason}:${x.live.map((e) => e.digest[0]).join('')}`);
}

describe('planRepack', () => {
  it.each<[string, PackFacts[], string, number | undefined, string[]]>([
    ['all live: kept', [pack('p1', 'a:100 b:100')], 'ab', undefined, ['p1:keep:dense:ab']],
    ['nothing live, old: deleted', [pack('p1', 'a:100 b:100')], '', undefined, ['p1:delete:dead:']],
    ['nothing live but young: kept (a writer may rely on it)', [pack('p1', 'a:100', YOUNG)], '', undefined, ['p1:keep:young:']],
    ['live share below half, old: repacked with its live blobs', [pack('p1', 'a:100 b:100 c:100')], 'a', undefined, ['p1:repack:sparse:a']],
    ['live share below half but young: kept', [pack('p1', 'a:100 b:100 c:100', YOUNG)], 'a', undefined, ['p1:keep:young:a']],
    ['live share exactly at the threshold: kept', [pack('p1', 'a:88 b:104')], 'b', 0.5, ['p1:keep:dense:b']],
    ['dead bytes the .idx does not list count against the share', [pack('p1', 'a:100', OLD, 200)], 'a', undefined, ['p1:repack:sparse:a']],
    ['threshold 0 never repacks', [pack('p1', 'a:10 b:1000')], 'a', 0, ['p1:keep:dense:a']],
    ['a higher threshold repacks denser packs', [pack('p1', 'a:60 b:40')], 'a', 0.8, ['p1:repack:sparse:a']],
    [
      'a duplicate is live in the pack with the larger marked share; the other copy goes',
      [pack('p1', 'a:100 x:100'), pack('p2', 'a:100 b:100 c:100')],
      'abc',
      undefined,
      ['p1:delete:dead:', 'p2:keep:dense:abc'],
    ],
    [
      'a duplicate prefers a young pack (kept whatever happens)',
      [pack('p1', 'a:100 b:300'), pack('p2', 'a:100 y:100 z:100', YOUNG)],
      'ab',
      undefined,
      ['p1:keep:dense:b', 'p2:keep:young:a'],
    ],
    [
      'equal shares: the smaller packId is canonical',
      [pack('p2', 'a:100'), pack('p1', 'a:100')],
      'a',
      undefined,
      ['p1:keep:dense:a', 'p2:delete:dead:'],
    ],
    [
      'a digest whose first choice is repacked moves to a kept pack holding it (no copy needed)',
      // p1 has the largest marked share (x, y, z) and wins x, but y and z are live in the young p3,
      // which leaves p1 sparse; p2 is kept for s and holds x too, so x moves there and p1 is dead.
      [pack('p1', 'x:100 y:400 z:400'), pack('p2', 'x:100 s:300 t:50'), pack('p3', 'y:400 z:400', YOUNG)],
      'xyzs',
      undefined,
      ['p1:delete:dead:', 'p2:keep:dense:xs', 'p3:keep:young:yz'],
    ],
    [
      'a digest listed twice in one pack is live once',
      [pack('p1', 'a:100 a:100 b:100')],
      'a',
      undefined,
      ['p1:repack:sparse:a'],
    ],
    [
      'several packs, mixed',
      [pack('p1', 'a:100 b:100'), pack('p2', 'c:100 d:100 e:100 f:100'), pack('p3', 'g:100'), pack('p4', 'h:100', YOUNG)],
      'abc',
      undefined,
      ['p1:keep:dense:ab', 'p2:repack:sparse:c', 'p3:delete:dead:', 'p4:keep:young:'],
    ],
  ])('%s', (_name, packs, marked, threshold, expected) => {
    expect(run(packs, marked, threshold)).toEqual(expected);
  });

  it('repack lists live entries in offset order and counts the bytes it frees', () => {
    const p = pack('p1', 'a:100 b:300 c:50 e:400');
    const shuffled: PackFacts = { ...p, entries: [...p.entries].reverse() };
    const set = new Set([d('c'), d('a')]);
    const plan = planRepack({ packs: [shuffled, pack('p2', 'z:10')], isMarked: (x) => set.has(x.digest), cutoffMs: CUTOFF });
    const r = plan.decisions[0];
    expect(r.action).toBe('repack');
    expect(r.live.map((e) => [e.digest[0], e.offset])).toEqual([
      ['a', 16],
      ['c', 416],
    ]);
    expect(r.liveBytes).toBe(150);
    expect(plan.bytesReclaimed).toBe(p.packBytes - 150 + (16 + 10));
    expect(plan.canonical.get(d('a'))).toBe('p1');
    expect(plan.canonical.has(d('z'))).toBe(false);
  });

  it('is deterministic whatever the order of the input', () => {
    const packs = [pack('p3', 'a:100 b:100'), pack('p1', 'a:100 b:100'), pack('p2', 'b:100 a:100')];
    const a = run(packs, 'ab');
    expect(run([...packs].reverse(), 'ab')).toEqual(a);
    expect(a).toEqual(['p1:keep:dense:ab', 'p2:delete:dead:', 'p3:delete:dead:']);
  });
});
