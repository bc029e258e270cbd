/**
 * NBD read throughput of pve-cbt's client against `nbdcopy` (libnbd), same export, same run.
 *
 * A 2 GiB raw image of random data (so nothing is sparse and nothing compresses) is served by one
 * read-only `qemu-nbd -e 8` (multi-conn allowed) with the default page-cache mode: the image was just
 * written, so both readers are served from RAM and the figures measure the clients, not the disk
 * (--cache=none would measure the disk). Runs alternate nbdcopy / (a) / (b), three rounds; the best
 * time of each counts, so a moment of load on this shared machine does not decide a ratio.
 *
 *   nbdcopy       `nbdcopy nbd+unix:///?socket=S null:` (its defaults: 4 connections, 64 requests each)
 *   (a) null      mapExtents(base:allocation) + readRanges of the data extents (4 connections,
 *                 4 MiB pieces, pooled buffers), data dropped
 *   (b) sha256    the same, SHA-256 of every 4 MiB piece on the repository's BlobWorkers (the worker
 *                 threads the backup engine digests chunks on); pooled buffers are
 *                 SharedArrayBuffers, so no copy is made
 *   sha256 rate   crypto.createHash('sha256') on one core here, for reading the (b) ratio
 */
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mapExtents } from '../daemon/nbd/map-extents';
import { isListening } from '../daemon/nbd/is-listening';
import { NbdClient } from '../daemon/nbd/nbd-client';
import { type OnData, readRanges } from '../daemon/nbd/nbd-reader';
import { BlobWorkers } from '../daemon/repository/blob-workers';
import type { BenchResult } from './support/bench-result';

const GiB = 1024 * 1024 * 1024;
const SIZE = 2 * GiB;
const PIECE = 4 * 1024 * 1024;
const CONNECTIONS = 4;
const IN_FLIGHT = 8;
const ROUNDS = 3;

function mbps(bytes: number, ms: number): number {
  return Math.round(bytes / 1e6 / (ms / 1000));
}

