/**
 * A pure reader of the qcow2 header (QEMU docs/interop/qcow2.txt): the fields pve-cbt needs to
 * tell whether a stopped VM's image changed while its bitmaps were parked (image-identity.ts), and
 * where the three metadata areas lie whose bytes it fingerprints: the header itself (up to
 * header_length; header extensions, where the bitmap directory lives, are left out because parking
 * changes them), the active L1 table and the snapshot table. All integers are big-endian.
 */

export const QCOW2_MAGIC = 0x514649fb; // 'Q' 'F' 'I' 0xfb

/** Bytes of a version 2 header; version 3 headers say their length at offset 100. */
const V2_HEADER_LENGTH = 72;
/** Fixed part of one snapshot table entry, before its extra data, id and name. */
const SNAPSHOT_ENTRY_FIXED = 40;

export interface Qcow2Header {
  readonly version: number;
  readonly clusterBits: number;
  readonly virtualSize: number;
  readonly l1Size: number;
  readonly l1TableOffset: number;
  readonly nbSnapshots: number;
  readonly snapshotsOffset: number;
  readonly headerLength: number;
  readonly incompatibleFeatures: bigint;
}

export type HeaderResult = { ok: true; header: Qcow2Header } | { ok: false; problem: string };

/** A byte range of the image whose contents are part of its identity. */
export interface Region {
  readonly name: 'header' | 'L1 table' | 'snapshot table';
  readonly offset: number;
  readonly length: number;
}

function u64(buf: Buffer, at: number): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError(`64-bit field at ${at} is too large`);
  return Number(v);
}

/** Parses the first bytes of an image (at least 104 for version 3). */
export function parseQcow2Header(buf: Buffer): HeaderResult {
  if (buf.length < V2_HEADER_LENGTH) return { ok: false, problem: `only ${buf.length} bytes, a qcow2 header has at least ${V2_HEADER_LENGTH}` };
  if (buf.readUInt32BE(0) !== QCOW2_MAGIC) return { ok: false, problem: 'no qcow2 magic' };
  const version = buf.readUInt32BE(4);
  if (version !== 2 && version !== 3) return { ok: false, problem: `qcow2 version ${version} is not 2 or 3` };
  try {
    let headerLength = V2_HEADER_LENGTH;
    let incompatibleFeatures = 0n;
    if (version === 3) {
      if (buf.length < 104) return { ok: false, problem: `only ${buf.length} bytes of a version 3 header` };
      incompatibleFeatures = buf.readBigUInt64BE(72);
      headerLength = buf.readUInt32BE(100);
      if (headerLength < 104) return { ok: false, problem: `header_length ${headerLength} is below 104` };
    }
    const clusterBits = buf.readUInt32BE(20);
    if (clusterBits < 9 || clusterBits > 21) return { ok: false, problem: `cluster_bits ${clusterBits} outside 9..21` };
    return {
      ok: true,
      header: {
        version,
        clusterBits,
        virtualSize: u64(buf, 24),
        l1Size: buf.readUInt32BE(36),
        l1TableOffset: u64(buf, 40),
        nbSnapshots: buf.readUInt32BE(60),
        snapshotsOffset: u64(buf, 64),
        headerLength,
        incompatibleFeatures,
      },
    };
  } catch (err) {
    return { ok: false, problem: (err as Error).message };
  }
}

/** The header and the active L1 table; the snapshot table's length needs its bytes (snapshotTableLength). */
export function fixedRegions(h: Qcow2Header): Region[] {
  return [
    { name: 'header', offset: 0, length: h.headerLength },
    { name: 'L1 table', offset: h.l1TableOffset, length: h.l1Size * 8 },
  ];
}

/**
 * Length in bytes of a snapshot table holding `count` entries, from its bytes (each entry is 40
 * fixed bytes, extra data, id and name, padded to 8). Undefined when `buf` ends before the table does.
 */
export function snapshotTableLength(buf: Buffer, count: number): number | undefined {
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + SNAPSHOT_ENTRY_FIXED > buf.length) return undefined;
    const idSize = buf.readUInt16BE(at + 12);
    const nameSize = buf.readUInt16BE(at + 14);
    const extraSize = buf.readUInt32BE(at + 36);
    const len = SNAPSHOT_ENTRY_FIXED + extraSize + idSize + nameSize;
    at += Math.ceil(len / 8) * 8;
    if (at > buf.length) return undefined;
  }
  return at;
}
