/**
 * Test helpers around the real NBD tools: start `qemu-nbd` on a unix socket (and always stop it),
 * read `nbdinfo --json --map` as the reference extent map, hash files and buffers.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { type Extent, mergeExtents } from '../../../daemon/nbd/extent';
import { isListening } from '../../../daemon/nbd/is-listening';

export interface QemuNbd {
  /** Unix socket path, or '' when serving TCP. */
  socket: string;
  /** TCP port when `tcp` was asked for. */
  port?: number;
  uri: string;
  stop(): Promise<void>;
}

export interface QemuNbdOptions {
  format: 'raw' | 'qcow2';
  bitmap?: string;
  shared?: number;
  exportName?: string;
  /** Serve on 127.0.0.1 on a free TCP port instead of a unix socket. */
  tcp?: boolean;
}

const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts qemu-nbd read-only on a fresh socket in `dir`; rejects if it exits or does not listen within 10 s. */
export async function startQemuNbd(dir: string, image: string, opts: QemuNbdOptions): Promise<QemuNbd> {
  const socket = opts.tcp ? '' : path.join(dir, `nbd-${running.size}-${Date.now()}.sock`);
  const port = opts.tcp ? await freePort() : undefined;
  const listen = port !== undefined ? ['-b', '127.0.0.1', '-p', String(port)] : ['-k', socket];
  const args = [...listen, '-r', '-t', '--cache=writeback', '-e', String(opts.shared ?? 4)];
  args.push('-f', opts.format);
  if (opts.bitmap) args.push('-B', opts.bitmap);
  if (opts.exportName !== undefined) args.push('-x', opts.exportName);
  args.push(image);
  const child = spawn('qemu-nbd', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  running.add(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    running.delete(child);
  };
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    if (port !== undefined && (await isListening({ host: '127.0.0.1', port }))) {
      return { socket, port, uri: `nbd://127.0.0.1:${port}/${opts.exportName ?? ''}`, stop };
    }
    if (port === undefined && fs.existsSync(socket) && (await isListening({ path: socket }))) {
      return { socket, uri: `nbd+unix:///${opts.exportName ?? ''}?socket=${socket}`, stop };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  await stop();
  throw new Error(`qemu-nbd did not start: ${stderr}`);
}

/** The reference extent map printed by nbdinfo (libnbd) for the same export, merged. */
export function nbdinfoMap(uri: string, context = 'base:allocation'): Extent[] {
  const out = execFileSync('nbdinfo', ['--json', `--map=${context}`, uri], { encoding: 'utf8' });
  const parsed = JSON.parse(out) as Array<{ offset: number; length: number; type: number }>;
  return mergeExtents(parsed.map((e) => ({ offset: e.offset, length: e.length, flags: e.type })));
}

export function sha256(data: Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** Contents of any image as raw bytes, through qemu-img convert (the reference reader). */
export function imageBytes(dir: string, image: string, format: string): Buffer {
  const out = path.join(dir, `ref-${Date.now()}-${Math.random().toString(36).slice(2)}.raw`);
  execFileSync('qemu-img', ['convert', '-f', format, '-O', 'raw', image, out]);
  try {
    return fs.readFileSync(out);
  } finally {
    fs.rmSync(out, { force: true });
  }
}

export function qemuIo(image: string, format: string, commands: string[]): void {
  execFileSync('qemu-io', ['-f', format, ...commands.flatMap((c) => ['-c', c]), image], { stdio: 'ignore' });
}
