/**
 * A FIFO of received byte chunks with awaitable exact reads, for the handshake phase. Chunks are kept
 * as they arrive and joined only for the bytes a read takes, so buffering is linear, never quadratic.
 * Every wait is bounded by `timeoutMs`; `fail()` rejects the current and all later reads.
 */
import { InternalError } from '../../shared/errors/internal-errors';
import { NbdTimeoutError } from './nbd-errors';

interface Waiter {
  length: number;
  what: string;
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
  timer: NodeJS.Timeout;
}

export class ByteQueue {
  private chunks: Buffer[] = [];
  private total = 0;
  private waiter: Waiter | undefined;
  private failure: unknown;

  constructor(private readonly timeoutMs: number, private readonly onTimeout: (err: unknown) => void = () => undefined) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
    this.settle();
  }

  readExact(length: number, what: string): Promise<Buffer> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.waiter) return Promise.reject(InternalError({ what: 'ByteQueue: concurrent reads are not supported', length }));
    if (this.total >= length) return Promise.resolve(this.take(length));
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        const err = NbdTimeoutError({ waitingFor: what, timeoutMs: this.timeoutMs });
        this.fail(err);
        this.onTimeout(err);
      }, this.timeoutMs);
      this.waiter = { length, what, resolve, reject, timer };
    });
  }

  /** Everything still buffered, leaving the queue empty. */
  drain(): Buffer[] {
    const out = this.chunks;
    this.chunks = [];
    this.total = 0;
    return out;
  }

  fail(err: unknown): void {
    if (this.failure === undefined) this.failure = err;
    const w = this.waiter;
    if (w) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.reject(this.failure);
    }
  }

  private settle(): void {
    const w = this.waiter;
    if (w && this.total >= w.length) {
      this.waiter = undefined;
      clearTimeout(w.timer);
      w.resolve(this.take(w.length));
    }
  }

  private take(length: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length >= length) {
      const out = first.subarray(0, length);
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
      this.total -= length;
      return out;
    }
    const out = Buffer.allocUnsafe(length);
    let at = 0;
    while (at < length) {
      const c = this.chunks[0] as Buffer;
      const n = Math.min(c.length, length - at);
      c.copy(out, at, 0, n);
      at += n;
      if (n === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(n);
    }
    this.total -= length;
    return out;
  }
}
