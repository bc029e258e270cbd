/**
 * Every error pve-cbt raises carries a stable `code` (never reused, never reworded) and the values
 * involved as `details`, so that callers branch on codes and the CLI can render `--json`.
 * Each subsystem declares its codes once in its own `*-errors.ts` file with `defineError`.
 */
export type ErrorDetails = Record<string, unknown>;

export class CbtError extends Error {
  readonly code: string;
  readonly details: ErrorDetails;

  constructor(code: string, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CbtError';
    this.code = code;
    this.details = details;
  }

  toJSON(): { code: string; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

/** A factory for one error code: `const E = defineError('CBT_X', (d: {vmid: number}) => \`...\`)`. */
export interface ErrorFactory<D extends ErrorDetails> {
  readonly code: string;
  (details: D, cause?: unknown): CbtError;
  is(err: unknown): err is CbtError;
}

export function defineError<D extends ErrorDetails>(code: string, message: (details: D) => string): ErrorFactory<D> {
  const factory = ((details: D, cause?: unknown) =>
    new CbtError(code, message(details), details, cause === undefined ? undefined : { cause })) as ErrorFactory<D>;
  Object.defineProperty(factory, 'code', { value: code });
  factory.is = (err: unknown): err is CbtError => err instanceof CbtError && err.code === code;
  return factory;
}

export function isCbtError(err: unknown): err is CbtError {
  return err instanceof CbtError;
}

/** Any thrown value as plain JSON: a CbtError as it is, anything else as CBT_INTERNAL (internal-errors.ts) with its message. */
export function errorJson(err: unknown): { code: string; message: string; details: ErrorDetails } {
  if (isCbtError(err)) return err.toJSON();
  return { code: 'CBT_INTERNAL', message: err instanceof Error ? err.message : String(err), details: {} };
}
