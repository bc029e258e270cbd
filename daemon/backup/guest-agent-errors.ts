/**
 * Error codes of the QEMU guest agent client (guest-agent.ts). A backup never fails because of
 * them: the freeze is skipped, the backup is crash-consistent and the reason is recorded.
 */
import { defineError } from '../../shared/errors/cbt-error';

export const GuestAgentTimeoutError = defineError<{ socket: string; command: string; timeoutMs: number }>(
  'CBT_GUEST_AGENT_TIMEOUT',
  (d) => `guest agent did not answer ${d.command} within ${d.timeoutMs} ms`,
);
export const GuestAgentClosedError = defineError<{ socket: string; command: string }>(
  'CBT_GUEST_AGENT_CLOSED',
  () => 'guest agent channel closed',
);
export const GuestAgentCommandError = defineError<{ socket: string; command: string; desc: string }>(
  'CBT_GUEST_AGENT_ERROR',
  (d) => `guest agent: ${d.desc}`,
);
