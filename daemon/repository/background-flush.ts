/**
 * Runs a flush (fdatasync of a file, syncfs of a file system) in the background each time `every`
 * more bytes were written, so the disk writes overlap producing the next bytes instead of all
 * waiting for the final sync: a restore's target (restore-workers.ts) and a backup's chunk batch
 * (storage.ts). One flush runs at a time. `settle` waits for a running flush and returns the first
 * error one reported: the kernel reports a write-back error once, so the caller's final sync might
 * not see it again.
 */
export class BackgroundFlush {
  private unflushed = 0;
  private running: Promise<void> | null = null;
  private error: NodeJS.ErrnoException | undefined;

  constructor(
    private readonly flush: () => Promise<void>,
    private readonly every: number,
  ) {}

  get flushing(): boolean {
    return this.running !== null;
  }

  wrote(bytes: number): void {
    this.unflushed += bytes;
    if (this.unflushed < this.every || this.running) return;
    this.unflushed = 0;
    this.running = this.flush().then(
      () => {
        this.running = null;
      },
      (err: unknown) => {
        this.error ??= err as NodeJS.ErrnoException;
        this.running = null;
      },
    );
  }

  async settle(): Promise<NodeJS.ErrnoException | undefined> {
    while (this.running) await this.running;
    return this.error;
  }
}
