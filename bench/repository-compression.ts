/**
 * Compression choice for the chunk store (daemon/repository/COMPRESSION.md records one run):
 * zlib deflate level 1, brotli quality 1 (both built into Node) and lz4 (lz4-napi, a prebuilt
 * binary shipped inside the registry package) on 128 KiB chunks of text-like, mixed and random data.
 * Rates are per core, single-threaded, synchronous calls. Last, per corpus, the chunk store's own
 * encoding (sampled probe, then lz4 where it pays off) on chunks of the default size.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import lz4 from 'lz4-napi';
import { DEFAULT_CHUNK_SIZE } from '../shared/config/defaults';
import { encodeBlob } from '../daemon/repository/file-formats';
import type { BenchResult } from './support/bench-result';

const CHUNK = 128 * 1024;
const TOTAL = 32 * 1024 * 1024;

interface Codec {
  name: string;
  compress(b: Buffer): Buffer;
  decompress(b: Buffer, size: number): Buffer;
}

const codecs: Codec[] = [
  { name: 'lz4', compress: (b) => lz4.compressSync(b), decompress: (b) => lz4.uncompressSync(b) },
  {
    name: 'deflate-1',
    compress: (b) => zlib.deflateRawSync(b, { level: 1 }),
    decompress: (b) => zlib.inflateRawSync(b),
  },
  {
    name: 'brotli-1',
    compress: (b) =>
      zlib.brotliCompressSync(b, {
        params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: b.length },
      }),
    decompress: (b) => zlib.brotliDecompressSync(b),
  },
];

/** Text-like data: the JavaScript sources of the installed dependencies, repeated to the size. */
function textCorpus(size: number): Buffer {
  const root = path.join(__dirname, '..', '..', 'node_modules');
  const parts: Buffer[] = [];
  let have = 0;
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (have >= size) return;
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.js')) {
        const b = fs.readFileSync(p);
        parts.push(b);
        have += b.length;
      }
    }
  };
  walk(fs.existsSync(root) ? root : path.join(process.cwd(), 'node_modules'));
  const all = Buffer.concat(parts);
  const out = Buffer.alloc(size);
  for (let o = 0; o < size; o += all.length) all.copy(out, o, 0, Math.min(all.length, size - o));
  return out;
}

function corpora(): { name: string; data: Buffer }[] {
  const text = textCorpus(TOTAL);
  const random = crypto.randomBytes(TOTAL);
  const mixed = Buffer.alloc(TOTAL);
  for (let o = 0; o < TOTAL; o += CHUNK) (o / CHUNK) % 2 ? random.copy(mixed, o, o, o + CHUNK) : text.copy(mixed, o, o, o + CHUNK);
  return [
    { name: 'text', data: text },
    { name: 'mixed', data: mixed },
    { name: 'random', data: random },
  ];
}

export async function run(): Promise<BenchResult[]> {
  const results: BenchResult[] = [];
  for (const corpus of corpora()) {
    for (const codec of codecs) {
      const chunks: Buffer[] = [];
      for (let o = 0; o < corpus.data.length; o += CHUNK) chunks.push(corpus.data.subarray(o, o + CHUNK));
      let stored = 0;
      const t0 = process.hrtime.bigint();
      const packed = chunks.map((c) => codec.compress(c));
      const t1 = process.hrtime.bigint();
      for (const p of packed) codec.decompress(p, CHUNK);
      const t2 = process.hrtime.bigint();
      for (const p of packed) stored += Math.min(p.length, CHUNK);
      const mib = corpus.data.length / 1048576;
      results.push(
        { name: `compression ${corpus.name} ${codec.name} ratio (stored/plain)`, value: +(stored / corpus.data.length).toFixed(3), unit: 'x' },
        { name: `compression ${corpus.name} ${codec.name} compress`, value: +(mib / (Number(t1 - t0) / 1e9)).toFixed(0), unit: 'MiB/s' },
        { name: `compression ${corpus.name} ${codec.name} decompress`, value: +(mib / (Number(t2 - t1) / 1e9)).toFixed(0), unit: 'MiB/s' },
      );
    }
    results.push(...(await chunkStoreEncoding(corpus)));
  }
  return results;
}

/**
 * What the chunk store itself does with each corpus: encodeBlob on chunks of the default size,
 * lz4 only where the sampled probe expects a saving (file-formats.ts), async as in a backup.
 */
async function chunkStoreEncoding(corpus: { name: string; data: Buffer }): Promise<BenchResult[]> {
  let stored = 0;
  const t0 = process.hrtime.bigint();
  for (let o = 0; o < corpus.data.length; o += DEFAULT_CHUNK_SIZE) {
    for (const part of encodeBlob('chunk', corpus.data.subarray(o, o + DEFAULT_CHUNK_SIZE), 'auto')) stored += part.length;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const kib = DEFAULT_CHUNK_SIZE / 1024;
  return [
    { name: `chunk store ${corpus.name} ${kib} KiB chunks ratio (stored/plain, with headers)`, value: +(stored / corpus.data.length).toFixed(3), unit: 'x' },
    { name: `chunk store ${corpus.name} ${kib} KiB chunks encode (probe + lz4 + CRC)`, value: +(corpus.data.length / 1048576 / s).toFixed(0), unit: 'MiB/s' },
  ];
}
