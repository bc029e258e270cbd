/**
 * The `lifecycle-event` request that the hooks send: replay whatever the spool holds first (so that
 * events keep their order when the daemon comes back), then store and apply the live event in the
 * ledger. If either fails the hook receives an error, spools its event behind the older ones and
 * exits 0; nothing is lost and the next contact replays them.
 */
import type { Logger } from 'winston';
import {
  GUEST_PHASES,
  VMID_MAX,
  VMID_MIN,
  VZDUMP_GUEST_PHASES,
  VZDUMP_JOB_PHASES,
  VZDUMP_MODES,
  type LifecycleEvent,
  type LifecycleEventResult,
} from '../../shared/ipc/messages';
import type { Ledger } from '../ledger/ledger';
import type { IpcHandler } from './ipc-server';
import { replaySpool } from './spool-replay';

/** Shape only; which phases need a vmid or a mode is checked by the ledger (CBT_LEDGER_BAD_EVENT). */
export const LIFECYCLE_EVENT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['phase', 'source', 'time'],
  properties: {
    vmid: { type: 'integer', minimum: VMID_MIN, maximum: VMID_MAX },
    phase: { enum: [...new Set([...GUEST_PHASES, ...VZDUMP_JOB_PHASES, ...VZDUMP_GUEST_PHASES])] },
    source: { enum: ['hookscript', 'vzdump'] },
    mode: { enum: [...VZDUMP_MODES] },
    time: { type: 'string', maxLength: 40, pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}' },
    migratedFrom: { type: 'string', minLength: 1, maxLength: 255 },
    qemuPid: { type: 'integer', minimum: 1 },
    seq: { type: 'string', minLength: 1, maxLength: 128 },
  },
} as const;

export function lifecycleEventHandler(opts: { ledger: Ledger; stateDir: string; logger?: Logger }): IpcHandler {
  const apply = (ev: LifecycleEvent): void => {
    opts.ledger.recordEvent(ev);
  };
  return {
    schema: LIFECYCLE_EVENT_SCHEMA,
    handle: async (ev: LifecycleEvent): Promise<LifecycleEventResult> => {
      replaySpool(opts.stateDir, apply, opts.logger);
      const r = opts.ledger.recordEvent(ev);
      opts.logger?.debug('lifecycle event', { vmid: ev.vmid, phase: ev.phase, source: ev.source, duplicate: r.duplicate });
      return r;
    },
  };
}
