import crypto from 'node:crypto';
import { HashPool } from '../../../daemon/repository/hash-pool';

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

describe('hash pool', () => {
  const pool = new HashPool(2);
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
    const p = new HashPool(1);
    const data = crypto.randomBytes(131072);
    expect(await p.sha256Hex(data)).toBe(sha(data));
    await p.close();
    expect(await p.sha256Hex(data)).toBe(sha(data));
    await p.close();
  });
});
