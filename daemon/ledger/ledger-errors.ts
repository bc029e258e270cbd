import { defineError } from '../../shared/errors/cbt-error';

export const LedgerBadEventError = defineError<{ reason: string; event: unknown }>(
  'CBT_LEDGER_BAD_EVENT',
  (d) => `lifecycle event refused: ${d.reason}`,
);
