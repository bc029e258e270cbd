/**
 * The read path of one disk (chunk-pipeline.ts) against a real qemu-nbd, into a disk writer that
 * records what it is given: an incremental's scattered chunks arrive byte-exact (base bytes where
 * nothing was read), share worker trips instead of taking one each, and a failed insert or progress
 * report fails the disk with nothing left running.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runChunkPipeline } from '../../../daemon/backup/chunk-pipeline';
import { planIncremental, type ByteRange } from '../../../daemon/backup/read-plan';
import { NbdClient } from '../../../daemon/nbd/nbd-client';
import type { DiskWriter, PutResult } from '../../../daemon/repository/repository';
import { type QemuNbd, startQemuNbd } from '../nbd/qemu-nbd-server';

const KiB = 1024;
const CHUNK = 64 * KiB;
const SIZE = 64 * 1024 * KiB;
const BASE_BYTE = 0xab;

let dir: string;
let image: Buffer;
let nbd: QemuNbd;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-pipeline-'));
  image = crypto.randomBytes(SIZE);
  fs.writeFileSync(path.join(dir, 'disk.raw'), image);
  nbd = await startQemuNbd(dir, path.join(dir, 'disk.raw'), { format: 'raw' });
});

afterAll(async () => {
  await nbd?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** A disk writer that keeps a copy of every chunk it is given and the size of every trip. */
class RecordingWriter {
  readonly name = 'scsi0';
  readonly chunkSize = CHUNK;
  readonly chunkCount = SIZE / CHUNK;
  readonly size = SIZE;
  readonly cloned = true;
  readonly chunks = new Map<number, Buffer>();
  readonly trips: number[] = [];
  running = 0;
  constructor(private readonly failOnTrip?: number) {}
  baseDigest(): string | null {
    return 'base';
  }
  readBaseChunk(_index: number, into: Buffer): Promise<Buffer | null> {
    return Promise.resolve(into.fill(BASE_BYTE));
  }
  badBaseChunks(): number[] {
    return [];
  }
  async putChunk(index: number, data: Buffer): Promise<PutResult> {
    return (await this.putChunks([{ index, data }]))[0] as PutResult;
  }
  async putChunks(items: readonly { index: number; data: Buffer }[]): Promise<PutResult[]> {
    this.trips.push(items.length);
    if (this.trips.length === this.failOnTrip) throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
    this.running++;
    try {
      // Like a blob worker: the answer comes in a later turn.
      await new Promise((resolve) => setTimeout(resolve, 2));
      for (const { index, data } of items) {
        expect(this.chunks.has(index)).toBe(false);
        this.chunks.set(index, Buffer.from(data));
      }
      return items.map(() => ({ zero: false, unchanged: false, stored: true, digest: 'd' }));
    } finally {
      this.running--;
    }
  }
  putZero(): void {
    throw new Error('an incremental puts no zero chunks');
  }
  finish(): never {
    throw new Error('not used');
  }
}

/** 300 scattered whole 64 KiB chunks, and 20 chunks with 4 KiB written in their middle. */
function dirtyRanges(): ByteRange[] {
  const chunks = new Set<number>();
  while (chunks.size < 320) chunks.add(crypto.randomInt(SIZE / CHUNK));
  return [...chunks].map((c, k) => (k < 300 ? { offset: c * CHUNK, length: CHUNK } : { offset: c * CHUNK + 8 * KiB, length: 4 * KiB }));
}

function expectedChunk(index: number, dirty: readonly ByteRange[]): Buffer {
  const want = Buffer.alloc(CHUNK, BASE_BYTE);
  for (const r of dirty) {
    if (Math.floor(r.offset / CHUNK) !== index) continue;
    image.copy(want, r.offset - index * CHUNK, r.offset, r.offset + r.length);
  }
  return want;
}

function run(dw: RecordingWriter, dirty: ByteRange[], onProgress: () => Promise<void> = () => Promise.resolve(), signal?: AbortSignal): Promise<number> {
  const plan = planIncremental(dirty, [], { diskSize: SIZE, chunkSize: CHUNK, maxRequest: 4 * 1024 * KiB });
  return runChunkPipeline({
    plan,
    dw: dw as unknown as DiskWriter,
    diskSize: SIZE,
    incremental: true,
    connect: () => NbdClient.connect({ socketPath: nbd.socket, metaContexts: [], timeoutMs: 10_000 }),
    reader: {},
    onProgress,
    ...(signal ? { signal } : {}),
  });
}

describe('chunk pipeline, incremental, against qemu-nbd', () => {
  it('hands on every dirty chunk byte-exact, base bytes around partial writes, in shared trips', async () => {
    const dirty = dirtyRanges();
    const dw = new RecordingWriter();
    const bytes = await run(dw, dirty);
    expect(bytes).toBe(dirty.reduce((n, r) => n + r.length, 0));
    const indexes = [...new Set(dirty.map((r) => Math.floor(r.offset / CHUNK)))].sort((a, b) => a - b);
    expect([...dw.chunks.keys()].sort((a, b) => a - b)).toEqual(indexes);
    for (const i of indexes) expect((dw.chunks.get(i) as Buffer).equals(expectedChunk(i, dirty))).toBe(true);
    // The reads that arrive in one event-loop turn go to the writer together: far fewer trips than
    // chunks (one read per scattered chunk, up to 32 in flight).
    expect(dw.trips.reduce((a, b) => a + b, 0)).toBe(indexes.length);
    expect(dw.trips.length).toBeLessThan(indexes.length / 2);
    expect(dw.running).toBe(0);
  });

  it('a failed insert fails the disk with its error, and no insert is running any more', async () => {
    const dw = new RecordingWriter(3);
    await expect(run(dw, dirtyRanges())).rejects.toMatchObject({ code: 'ENOSPC' });
    expect(dw.running).toBe(0);
    const trips = dw.trips.length;
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(dw.trips.length).toBe(trips);
  });

  it('a failed progress report (an aborted task) fails the disk, and no insert is running any more', async () => {
    const dw = new RecordingWriter();
    let reports = 0;
    const onProgress = (): Promise<void> => (++reports === 2 ? Promise.reject(new Error('task aborted')) : Promise.resolve());
    await expect(run(dw, dirtyRanges(), onProgress)).rejects.toThrow('task aborted');
    expect(dw.running).toBe(0);
  });

  it('an abort in the progress report of the only batch (sent after the last read) fails the disk', async () => {
    const dw = new RecordingWriter();
    const ac = new AbortController();
    const onProgress = (): Promise<void> => {
      ac.abort(new Error('task stopped'));
      return Promise.resolve();
    };
    await expect(run(dw, [{ offset: 11 * CHUNK, length: 16 * KiB }], onProgress, ac.signal)).rejects.toThrow('task stopped');
    expect(dw.running).toBe(0);
  });
});
