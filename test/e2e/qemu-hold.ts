/**
 * Holding a running backup still while a test acts on the daemon, so the action lands in the middle
 * of the backup however slowly a loaded machine runs it: QEMU is frozen (SIGSTOP) on the backup's
 * first progress frame, and thawed (SIGCONT) only once the daemon's log shows the action took effect
 * (a barrier, not a sleep). A frozen QEMU answers no NBD read, so the backup cannot finish meanwhile.
 */
import { readLog, type LogFilter } from '../../daemon/log/read-log';

export interface QemuFreeze {
  /** SIGCONT, once; later calls do nothing. */
  thaw(): void;
}

/** SIGSTOPs the QEMU process now. */
export function freezeQemu(pid: number): QemuFreeze {
  process.kill(pid, 'SIGSTOP');
  let frozen = true;
  return {
    thaw() {
      if (!frozen) return;
      frozen = false;
      process.kill(pid, 'SIGCONT');
    },
  };
}

export interface LogBarrier {
  /** Resolves once `message` was logged more often than when the barrier was armed; throws after timeoutMs. */
  reached(timeoutMs?: number): Promise<void>;
}

/** Arms a barrier on the daemon's log in logDir: counts `message` now, so an earlier entry does not count. */
export function logBarrier(logDir: string, message: string, filter: LogFilter = {}): LogBarrier {
  const count = (): number => readLog(logDir, filter).filter((e) => e.message === message).length;
  const before = count();
  return {
    async reached(timeoutMs = 60_000) {
      for (const end = Date.now() + timeoutMs; Date.now() < end; ) {
        if (count() > before) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the daemon did not log "${message}" within ${timeoutMs} ms`);
    },
  };
}
