/**
 * Retries a VM's cleanup in the background when QEMU did not answer at the time (hung, SIGSTOP, an
 * overloaded host): a failed backup could not remove its export, job, scratch node and file, nor
 * roll its bitmaps back. The attempt runs again after a delay that doubles up to a bound, until one
 * attempt succeeds, or the QEMU process the objects live in is gone (they went with it), or it is
 * stopped because the next backup of the VM cleans up itself first (recover-fleece.ts).
 * Every failed attempt is logged; the timers are unref'd, so a pending retry never keeps the daemon
 * alive. At most one retry runs per VM: scheduling another one replaces it.
 */
import type { Logger } from 'winston';
import { processStartTime, type QemuProcess } from '../pve/qemu-process';

export interface CleanupRetryOptions {
  readonly vmid: number;
  /** The QEMU process whose objects are cleaned; the retry ends when it is gone. */
  readonly qemu: QemuProcess;
  /** One cleanup pass; throws when QEMU did not answer (or anything else was left). */
  readonly attempt: () => Promise<unknown>;
  readonly firstDelayMs?: number;
  readonly maxDelayMs?: number;
  readonly logger?: Logger;
}

interface Retry {
  timer: NodeJS.Timeout | undefined;
  running: Promise<void> | undefined;
  stopped: boolean;
}

const retries = new Map<number, Retry>();

export function retryCleanup(o: CleanupRetryOptions): void {
  stopRetryNow(o.vmid);
  const r: Retry = { timer: undefined, running: undefined, stopped: false };
  retries.set(o.vmid, r);
  const maxDelay = o.maxDelayMs ?? 30_000;
  let attempts = 0;
  const end = (): void => {
    r.stopped = true;
    if (retries.get(o.vmid) === r) retries.delete(o.vmid);
  };
  const schedule = (delay: number): void => {
    r.timer = setTimeout(() => {
      r.timer = undefined;
      r.running = run(delay).finally(() => (r.running = undefined));
    }, delay).unref();
  };
  const run = async (delay: number): Promise<void> => {
    if (r.stopped) return;
    if (processStartTime(o.qemu.pid) !== o.qemu.startTime) {
      o.logger?.info('QEMU is gone; its leftovers of the failed backup went with it', { vmid: o.vmid, attempts });
      return end();
    }
    attempts++;
    try {
      await o.attempt();
      o.logger?.info('leftovers of the failed backup cleaned in the background', { vmid: o.vmid, attempts });
      end();
    } catch (err) {
      if (r.stopped) return;
      const next = Math.min(maxDelay, delay * 2);
      o.logger?.warn('cleanup of the failed backup failed; retrying', { vmid: o.vmid, attempts, retryInMs: next, error: (err as Error).message });
      schedule(next);
    }
  };
  schedule(o.firstDelayMs ?? 1000);
}

/** Ends a VM's pending retry; resolves once an attempt that is running has finished. */
export async function stopCleanupRetry(vmid: number): Promise<void> {
  const running = retries.get(vmid)?.running;
  stopRetryNow(vmid);
  await running?.catch(() => undefined);
}

function stopRetryNow(vmid: number): void {
  const r = retries.get(vmid);
  if (!r) return;
  r.stopped = true;
  if (r.timer) clearTimeout(r.timer);
  retries.delete(vmid);
}
