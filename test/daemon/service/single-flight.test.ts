import { singleFlight } from '../../../daemon/service/single-flight';

test('callers of one key share one computation while it runs; the next call after it computes again', async () => {
  const calls: Array<number | undefined> = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const f = singleFlight(async (k: number | undefined) => {
    calls.push(k);
    await gate;
    return `answer ${k}`;
  });
  const burst = [f(101), f(101), f(undefined), f(101), f(undefined)];
  expect(calls).toEqual([101, undefined]);
  release();
  expect(await Promise.all(burst)).toEqual(['answer 101', 'answer 101', 'answer undefined', 'answer 101', 'answer undefined']);
  await f(101);
  expect(calls).toEqual([101, undefined, 101]);
});

test('a failure reaches every caller of that flight, and the key is free again afterwards', async () => {
  let n = 0;
  const f = singleFlight(async () => {
    n += 1;
    if (n === 1) throw new Error('QEMU did not answer');
    return n;
  });
  const [a, b] = await Promise.allSettled([f('x'), f('x')]);
  expect(a).toMatchObject({ status: 'rejected', reason: { message: 'QEMU did not answer' } });
  expect(b).toMatchObject({ status: 'rejected', reason: { message: 'QEMU did not answer' } });
  expect(await f('x')).toBe(2);
});
