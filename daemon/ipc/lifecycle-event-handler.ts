/**
 * The `lifecycle-event` request that the hooks send: replay whatever the spool holds first (so that
 * events keep their order when the daemon comes back), then store and apply the live event in the
 * ledger. If either fails the hook receives an error, spools its event behind the older ones and
 * exits 0; nothing is lost and the next contact replays them.
 */
import type { Logger } from 'winston';
import type { LifecycleEvent, LifecycleEventResult } from '../../shared/ipc/messages';
import type { Ledger } from '../ledger/ledger';
import type { IpcHandler } from './ipc-server';
import { LIFECYCLE_EVENT_SCHEMA } from './lifecycle-event-schema';
import { replaySpool } from './spool-replay';

/** Re-exported for callers that register the handler's schema themselves (tests). */
export { LIFECYCLE_EVENT_SCHEMA };

export function lifecycleEventHandler(opts: {
  ledger: Ledger;
  stateDir: string;
  logger?: Logger;
  /** Runs after a live event was stored for the first time, before the hook gets its reply (daemon/parking). */
  afterRecord?: (ev: LifecycleEvent) => Promise<void>;
  /** Called once a live event is stored (not for duplicates); must not throw or block (daemon/migration). */
  onRecorded?: (ev: LifecycleEvent) => void;
}): IpcHandler {
  const apply = (ev: LifecycleEvent): void => {
    opts.ledger.recordEvent(ev);
  };
  return {
    schema: LIFECYCLE_EVENT_SCHEMA,
    handle: async (ev: LifecycleEvent): Promise<LifecycleEventResult> => {
      replaySpool(opts.stateDir, apply, opts.logger);
      const r = opts.ledger.recordEvent(ev);
      if (!r.duplicate) opts.onRecorded?.(ev);
      opts.logger?.debug('lifecycle event', { vmid: ev.vmid, phase: ev.phase, source: ev.source, duplicate: r.duplicate });
      if (!r.duplicate && opts.afterRecord) await opts.afterRecord(ev);
      return r;
    },
  };
}
