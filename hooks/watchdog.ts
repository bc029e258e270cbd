/**
 * The hook's overall time bound. `expired` resolves once the deadline, in milliseconds since the
 * process started (Node start-up counts), has passed; the deadline can be moved while it runs. It
 * is a timer on the event loop, so everything it bounds must be asynchronous (trusted-file.ts,
 * spool-writer.ts): then it fires even while a read, an fsync or a connect hangs, and the process
 * exits, leaving the hung operation behind.
 */
export class Watchdog {
  readonly expired: Promise<void>;
  private fire!: () => void;
  private timer: NodeJS.Timeout | undefined;

  constructor(private deadlineMs: number) {
    this.expired = new Promise<void>((resolve) => (this.fire = resolve));
    this.arm();
  }

  get deadline(): number {
    return this.deadlineMs;
  }

  setDeadline(ms: number): void {
    this.deadlineMs = ms;
    this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(this.fire, Math.max(0, this.deadlineMs - process.uptime() * 1000));
  }
}
