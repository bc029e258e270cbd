/**
 * Starts fdatasync(2) of a file in the background each time `every` more bytes were written to it,
 * so the disk writes overlap producing the next bytes instead of stalling the writers (restore:
 * the final fsync before the rename then finds little left). `settle` waits for a running flush
 * and returns the first error one reported: the kernel reports a write-back error once, so the
 * caller's final fsync might not see it again.
 */
import fs from 'node:fs';

export class BackgroundFlush {
  private unflushed = 0;
  private running: Promise<void> | null = null;
  private error: NodeJS.ErrnoException | undefined;

  constructor(
    private readonly fd: number,
    private readonly every: number,
  ) {}

  wrote(bytes: number): void {
    this.unflushed += bytes;
    if (this.unflushed < this.every || this.running) return;
    this.unflushed = 0;
    this.running = new Promise<void>((resolve) =>
      fs.fdatasync(this.fd, (err) => {
        if (err) this.error ??= err;
        this.running = null;
        resolve();
      }),
    );
  }

  async settle(): Promise<NodeJS.ErrnoException | undefined> {
    while (this.running) await this.running;
    return this.error;
  }
}
