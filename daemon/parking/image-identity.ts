/**
 * The identity of a stopped VM's qcow2 image, recorded when pve-cbt parks its bitmaps and compared
 * before they go back: file (device, inode), size, mtime and ctime to the nanosecond, the virtual
 * size, the number of snapshots, and SHA-256 fingerprints of the header, the active L1 table and
 * the snapshot table (qcow2-header.ts). Any write through qemu-io or qemu-img, a snapshot apply,
 * create or delete, a resize, an amend, a repair, an import or restore over the file, and a file
 * replaced by another all change at least one of them; `identityChanges` names which, so the next
 * backup's full-compare says what happened. ctime cannot be set back from user space, so even a
 * copy that restores the old mtime is seen.
 */
import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import { ParkingNotQcow2Error } from './parking-errors';
import { fixedRegions, parseQcow2Header, snapshotTableLength, type Region } from './qcow2-header';

export interface ImageIdentity {
  readonly dev: string;
  readonly ino: string;
  readonly size: string;
  readonly mtimeNs: string;
  readonly ctimeNs: string;
  readonly virtualSize: number;
  readonly nbSnapshots: number;
  readonly header: string;
  readonly l1: string;
  readonly snapshots: string;
}

/** Bytes read at most for the header (a version 3 header with extensions fits in one cluster). */
const HEADER_READ = 64 * 1024;
/** A snapshot table longer than this is fingerprinted over its first bytes plus the count. */
const MAX_SNAPSHOT_TABLE = 64 * 1024 * 1024;

async function readAt(fh: fsp.FileHandle, offset: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await fh.read(buf, done, length - done, offset + done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return buf.subarray(0, done);
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Reads the identity of the qcow2 image at `file`; CBT_PARKING_NOT_QCOW2 when it is not one. */
export async function readImageIdentity(file: string): Promise<ImageIdentity> {
  const fh = await fsp.open(file, 'r');
  try {
    const st = await fh.stat({ bigint: true });
    const head = await readAt(fh, 0, HEADER_READ);
    const parsed = parseQcow2Header(head);
    if (!parsed.ok) throw ParkingNotQcow2Error({ file, problem: parsed.problem });
    const h = parsed.header;
    const hashes: Record<Region['name'], string> = { header: '', 'L1 table': '', 'snapshot table': '' };
    for (const r of fixedRegions(h)) {
      const bytes = await readAt(fh, r.offset, r.length);
      if (bytes.length !== r.length) throw ParkingNotQcow2Error({ file, problem: `${r.name} at ${r.offset} ends past the end of the file` });
      hashes[r.name] = sha(bytes);
    }
    if (h.nbSnapshots > 0) {
      const table = await readAt(fh, h.snapshotsOffset, Math.min(MAX_SNAPSHOT_TABLE, Number(st.size) - h.snapshotsOffset));
      const len = snapshotTableLength(table, h.nbSnapshots) ?? table.length;
      hashes['snapshot table'] = sha(table.subarray(0, len));
    }
    return {
      dev: String(st.dev),
      ino: String(st.ino),
      size: String(st.size),
      mtimeNs: String(st.mtimeNs),
      ctimeNs: String(st.ctimeNs),
      virtualSize: h.virtualSize,
      nbSnapshots: h.nbSnapshots,
      header: hashes.header,
      l1: hashes['L1 table'],
      snapshots: hashes['snapshot table'],
    };
  } finally {
    await fh.close();
  }
}

/** What differs between the identity recorded at parking and the one now; empty when provably unchanged. */
export function identityChanges(then: ImageIdentity, now: ImageIdentity): string[] {
  const out: string[] = [];
  if (then.dev !== now.dev || then.ino !== now.ino) out.push(`volume file replaced (inode ${then.dev}:${then.ino} is now ${now.dev}:${now.ino})`);
  if (then.virtualSize !== now.virtualSize) out.push(`virtual size changed from ${then.virtualSize} to ${now.virtualSize} bytes (resized)`);
  if (then.nbSnapshots !== now.nbSnapshots) out.push(`snapshot count changed from ${then.nbSnapshots} to ${now.nbSnapshots}`);
  else if (then.snapshots !== now.snapshots) out.push('snapshot table changed');
  if (then.l1 !== now.l1) out.push('active L1 table changed (snapshot applied or clusters allocated)');
  if (then.header !== now.header) out.push('qcow2 header changed');
  if (then.size !== now.size) out.push(`file size changed from ${then.size} to ${now.size} bytes`);
  if (then.mtimeNs !== now.mtimeNs) out.push('file modified (mtime changed)');
  if (then.ctimeNs !== now.ctimeNs) out.push('file changed (ctime changed)');
  return out;
}
