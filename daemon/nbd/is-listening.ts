/** Whether a server accepts connections at `target` now (a unix socket path, or host and port); the probe connection is closed at once. */
import net from 'node:net';

export function isListening(target: { path: string } | { host: string; port: number }): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(target);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
