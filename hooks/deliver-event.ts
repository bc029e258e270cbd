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
const MIN_WAIT_MS = 500;

export async function deliverEvent(ev: LifecycleEvent, config: HookConfig): Promise<Delivery> {
  let reason: string;
  // hookTimeoutMs bounds the whole hook, so the time Node took to start counts against it.
  const timeoutMs = Math.max(Math.min(MIN_WAIT_MS, config.hookTimeoutMs), config.hookTimeoutMs - Math.round(process.uptime() * 1000));
  try {
    await ipcRequest(config.socketPath, MESSAGE_TYPES.lifecycleEvent, ev, { timeoutMs });
    return { outcome: 'acked' };
  } catch (err) {
    reason = isCbtError(err) ? `${err.code}: ${err.message}` : String(err);
  }
  try {
    return { outcome: 'spooled', reason, spool: appendToSpool(config.stateDir, ev) };
  } catch (err) {
    return { outcome: 'lost', reason: `${reason}; spool failed: ${(err as Error).message}` };
  }
}