async function writeRandomImage(file: string): Promise<void> {
  const fd = fs.openSync(file, 'w');
  try {
    const buf = Buffer.allocUnsafe(64 * 1024 * 1024);
    for (let at = 0; at < SIZE; at += buf.length) {
      crypto.randomFillSync(buf);
      fs.writeSync(fd, buf, 0, buf.length, at);
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface QemuNbd {
  pid: number;
  stop(): Promise<void>;
}

async function startQemuNbd(image: string, socket: string): Promise<QemuNbd> {
  const child = spawn('qemu-nbd', ['-k', socket, '-r', '-t', '-e', '8', '-f', 'raw', image], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  };
  for (let i = 0; i < 500; i++) {
    if (await isListening({ path: socket })) return { pid: child.pid as number, stop };
    await new Promise((r) => setTimeout(r, 20));
  }
  await stop();
  throw new Error('qemu-nbd did not start');
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());

/**
 * CPU seconds (user + system) from /proc/PID/stat: the process's own (`self`), or those of its
 * waited-for children (`children`: cutime + cstime).
 */
function cpuSeconds(pid: number | 'self', which: 'self' | 'children' = 'self'): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = which === 'self' ? 11 : 13;
  return (Number(fields[utime]) + Number(fields[utime + 1])) / CLOCK_TICKS;
}

/** CPU seconds used by this process (all threads) and the server while `fn` runs. */
async function cpuOf(serverPid: number, fn: () => Promise<number>): Promise<{ ms: number; cpu: number; own: number }> {
  const own = process.cpuUsage();
  const server = cpuSeconds(serverPid);
  const ms = await fn();
  const used = process.cpuUsage(own);
  const ownCpu = (used.user + used.system) / 1e6;
  return { ms, cpu: ownCpu + cpuSeconds(serverPid) - server, own: ownCpu };
}

/** Time of one nbdcopy run, and the CPU nbdcopy itself used (a client to compare ours with). */
function timeNbdcopy(socket: string): { ms: number; cpu: number } {
  const cpu0 = cpuSeconds('self', 'children');
  const t0 = performance.now();
  execFileSync('nbdcopy', [`nbd+unix:///?socket=${socket}`, 'null:'], { stdio: 'ignore' });
  return { ms: performance.now() - t0, cpu: cpuSeconds('self', 'children') - cpu0 };
}

async function timeOurs(socket: string, onData: OnData): Promise<number> {
  const t0 = performance.now();
  const connect = (): Promise<NbdClient> => NbdClient.connect({ socketPath: socket, metaContexts: ['base:allocation'] });
  const probe = await connect();
  const data = (await mapExtents(probe, 'base:allocation')).filter((e) => (e.flags & 1) === 0);
  await probe.close();
  const { bytesRead } = await readRanges(data, onData, { connect, connections: CONNECTIONS, inFlight: IN_FLIGHT, requestSize: PIECE, reuseBuffers: true });
  if (bytesRead !== SIZE) throw new Error(`read ${bytesRead} of ${SIZE} bytes`);
  return performance.now() - t0;
}

/**
 * SHA-256 of every piece on the repository's blob workers (the engine's own), bounded: reading waits
 * when hashing falls behind. Pieces are pooled SharedArrayBuffers, so they reach the workers
 * without a copy and go back to the reader's pool when their digest arrives.
 */
async function timeOursHashed(socket: string, pool: BlobWorkers): Promise<{ ms: number; digests: number }> {
  const outstanding = new Set<Promise<void>>();
  let digests = 0;
  const t0 = performance.now();
  await timeOurs(socket, async (_offset, data, release) => {
    const p: Promise<void> = pool.sha256Hex(data).then(() => {
      digests++;
      outstanding.delete(p);
      release();
    });
    outstanding.add(p);
    if (outstanding.size >= CONNECTIONS * IN_FLIGHT) await Promise.race(outstanding);
  });
  await Promise.all(outstanding);
  return { ms: performance.now() - t0, digests };
}

function sha256RatePerCore(): number {
  const b = crypto.randomBytes(PIECE);
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 500) {
    crypto.createHash('sha256').update(b).digest();
    n += b.length;
  }
  return mbps(n, performance.now() - t0);
}

export async function run(): Promise<BenchResult[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-bench-nbd-'));
  const image = path.join(dir, 'random.raw');
  const socket = path.join(dir, 'nbd.sock');
  let server: QemuNbd | undefined;
  try {
    await writeRandomImage(image);
    server = await startQemuNbd(image, socket);
    const serverPid = server.pid;
    const best = { nbdcopy: Infinity, nbdcopyCpu: Infinity, nul: Infinity, sha: Infinity, nulCpu: Infinity, nulOwnCpu: Infinity };
    let digests = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const copy = timeNbdcopy(socket);
      best.nbdcopy = Math.min(best.nbdcopy, copy.ms);
      best.nbdcopyCpu = Math.min(best.nbdcopyCpu, copy.cpu);
      const nul = await cpuOf(serverPid, () => timeOurs(socket, (_offset, _data, release) => release()));
      best.nul = Math.min(best.nul, nul.ms);
      best.nulCpu = Math.min(best.nulCpu, nul.cpu);
      best.nulOwnCpu = Math.min(best.nulOwnCpu, nul.own);
      const pool = new BlobWorkers();
      try {
        const hashed = await timeOursHashed(socket, pool);
        best.sha = Math.min(best.sha, hashed.ms);
        digests = hashed.digests;
      } finally {
        await pool.close();
      }
    }
    if (digests !== SIZE / PIECE) throw new Error(`hashed ${digests} pieces, expected ${SIZE / PIECE}`);
    const base = `nbdcopy ${mbps(SIZE, best.nbdcopy)} MB/s`;
    const ratioA = best.nbdcopy / best.nul;
    const ratioB = best.nbdcopy / best.sha;
    const shaRate = sha256RatePerCore();
    // (b) needs at least the CPU of (a) (client and qemu-nbd) plus hashing every byte, spread over
    // every core at best: the fastest (b) this machine allows. The client's share is taken from
    // whichever client was cheaper, pve-cbt's or nbdcopy's, so the bound holds for either.
    const cores = os.availableParallelism();
    const readCpu = best.nulCpu - best.nulOwnCpu + Math.min(best.nulOwnCpu, best.nbdcopyCpu);
    const ceilingMs = ((readCpu + SIZE / 1e6 / shaRate) / cores) * 1000;
    return [
      { name: 'nbd read 2 GiB: nbdcopy to null:', value: mbps(SIZE, best.nbdcopy), unit: 'MB/s' },
      { name: 'nbd read 2 GiB: pve-cbt to null sink', value: mbps(SIZE, best.nul), unit: 'MB/s', baseline: base, ratio: round2(ratioA), target: '>= 0.8', pass: ratioA >= 0.8 },
      { name: 'nbd read 2 GiB: pve-cbt + SHA-256 per 4 MiB piece (worker threads)', value: mbps(SIZE, best.sha), unit: 'MB/s', baseline: base, ratio: round2(ratioB), target: '>= 0.7', pass: ratioB >= 0.7 },
      { name: 'sha256 one core (createHash, 4 MiB buffers)', value: shaRate, unit: 'MB/s' },
      { name: `CPU of (a), client + qemu-nbd (pve-cbt client ${round2(best.nulOwnCpu)} s, nbdcopy ${round2(best.nbdcopyCpu)} s)`, value: round2(best.nulCpu), unit: 's' },
      {
        name: `(b) CPU ceiling on ${cores} cores: (CPU of reading, cheaper client + qemu-nbd, + SHA-256 of 2 GiB) / cores`,
        value: mbps(SIZE, ceilingMs),
        unit: 'MB/s',
        baseline: base,
        ratio: round2(best.nbdcopy / ceilingMs),
      },
    ];
  } finally {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
