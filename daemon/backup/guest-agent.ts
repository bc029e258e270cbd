/**
 * Minimal QEMU guest agent (QGA) client for file-system freeze around the point-in-time
 * transaction. qemu-server exposes the agent at `<runDir>/VMID.qga` (virtio-serial, JSON lines).
 *
 * A guest may have left half a reply in the channel, so every exchange starts with
 * `guest-sync-delimited`: the agent answers with a 0xFF byte before the JSON reply, and everything
 * before that marker is discarded. Everything is bounded (the agent may not run at all): the caller
 * then continues crash-consistent and records it.
 */
import net from 'node:net';
import { GuestAgentClosedError, GuestAgentCommandError, GuestAgentTimeoutError } from './guest-agent-errors';

export interface GuestAgentOptions {
  readonly timeoutMs?: number;
}

/** Sends one command after a sync; resolves with `return`, rejects on error, timeout or close. */
export function qgaCommand(socketPath: string, command: string, opts: GuestAgentOptions = {}): Promise<unknown> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const syncId = Math.floor(Math.random() * 2 ** 31);
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    let buf = Buffer.alloc(0);
    let synced = false;
    const done = (err: Error | undefined, value?: unknown): void => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => done(GuestAgentTimeoutError({ socket: socketPath, command, timeoutMs })), timeoutMs);
    sock.on('error', (err) => done(err));
    sock.on('close', () => done(GuestAgentClosedError({ socket: socketPath, command })));
    sock.on('connect', () => {
      sock.write(`${JSON.stringify({ execute: 'guest-sync-delimited', arguments: { id: syncId } })}\n`);
    });
    sock.on('data', (data: Buffer) => {
      buf = Buffer.concat([buf, data]);
      for (;;) {
        if (!synced) {
          const marker = buf.indexOf(0xff);
          if (marker < 0) {
            buf = Buffer.alloc(0);
            return;
          }
          buf = buf.subarray(marker + 1);
        }
        const nl = buf.indexOf(0x0a);
        if (nl < 0) return;
        const line = buf.subarray(0, nl).toString('utf8').trim();
        buf = buf.subarray(nl + 1);
        if (line === '') continue;
        let msg: { return?: unknown; error?: { desc?: string } };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.error) return done(GuestAgentCommandError({ socket: socketPath, command, desc: msg.error.desc ?? 'error' }));
        if (!synced) {
          if (msg.return !== syncId) continue;
          synced = true;
          sock.write(`${JSON.stringify({ execute: command })}\n`);
          continue;
        }
        return done(undefined, msg.return);
      }
    });
  });
}

/** `reachable`: the channel accepted the command, so the guest might have frozen late. */
export type FreezeResult = { frozen: true } | { frozen: false; reachable: boolean; reason: string };

export async function fsFreeze(socketPath: string, opts: GuestAgentOptions = {}): Promise<FreezeResult> {
  try {
    await qgaCommand(socketPath, 'guest-fsfreeze-freeze', opts);
    return { frozen: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reachable = code !== 'ENOENT' && code !== 'ECONNREFUSED';
    return { frozen: false, reachable, reason: (err as Error).message };
  }
}

/** Thaws, retrying briefly when the guest was frozen: a guest left frozen is far worse than a slow thaw. */
export async function fsThaw(socketPath: string, opts: GuestAgentOptions & { attempts?: number } = {}): Promise<boolean> {
  for (let attempt = 0; attempt < (opts.attempts ?? 3); attempt++) {
    try {
      await qgaCommand(socketPath, 'guest-fsfreeze-thaw', opts);
      return true;
    } catch {
      // try again: the agent may still be finishing the freeze
    }
  }
  return false;
}
