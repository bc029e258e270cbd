import { PieceLease } from '../../../daemon/backup/piece-lease';

describe('piece lease', () => {
  it('releases once, after the assembler and every hold have dropped, in any order', () => {
    let released = 0;
    const lease = new PieceLease(() => released++);
    const a = lease.hold();
    const b = lease.hold();
    lease.drop();
    expect(released).toBe(0);
    b();
    b();
    expect(released).toBe(0);
    a();
    expect(released).toBe(1);
  });

  it('without holds the assembler drop releases it', () => {
    let released = 0;
    new PieceLease(() => released++).drop();
    expect(released).toBe(1);
  });
});
