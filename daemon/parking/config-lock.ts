/**
 * qemu-server's second lock: the `lock:` property of the current config section (`rollback`,
 * `snapshot`, `backup`, `migrate`, `clone`, `create`, ...), which qemu-server sets under the flock
 * and keeps while it works on the volumes WITHOUT the flock (PVE::AbstractConfig::snapshot_rollback
 * applies `qemu-img snapshot -a` between two flock sections). pve-cbt's offline work checks it right
 * after taking the flock and leaves the images alone while it is set. Pure.
 */

/** The value of the current section's `lock:` line, or undefined. */
export function configLock(text: string): string | undefined {
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('[')) break;
    const m = /^lock:\s*(\S+)\s*$/.exec(line);
    if (m) return m[1];
  }
  return undefined;
}
