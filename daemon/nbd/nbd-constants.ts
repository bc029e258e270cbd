/**
 * Wire constants of the NBD protocol (doc/proto.md of the NetworkBlockDevice project). Frozen: these
 * are the protocol's numbers, not ours to change. Only what pve-cbt's read-only client uses is listed.
 */

/** 'NBDMAGIC', first 8 bytes the server sends. */
export const NBD_INIT_MAGIC = 0x4e42444d41474943n;
/** 'IHAVEOPT': second server magic of newstyle negotiation, and prefix of every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
/** Prefix of every fixed-newstyle option reply. */
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

/** Handshake flags (server) and client flags. */
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

/** Transmission flags (16 bits, from NBD_INFO_EXPORT). */
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;

/** Options. */
export const NBD_OPT_ABORT = 2;
export const NBD_OPT_GO = 7;
export const NBD_OPT_STRUCTURED_REPLY = 8;
export const NBD_OPT_LIST_META_CONTEXT = 9;
export const NBD_OPT_SET_META_CONTEXT = 10;

/** Option reply types; errors have bit 31 set. */
export const NBD_REP_ACK = 1;
export const NBD_REP_SERVER = 2;
export const NBD_REP_INFO = 3;
export const NBD_REP_META_CONTEXT = 4;
export const NBD_REP_FLAG_ERROR = 0x80000000;

export const NBD_REP_NAMES: Readonly<Record<number, string>> = Object.freeze({
  1: 'NBD_REP_ACK',
  2: 'NBD_REP_SERVER',
  3: 'NBD_REP_INFO',
  4: 'NBD_REP_META_CONTEXT',
  [0x80000001]: 'NBD_REP_ERR_UNSUP',
  [0x80000002]: 'NBD_REP_ERR_POLICY',
  [0x80000003]: 'NBD_REP_ERR_INVALID',
  [0x80000004]: 'NBD_REP_ERR_PLATFORM',
  [0x80000005]: 'NBD_REP_ERR_TLS_REQD',
  [0x80000006]: 'NBD_REP_ERR_UNKNOWN',
  [0x80000007]: 'NBD_REP_ERR_SHUTDOWN',
  [0x80000008]: 'NBD_REP_ERR_BLOCK_SIZE_REQD',
  [0x80000009]: 'NBD_REP_ERR_TOO_BIG',
  [0x8000000a]: 'NBD_REP_ERR_EXT_HEADER_REQD',
});

export function replyTypeName(type: number): string {
  return NBD_REP_NAMES[type] ?? `NBD_REP_${(type & NBD_REP_FLAG_ERROR) !== 0 ? 'ERR_' : ''}0x${type.toString(16)}`;
}

export const NBD_OPT_NAMES: Readonly<Record<number, string>> = Object.freeze({
  [NBD_OPT_ABORT]: 'NBD_OPT_ABORT',
  [NBD_OPT_GO]: 'NBD_OPT_GO',
  [NBD_OPT_STRUCTURED_REPLY]: 'NBD_OPT_STRUCTURED_REPLY',
  [NBD_OPT_LIST_META_CONTEXT]: 'NBD_OPT_LIST_META_CONTEXT',
  [NBD_OPT_SET_META_CONTEXT]: 'NBD_OPT_SET_META_CONTEXT',
});

export function optionName(option: number): string {
  return NBD_OPT_NAMES[option] ?? `NBD_OPT_${option}`;
}

/** NBD_REP_INFO information types. */
export const NBD_INFO_EXPORT = 0;
export const NBD_INFO_BLOCK_SIZE = 3;

/** Commands and command flags. */
export const NBD_CMD_READ = 0;
export const NBD_CMD_DISC = 2;
export const NBD_CMD_BLOCK_STATUS = 7;
export const NBD_CMD_FLAG_REQ_ONE = 1 << 3;

/** Structured reply flags and chunk types; error chunk types have bit 15 set. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE_NONE = 0;
export const NBD_REPLY_TYPE_OFFSET_DATA = 1;
export const NBD_REPLY_TYPE_OFFSET_HOLE = 2;
export const NBD_REPLY_TYPE_BLOCK_STATUS = 5;
export const NBD_REPLY_TYPE_ERROR = (1 << 15) + 1;
export const NBD_REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2;
export const NBD_REPLY_TYPE_ERROR_BIT = 1 << 15;

/** Error values of the transmission phase (fixed by the protocol, not the host's errno). */
export const NBD_ERRNO_NAMES: Readonly<Record<number, string>> = Object.freeze({
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
});

/** The server is shutting down: the client must disconnect (soft) after receiving it. */
export const NBD_ESHUTDOWN = 108;

export function errnoName(errno: number): string {
  return NBD_ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** base:allocation flags. */
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;
/** qemu:dirty-bitmap:NAME flag. */
export const NBD_STATE_DIRTY = 1 << 0;

export const BASE_ALLOCATION = 'base:allocation';
export const QEMU_DIRTY_BITMAP_PREFIX = 'qemu:dirty-bitmap:';

/**
 * Block size defaults when the server advertises none: proto.md tells clients to keep requests at
 * 512-byte granularity and reads at most 32 MiB.
 */
export const DEFAULT_MIN_BLOCK_SIZE = 1;
export const DEFAULT_PREFERRED_BLOCK_SIZE = 4096;
export const DEFAULT_MAX_BLOCK_SIZE = 32 * 1024 * 1024;

/** Request header and reply header sizes in bytes. */
export const REQUEST_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_REPLY_SIZE = 20;
