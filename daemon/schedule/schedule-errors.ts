import { defineError } from '../../shared/errors/cbt-error';

/** A calendar event that does not parse; `position` is the 0-based offset of the offending text. */
export const ScheduleInvalidError = defineError<{ schedule: string; position: number; problem: string; hint: string }>(
  'CBT_SCHEDULE_INVALID',
  (d) => `invalid schedule '${d.schedule}' at position ${d.position}: ${d.problem}`,
);
