/**
 * A stopped VM's qcow2 facts read from the image's own header, without starting `qemu-img info`:
 * the virtual size and the persistent bitmaps (name, granularity, flags `auto` and `in_use`), exactly
 * what image-export.ts `imageInfo` takes from qemu-img's JSON. `pve-cbt status` asks this for every
 * stopped VM's disks; a process per disk cost ~40 ms each (issue 18, catalog scale).
 *
 * Layout (QEMU's docs/specs/qcow2.txt; all numbers big endian):
 * - header: magic `QFI\xfb`, version (2 or 3), size at byte 24, crypt_method at 32; version 3 adds
 *   incompatible (72), compatible (80) and autoclear (88) feature bits and header_length (100);
 * - header extensions follow the header (version 2: at byte 72), each `magic u32, length u32,
 *   data` padded to 8 bytes, up to magic 0. The bitmaps extension (0x23852875) holds nb_bitmaps,
 *   a reserved u32, the bitmap directory's size (u64) and offset (u64); autoclear bit 0 says it
 *   is consistent (a program without bitmap support wrote the image when it is clear);
 * - bitmap directory entries: table offset u64, table size u32, flags u32 (bit 0 in_use, bit 1
 *   auto, bit 2 extra_data_compatible), type u8 (1: dirty tracking), granularity_bits u8,
 *   name_size u16, extra_data_size u32, then the extra data, the name, padding to 8 bytes.
 *
 * The reader answers only where it is sure to say what qemu-img says, and otherwise null, so the
 * caller asks qemu-img: not a regular file (RBD, a block device), not qcow2, encrypted, feature
 * bits it does not know (corrupt, external data file), a bitmaps extension QEMU would warn about
 * or refuse (inconsistent, version 2, empty, extra data, unknown flags or type), anything out of
 * bounds. Pure parsing (`qcow2HeaderFacts`, `qcow2BitmapEntries`) apart from the two reads.
 */
import fs from 'node:fs';
import type { BitmapView } from './mode-decision';

const MAGIC = 0x514649fb;
const EXT_END = 0;
const EXT_BITMAPS = 0x23852875;
const AUTOCLEAR_BITMAPS = 1n;
/** Incompatible features that change nothing about size and bitmaps: dirty (lazy refcounts), compression type, extended L2. */
const HARMLESS_INCOMPATIBLE = 1n | 8n | 16n;
const BME_IN_USE = 1;
const BME_AUTO = 2;
const BME_KNOWN_FLAGS = 1 | 2 | 4;
const BT_DIRTY_TRACKING = 1;
/** What is read at first: the header and its extensions live in the first cluster (64 KiB by default). */
export const HEAD_BYTES = 65536;
/** QEMU's own bound on the bitmap directory (QCOW2_MAX_BITMAP_DIRECTORY_SIZE). */
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;

export interface Qcow2Head {
  readonly virtualSize: number;
  /** Where the bitmap directory is; null: the image has no bitmaps. */
  readonly directory: { readonly offset: number; readonly size: number; readonly count: number } | null;
}

export interface Qcow2Facts {
  readonly virtualSize: number;
  readonly bitmaps: BitmapView[];
}

function safe(n: bigint): number | null {
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : null;
}

/** Size and bitmap directory from the image's first bytes; null when qemu-img must be asked. */
export function qcow2HeaderFacts(head: Buffer): Qcow2Head | null {
  if (head.length < 72 || head.readUInt32BE(0) !== MAGIC) return null;
  const version = head.readUInt32BE(4);
  if (version !== 2 && version !== 3) return null;
  const size = safe(head.readBigUInt64BE(24));
  if (size === null || size % 512 !== 0 || head.readUInt32BE(32) !== 0) return null;
  let headerLength = 72;
  let autoclear = 0n;
  if (version === 3) {
    if (head.length < 104) return null;
    if ((head.readBigUInt64BE(72) & ~HARMLESS_INCOMPATIBLE) !== 0n) return null;
    autoclear = head.readBigUInt64BE(88);
    headerLength = head.readUInt32BE(100);
    if (headerLength < 104 || headerLength % 8 !== 0) return null;
  }
  let directory: Qcow2Head['directory'] = null;
  for (let at = headerLength; ; ) {
    if (at + 8 > head.length) return null;
    const magic = head.readUInt32BE(at);
    const len = head.readUInt32BE(at + 4);
    if (magic === EXT_END) break;
    const data = at + 8;
    if (data + len > head.length) return null;
    if (magic === EXT_BITMAPS) {
      if (directory || version !== 3 || len !== 24 || (autoclear & AUTOCLEAR_BITMAPS) === 0n) return null;
      const count = head.readUInt32BE(data);
      const dirSize = safe(head.readBigUInt64BE(data + 8));
      const dirOffset = safe(head.readBigUInt64BE(data + 16));
      if (count === 0 || dirSize === null || dirOffset === null || dirSize === 0 || dirSize > MAX_DIRECTORY_BYTES || dirOffset === 0) return null;
      directory = { offset: dirOffset, size: dirSize, count };
    }
    at = data + Math.ceil(len / 8) * 8;
  }
  return { virtualSize: size, directory };
}

/** The bitmap directory's entries in directory order (qemu-img's order); null when qemu-img must be asked. */
export function qcow2BitmapEntries(dir: Buffer, count: number): BitmapView[] | null {
  const out: BitmapView[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 24 > dir.length) return null;
    const flags = dir.readUInt32BE(at + 12);
    const type = dir.readUInt8(at + 16);
    const granularityBits = dir.readUInt8(at + 17);
    const nameSize = dir.readUInt16BE(at + 18);
    const extra = dir.readUInt32BE(at + 20);
    if ((flags & ~BME_KNOWN_FLAGS) !== 0 || type !== BT_DIRTY_TRACKING || extra !== 0 || nameSize === 0 || granularityBits < 9 || granularityBits > 31) return null;
    const nameAt = at + 24;
    if (nameAt + nameSize > dir.length) return null;
    out.push({
      name: dir.toString('utf8', nameAt, nameAt + nameSize),
      granularity: 2 ** granularityBits,
      recording: (flags & BME_AUTO) !== 0,
      busy: false,
      persistent: true,
      inconsistent: (flags & BME_IN_USE) !== 0,
    });
    at += Math.ceil((24 + nameSize) / 8) * 8;
  }
  return at <= dir.length ? out : null;
}

function readAt(fd: number, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, offset + got);
    if (n === 0) break;
    got += n;
  }
  return buf.subarray(0, got);
}

/**
 * A qcow2 image's virtual size and bitmaps from its header (two reads), or null when only qemu-img
 * can say (see the header comment); a file that cannot be opened is null too.
 */
export function readQcow2Facts(file: string): Qcow2Facts | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) return null;
    const head = qcow2HeaderFacts(readAt(fd, 0, HEAD_BYTES));
    if (!head) return null;
    if (!head.directory) return { virtualSize: head.virtualSize, bitmaps: [] };
    const dir = readAt(fd, head.directory.offset, head.directory.size);
    if (dir.length !== head.directory.size) return null;
    const bitmaps = qcow2BitmapEntries(dir, head.directory.count);
    return bitmaps ? { virtualSize: head.virtualSize, bitmaps } : null;
  } finally {
    fs.closeSync(fd);
  }
}
