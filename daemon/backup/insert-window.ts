/**
 * Chunk inserts (digest, compression, file writes on the blob workers) overlap with reading, up to
 * `size` at once. The first failed insert fails the disk: every later call throws it. Once reading
 * failed, `stop` keeps new inserts from starting and waits for those still running, so that none
 * runs when the caller aborts the writer and removes its folder.
 */
import { InternalError } from '../../shared/errors/internal-errors';

export class InsertWindow {
  private readonly pending = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;
  private stopped = false;

  constructor(private readonly size: number) {}

  /** Throws the first insert failure, or when reading stopped. Call before starting an insert. */
  check(): void {
    if (this.failure) throw this.failure.error;
    // The pipeline stops the window only once reading failed, and then checks it no more.
    if (this.stopped) throw InternalError({ what: 'insert window checked after it was stopped' });
  }

  /**
   * Tracks a started insert; `settled` runs once it settled, either way (to give its buffer back).
   * Returns when the window has room again; throws the first insert failure.
   */
  async track(insert: Promise<unknown>, settled?: () => void): Promise<void> {
    const p: Promise<void> = insert.then(
      () => {
        this.pending.delete(p);
        settled?.();
      },
      (e: unknown) => {
        this.pending.delete(p);
        this.failure ??= { error: e };
        settled?.();
      },
    );
    this.pending.add(p);
    if (this.pending.size >= this.size) await Promise.race(this.pending);
    if (this.failure) throw this.failure.error;
  }

  /** Waits for every insert; throws the first failure. */
  async finish(): Promise<void> {
    await Promise.all(this.pending);
    if (this.failure) throw this.failure.error;
  }

  /** Reading failed: no insert starts any more, and those running are waited for. */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }
}
