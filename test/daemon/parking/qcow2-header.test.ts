/**
 * The qcow2 header reader (daemon/parking/qcow2-header.ts) on hand-made headers, and once on a real
 * image from qemu-img, so the offsets are QEMU's and not only this test's.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixedRegions, parseQcow2Header, snapshotTableLength, QCOW2_MAGIC } from '../../../daemon/parking/qcow2-header';

interface HeaderSpec {
  magic?: number;
  version?: number;
  clusterBits?: number;
  size?: bigint;
  l1Size?: number;
  l1Offset?: bigint;
  nbSnapshots?: number;
  snapshotsOffset?: bigint;
  headerLength?: number;
  bytes?: number;
}

function header(s: HeaderSpec): Buffer {
  const b = Buffer.alloc(s.bytes ?? 112);
  if (b.length >= 4) b.writeUInt32BE(s.magic ?? QCOW2_MAGIC, 0);
  if (b.length < 72) return b;
  b.writeUInt32BE(s.version ?? 3, 4);
  b.writeUInt32BE(s.clusterBits ?? 16, 20);
  b.writeBigUInt64BE(s.size ?? 16n << 20n, 24);
  b.writeUInt32BE(s.l1Size ?? 1, 36);
  b.writeBigUInt64BE(s.l1Offset ?? 0x30000n, 40);
  b.writeUInt32BE(s.nbSnapshots ?? 0, 60);
  b.writeBigUInt64BE(s.snapshotsOffset ?? 0n, 64);
  if (b.length >= 104) b.writeUInt32BE(s.headerLength ?? 112, 100);
  return b;
}

describe('parseQcow2Header', () => {
  test.each<[string, HeaderSpec, RegExp]>([
    ['too short', { bytes: 40 }, /only 40 bytes/],
    ['not qcow2', { magic: 0x7f454c46 }, /no qcow2 magic/],
    ['version 4', { version: 4 }, /version 4 is not 2 or 3/],
    ['v3 cut short', { bytes: 90 }, /only 90 bytes of a version 3 header/],
    ['bad header_length', { headerLength: 64 }, /header_length 64 is below 104/],
    ['bad cluster bits', { clusterBits: 30 }, /cluster_bits 30 outside/],
    ['virtual size past 2^53', { size: 1n << 60n }, /too large/],
  ])('%s is refused', (_name, spec, problem) => {
    const r = parseQcow2Header(header(spec));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.problem).toMatch(problem);
  });

  test.each<[string, HeaderSpec, Partial<ReturnType<typeof fields>>]>([
    ['version 3', {}, { version: 3, virtualSize: 16 << 20, l1Size: 1, l1TableOffset: 0x30000, headerLength: 112 }],
    ['version 2 has a 72-byte header', { version: 2, bytes: 72 }, { version: 2, headerLength: 72 }],
    ['with snapshots', { nbSnapshots: 3, snapshotsOffset: 0x50000n }, { nbSnapshots: 3, snapshotsOffset: 0x50000 }],
  ])('%s', (_name, spec, expected) => {
    const r = parseQcow2Header(header(spec));
    expect(r.ok && fields(r.header)).toMatchObject(expected);
  });

  test('the fixed regions are the header up to header_length and the active L1 table', () => {
    const r = parseQcow2Header(header({ l1Size: 4, l1Offset: 0x40000n }));
    expect(r.ok && fixedRegions(r.header)).toEqual([
      { name: 'header', offset: 0, length: 112 },
      { name: 'L1 table', offset: 0x40000, length: 32 },
    ]);
  });

  test('a real image from qemu-img', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-q2h-'));
    try {
      const img = path.join(dir, 'a.qcow2');
      execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', img, '24M']);
      execFileSync('qemu-img', ['snapshot', '-c', 'one', img]);
      execFileSync('qemu-img', ['snapshot', '-c', 'second-snapshot', img]);
      const buf = fs.readFileSync(img);
      const r = parseQcow2Header(buf);
      if (!r.ok) throw new Error(r.problem);
      expect(r.header).toMatchObject({ version: 3, clusterBits: 16, virtualSize: 24 << 20, nbSnapshots: 2 });
      const len = snapshotTableLength(buf.subarray(r.header.snapshotsOffset), 2);
      expect(len).toBeDefined();
      expect(len! % 8).toBe(0);
      // One snapshot entry with its name is more than 40 bytes; the table ends inside the file.
      expect(len!).toBeGreaterThan(80);
      expect(r.header.snapshotsOffset + len!).toBeLessThanOrEqual(buf.length);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

function snapshotEntry(idLen: number, nameLen: number, extra: number): Buffer {
  const len = Math.ceil((40 + extra + idLen + nameLen) / 8) * 8;
  const b = Buffer.alloc(len);
  b.writeUInt16BE(idLen, 12);
  b.writeUInt16BE(nameLen, 14);
  b.writeUInt32BE(extra, 36);
  return b;
}

describe('snapshotTableLength', () => {
  test.each<[string, Buffer, number, number | undefined]>([
    ['empty table', Buffer.alloc(0), 0, 0],
    ['one entry, padded to 8', snapshotEntry(1, 3, 16), 1, 64],
    ['two entries', Buffer.concat([snapshotEntry(1, 3, 16), snapshotEntry(2, 15, 24)]), 2, 64 + 88],
    ['table cut short', snapshotEntry(1, 3, 16).subarray(0, 30), 1, undefined],
    ['fewer entries than counted', snapshotEntry(1, 3, 16), 2, undefined],
  ])('%s', (_name, buf, count, expected) => {
    expect(snapshotTableLength(buf, count)).toBe(expected);
  });
});

function fields(h: { version: number; virtualSize: number; l1Size: number; l1TableOffset: number; nbSnapshots: number; snapshotsOffset: number; headerLength: number }) {
  return h;
}
