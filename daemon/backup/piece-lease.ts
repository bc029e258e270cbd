/**
 * A pooled NBD read buffer ("piece") lent to the chunk pipeline. Chunks that lie whole inside a piece
 * are inserted as views of it, and inserts run concurrently with reading, so the piece may go back
 * to the reader's pool only when the assembler is done with it and every insert started meanwhile
 * has finished. The lease starts with the assembler's hold; `hold()` adds one and returns its drop.
 */
export class PieceLease {
  private holds = 1;

  constructor(private readonly release: () => void) {}

  hold(): () => void {
    this.holds++;
    let dropped = false;
    return () => {
      if (dropped) return;
      dropped = true;
      this.drop();
    };
  }

  drop(): void {
    if (--this.holds === 0) this.release();
  }
}
