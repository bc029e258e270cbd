import { ByteQueue } from '../../../daemon/nbd/byte-queue';

test('exact reads across chunk boundaries, in order, without losing bytes', async () => {
  const q = new ByteQueue(1000);
  q.push(Buffer.from('ab'));
  q.push(Buffer.from('cdef'));
  expect((await q.readExact(3, 'x')).toString()).toBe('abc');
  const pending = q.readExact(5, 'y');
  q.push(Buffer.from('gh'));
  q.push(Buffer.alloc(0));
  q.push(Buffer.from('ijk'));
  expect((await pending).toString()).toBe('defgh');
  expect(q.drain().map((b) => b.toString()).join('')).toBe('ijk');
});

test('a read that never completes times out with CBT_NBD_TIMEOUT naming what it waited for', async () => {
  let timedOut: unknown;
  const q = new ByteQueue(50, (err) => (timedOut = err));
  q.push(Buffer.from('ab'));
  await expect(q.readExact(3, 'server greeting')).rejects.toMatchObject({ code: 'CBT_NBD_TIMEOUT', details: { waitingFor: 'server greeting' } });
  expect(timedOut).toBeDefined();
  await expect(q.readExact(1, 'later')).rejects.toMatchObject({ code: 'CBT_NBD_TIMEOUT' });
});

test('fail() rejects the waiting read and every later one with the first error', async () => {
  const q = new ByteQueue(1000);
  const pending = q.readExact(4, 'x');
  const boom = new Error('gone');
  q.fail(boom);
  q.fail(new Error('second'));
  await expect(pending).rejects.toBe(boom);
  await expect(q.readExact(1, 'y')).rejects.toBe(boom);
});
