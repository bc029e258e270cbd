import {
  decodeGoData,
  decodeMetaContextData,
  decodeOptionHeader,
  decodeRequest,
  matchMetaContexts,
  splitRange,
} from '../../../daemon/nbd/server-codec';
import { encodeGoData, encodeMetaContextData, encodeOption } from '../../../daemon/nbd/option-codec';
import { encodeRequests } from '../../../daemon/nbd/request-codec';

describe('server-codec', () => {
  test('options encoded by the client decode on the server', () => {
    expect(decodeOptionHeader(encodeOption(7, Buffer.alloc(5)))).toEqual({ option: 7, length: 5 });
    expect(decodeOptionHeader(Buffer.alloc(16))).toBe('bad option magic');
    expect(decodeGoData(encodeGoData('scsi0', [3, 1]))).toEqual({ name: 'scsi0', infos: [3, 1] });
    expect(decodeMetaContextData(encodeMetaContextData('', ['base:allocation', 'qemu:']))).toEqual({ name: '', queries: ['base:allocation', 'qemu:'] });
  });

  test.each([
    ['short', Buffer.alloc(3)],
    ['name beyond data', Buffer.from([0, 0, 0, 9, 0, 0])],
    ['count mismatch', Buffer.from([0, 0, 0, 0, 0, 2, 0, 3])],
  ])('malformed GO data is a problem string (%s)', (_what, buf) => {
    expect(typeof decodeGoData(buf)).toBe('string');
  });

  test.each([
    [[], true, ['base:allocation']],
    [[], false, []],
    [['base:'], true, ['base:allocation']],
    [['base:'], false, []],
    [['base:allocation'], false, ['base:allocation']],
    [['qemu:dirty-bitmap:x'], false, []],
  ])('meta context queries %j (listing %s) select %j', (queries, listing, want) => {
    expect(matchMetaContexts(queries, ['base:allocation'], listing)).toEqual(want);
  });

  test('requests round-trip', () => {
    const r = decodeRequest(encodeRequests([{ flags: 8, type: 7, cookie: 5, offset: 4096, length: 512 }]));
    expect(r).toEqual({ flags: 8, type: 7, cookie: 5n, offset: 4096, length: 512 });
  });

  test.each([
    [0, 100, [{ offset: 0, length: 100, chunk: 0, within: 0, zero: false }]],
    [50, 100, [{ offset: 50, length: 50, chunk: 0, within: 50, zero: false }, { offset: 100, length: 50, chunk: 1, within: 0, zero: true }]],
    [100, 250, [{ offset: 100, length: 200, chunk: 1, within: 0, zero: true }, { offset: 300, length: 50, chunk: 3, within: 0, zero: false }]],
  ])('splitRange(%d, %d) merges neighbouring zero chunks', (offset, length, want) => {
    expect(splitRange(offset, length, 100, (i) => i === 1 || i === 2)).toEqual(want);
  });
});
