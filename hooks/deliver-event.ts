/**
 * Delivers one lifecycle event: to the daemon if it acknowledges within the bound, otherwise to the
 * durable spool. Never throws: a hook must not fail because pve-cbt is unwell.
 */
import { ipcRequest } from '../shared/ipc/ipc-client';
import { isCbtError } from '../shared/errors/cbt-error';
import { MESSAGE_TYPES, type LifecycleEvent } from '../shared/ipc/messages';
import type { HookConfig } from './hook-config';
import { appendToSpool } from './spool-writer';

export type Delivery =
  | { outcome: 'acked' }
  | { outcome: 'spooled'; reason: string; spool: string }
  | { outcome: 'lost'; reason: string };

/**
 * Never wait less than this for the daemon (unless hookTimeoutMs itself is smaller), even when a
 * slow start-up on a loaded host ate most of the budget: the run then takes at most this much longer.
 */
export const MIN_WAIT_MS = 500;

/** How long to wait for the daemon, `uptimeMs` into the run: hookTimeoutMs bounds the whole hook, so the time Node took to start counts against it. */
export function ipcWaitMs(hookTimeoutMs: number, uptimeMs: number): number {
  return Math.max(Math.min(MIN_WAIT_MS, hookTimeoutMs), hookTimeoutMs - Math.round(uptimeMs));
}

export async function deliverEvent(ev: LifecycleEvent, config: HookConfig, timeoutMs: number): Promise<Delivery> {
  let reason: string;
  try {
    await ipcRequest(config.socketPath, MESSAGE_TYPES.lifecycleEvent, ev, { timeoutMs });
    return { outcome: 'acked' };
  } catch (err) {
    reason = isCbtError(err) ? `${err.code}: ${err.message}` : String(err);
  }
  try {
    return { outcome: 'spooled', reason, spool: await appendToSpool(config.stateDir, ev) };
  } catch (err) {
    const why = isCbtError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
    return { outcome: 'lost', reason: `${reason}; spool failed: ${why}` };
  }
}
