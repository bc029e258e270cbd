/**
 * Splits a byte stream into `\n`-terminated frames with a hard size bound.
 *
 * node-ipc's own framing (JSON + `\f`, used when `rawBuffer` is off) buffers without limit until a
 * chunk happens to end in the delimiter and lets a peer inject node-ipc's internal event names, so
 * pve-cbt runs node-ipc in raw buffer mode and frames messages itself with this class.
 * Frames are decoded as UTF-8 only once complete, so a multi-byte character split across chunks is
 * never mangled.
 */
/** Replies (e.g. a `list` of many backups) may be larger than requests; still bounded. */
export const DEFAULT_MAX_REPLY_BYTES = 64 * 1024 * 1024;

export type FramerOutput = { frames: string[]; overflowBytes: number | null };

export class LineFramer {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxFrameBytes: number) {}

  /** Bytes of an unfinished frame held back, waiting for its newline. */
  get bufferedBytes(): number {
    return this.pendingBytes;
  }

  /**
   * Feeds one chunk. Returns the complete frames (without the newline) and, once a frame exceeds
   * the bound, the number of bytes seen for it: the stream cannot be resynchronised after that and
   * the caller must drop the connection. Nothing more is decoded after an overflow.
   */
  push(chunk: Buffer): FramerOutput {
    const frames: string[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const size = this.pendingBytes + (nl - start);
      if (size > this.maxFrameBytes) return this.overflow(frames, size);
      const part = chunk.subarray(start, nl);
      const whole = this.pendingBytes === 0 ? part : Buffer.concat([...this.pending, part], size);
      frames.push(whole.toString('utf8'));
      this.pending = [];
      this.pendingBytes = 0;
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.pendingBytes + rest.length > this.maxFrameBytes) return this.overflow(frames, this.pendingBytes + rest.length);
      this.pending.push(Buffer.from(rest));
      this.pendingBytes += rest.length;
    }
    return { frames, overflowBytes: null };
  }

  private overflow(frames: string[], bytes: number): FramerOutput {
    this.pending = [];
    this.pendingBytes = 0;
    return { frames, overflowBytes: bytes };
  }
}

/** Encodes one message as a frame. */
export function encodeFrame(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}
