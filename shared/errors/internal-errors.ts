/**
 * The one internal code. An internal invariant broke (a bug: e.g. data outside the read plan, a
 * command definition with nothing to run), or a thrown value carried no code of its own (then
 * `errorJson` and the CLI report it under this code with its message). `what` says which
 * invariant, with the values involved beside it.
 */
import { defineError, type ErrorDetails } from './cbt-error';

/** An internal invariant broke, or a thrown value carried no code (a bug): the message says what. */
export const InternalError = defineError<{ what: string } & ErrorDetails>('CBT_INTERNAL', (d) => `internal error: ${d.what}`);
