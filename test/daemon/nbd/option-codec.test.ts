import { isCbtError } from '../../../shared/errors/cbt-error';
import {
  decodeGreeting,
  decodeInfo,
  decodeMetaContext,
  decodeOptionReplyHeader,
  encodeGoData,
  encodeMetaContextData,
  encodeOption,
} from '../../../daemon/nbd/option-codec';
import { encodeRequests } from '../../../daemon/nbd/request-codec';
import { replyTypeName } from '../../../daemon/nbd/nbd-constants';
import { greeting, infoBlockSize, infoExport, metaContext, optionReply } from './nbd-wire';

function protocolError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (isCbtError(err) && err.code === 'CBT_NBD_PROTOCOL') return err.message;
    throw err;
  }
  throw new Error('no error thrown');
}

describe('client messages, byte for byte (doc/proto.md layouts)', () => {
  test.each([
    ['NBD_OPT_STRUCTURED_REPLY', encodeOption(8), '49484156454f5054' + '00000008' + '00000000'],
    ['NBD_OPT_GO default export, block size info', encodeOption(7, encodeGoData('', [3])), '49484156454f5054' + '00000007' + '00000008' + '00000000' + '0001' + '0003'],
    ['NBD_OPT_GO named export', encodeGoData('ab', []), '00000002' + '6162' + '0000'],
    ['NBD_OPT_SET_META_CONTEXT data', encodeMetaContextData('x', ['base:allocation']), '00000001' + '78' + '00000001' + '0000000f' + Buffer.from('base:allocation').toString('hex')],
    ['NBD_CMD_READ request', encodeRequests([{ flags: 0, type: 0, cookie: 0x01020304, offset: 0x1_0000_0200, length: 0x2000000 }]), '25609513' + '0000' + '0000' + '0000000001020304' + '0000000100000200' + '02000000'],
    ['NBD_CMD_BLOCK_STATUS with REQ_ONE', encodeRequests([{ flags: 8, type: 7, cookie: 1, offset: 0, length: 512 }]), '25609513' + '0008' + '0007' + '0000000000000001' + '0000000000000000' + '00000200'],
  ])('%s', (_name, buf, hex) => {
    expect(buf.toString('hex')).toBe(hex);
  });
});

describe('server handshake messages', () => {
  test('greeting flags', () => {
    expect(decodeGreeting(greeting(3))).toEqual({ handshakeFlags: 3 });
  });
  test('option reply header', () => {
    expect(decodeOptionReplyHeader(optionReply(7, 3, Buffer.alloc(12)), 7)).toEqual({ option: 7, type: 3, length: 12 });
  });
  test('NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE; unknown info ignored', () => {
    expect(decodeInfo(infoExport(2 ** 40 + 512, 0x18f))).toEqual({ kind: 'export', size: 2 ** 40 + 512, transmissionFlags: 0x18f });
    expect(decodeInfo(infoBlockSize(512, 4096, 33554432))).toEqual({ kind: 'block-size', minimum: 512, preferred: 4096, maximum: 33554432 });
    expect(decodeInfo(Buffer.from([0, 2, 65, 66]))).toEqual({ kind: 'other', type: 2 });
  });
  test('NBD_REP_META_CONTEXT', () => {
    expect(decodeMetaContext(metaContext(42, 'qemu:dirty-bitmap:pve-cbt-x'))).toEqual({ id: 42, name: 'qemu:dirty-bitmap:pve-cbt-x' });
  });
  test('reply type names', () => {
    expect(replyTypeName(0x80000006)).toBe('NBD_REP_ERR_UNKNOWN');
    expect(replyTypeName(0x80000077)).toBe('NBD_REP_ERR_0x80000077');
  });
});

describe('malformed handshake messages', () => {
  const badNewstyle = greeting();
  badNewstyle.write('IHAVEOPS', 8, 'latin1');
  const oldstyle = greeting();
  oldstyle.writeBigUInt64BE(0x00420281861253n, 8);
  const wrongReplyMagic = optionReply(7, 1);
  wrongReplyMagic.writeUInt8(0xff, 0);
  const tooLong = optionReply(7, 3);
  tooLong.writeUInt32BE(0x7fffffff, 16);
  test.each<[string, () => unknown, RegExp]>([
    ['not an NBD server', () => decodeGreeting(Buffer.from('SSH-2.0-OpenSSH_9.2p1 Debian\r\n')), /bad greeting magic/],
    ['truncated greeting', () => decodeGreeting(greeting().subarray(0, 10)), /too short/],
    ['bad newstyle magic', () => decodeGreeting(badNewstyle), /bad newstyle magic/],
    ['oldstyle server', () => decodeGreeting(oldstyle), /oldstyle/],
    ['bad option reply magic', () => decodeOptionReplyHeader(wrongReplyMagic, 7), /bad option reply magic/],
    ['reply to another option', () => decodeOptionReplyHeader(optionReply(8, 1), 7), /another option/],
    ['option reply length overflow', () => decodeOptionReplyHeader(tooLong, 7), /length overflow/],
    ['NBD_INFO_EXPORT wrong length', () => decodeInfo(infoExport(1, 1).subarray(0, 11)), /must be 12/],
    ['export size beyond 2^53', () => decodeInfo(Buffer.from('0000ffffffffffffffff0001', 'hex')), /too large/],
    ['NBD_INFO_BLOCK_SIZE wrong length', () => decodeInfo(Buffer.concat([infoBlockSize(1, 2, 4), Buffer.alloc(1)])), /must be 14/],
    ['block sizes inconsistent', () => decodeInfo(infoBlockSize(4096, 512, 1 << 20)), /inconsistent/],
    ['minimum block size not a power of two', () => decodeInfo(infoBlockSize(3, 4096, 1 << 20)), /inconsistent/],
    ['info without type', () => decodeInfo(Buffer.alloc(1)), /shorter than 2/],
    ['meta context without name', () => decodeMetaContext(Buffer.alloc(4)), /too short/],
  ])('%s', (_name, fn, reason) => {
    expect(protocolError(fn)).toMatch(reason);
  });
});
