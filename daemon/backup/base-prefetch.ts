/**
 * Reads the base chunks an incremental needs ahead of time, a bounded window at once, so that
 * overlaying dirty ranges does not wait for one repository read (file, decompression, digest check)
 * after another. The chunks needed are known from the read plan, in the order they are consumed.
 * A read answers null for a base copy that cannot be read (the assembler then reads the chunk whole).
 */
export class BasePrefetch<T> {
  private readonly order: number[];
  private readonly started = new Map<number, Promise<T>>();
  private next = 0;

  constructor(
    indexes: readonly number[],
    private readonly read: (index: number) => Promise<T>,
    private readonly window = 8,
  ) {
    this.order = [...indexes];
  }

  /** The base chunk `index`; starts the reads of the following ones. */
  get(index: number): Promise<T> {
    const pos = this.order.indexOf(index, Math.max(0, this.next - this.window));
    if (pos >= 0) this.fill(pos);
    const p = this.started.get(index) ?? this.read(index);
    this.started.delete(index);
    return p;
  }

  private fill(from: number): void {
    this.next = Math.max(this.next, from);
    while (this.next < this.order.length && this.next < from + this.window) {
      const i = this.order[this.next++];
      if (this.started.has(i)) continue;
      const p = this.read(i);
      p.catch(() => undefined);
      this.started.set(i, p);
    }
  }
}
