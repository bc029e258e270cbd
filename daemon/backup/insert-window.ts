/**
 * Chunk inserts (digest, compression, file writes on the blob workers) overlap with reading, up to
 * `size` at once: counted in inserts, or in bytes when each is tracked with its `weight` (its
 * bytes: a batch of chunks is one insert). The first failed insert fails the disk: every later call throws it. Once reading
 * failed, `stop` keeps new inserts from starting and waits for those still running, so that none
 * runs when the caller aborts the writer and removes its folder.
 */
import { InternalError } from '../../shared/errors/internal-errors';

export class InsertWindow {
  private readonly pending = new Set<Promise<void>>();
  private weight = 0;
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
   * Tracks a started insert of `weight` (1 unless the window counts bytes); `settled` runs once it
   * settled, either way (to give its buffers back). Returns when the window has room again; throws
   * the first insert failure.
   */
  async track(insert: Promise<unknown>, settled?: () => void, weight = 1): Promise<void> {
    const done = (): void => {
      this.pending.delete(p);
      this.weight -= weight;
      settled?.();
    };
    const p: Promise<void> = insert.then(done, (e: unknown) => {
      this.failure ??= { error: e };
      done();
    });
    this.pending.add(p);
    this.weight += weight;
    while (this.weight >= this.size && this.pending.size && !this.failure) await Promise.race(this.pending);
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
