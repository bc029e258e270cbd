/**
 * Checking one received line before any handler sees it (ipc-server.ts): JSON, the request
 * envelope (`shared/ipc/messages.ts`), a known type, and its payload against the handler's schema,
 * all with ajv validators compiled once at start. A rejection carries the CBT_IPC_* error to
 * answer, the request id to answer it under (when the envelope got far enough to name one), and
 * what the log line shows.
 */
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import type { CbtError } from '../../shared/errors/cbt-error';
import {
  IpcInvalidMessageError,
  IpcInvalidPayloadError,
  IpcMalformedError,
  IpcSchemaError,
  IpcUnknownTypeError,
} from '../../shared/ipc/ipc-errors';
import { IPC_PROTOCOL_VERSION, type RequestEnvelope } from '../../shared/ipc/messages';
import type { IpcHandler } from './ipc-server';

const ENVELOPE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['v', 'id', 'type', 'payload'],
  properties: {
    v: { const: IPC_PROTOCOL_VERSION },
    id: { type: 'string', minLength: 1, maxLength: 128 },
    type: { type: 'string', minLength: 1, maxLength: 64 },
    payload: {},
  },
} as const;

export interface Validators {
  envelope: ValidateFunction;
  payload: Map<string, ValidateFunction>;
}

/** Compiles the envelope and every handler's payload schema; a bad schema is CBT_IPC_SCHEMA. */
export function compileValidators(handlers: Record<string, IpcHandler>): Validators {
  const ajv = new Ajv({ allErrors: false, strict: true });
  const payload = new Map<string, ValidateFunction>();
  for (const [type, h] of Object.entries(handlers)) {
    const schema = h.schema as { type?: unknown; additionalProperties?: unknown };
    if (schema.type === 'object' && schema.additionalProperties !== false) {
      throw IpcSchemaError({ type, reason: 'object schemas must set additionalProperties: false' });
    }
    try {
      payload.set(type, ajv.compile(h.schema));
    } catch (err) {
      throw IpcSchemaError({ type, reason: (err as Error).message }, err);
    }
  }
  return { envelope: ajv.compile(ENVELOPE_SCHEMA), payload };
}

function describe(errors: ErrorObject[] | null | undefined): string[] {
  return (errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? 'is invalid'}`);
}

export type CheckedRequest =
  | { ok: true; req: RequestEnvelope; handler: IpcHandler }
  | { ok: false; id: string | null; error: CbtError; logDetails: unknown };

/** Parses and validates one non-empty line. */
export function checkRequest(line: string, handlers: Record<string, IpcHandler>, validators: Validators): CheckedRequest {
  let msg: unknown;
  try {
    msg = JSON.parse(line);
  } catch (err) {
    const e = IpcMalformedError({ reason: (err as Error).message, bytes: Buffer.byteLength(line) });
    return { ok: false, id: null, error: e, logDetails: e.details };
  }
  const maybeId = typeof msg === 'object' && msg !== null && typeof (msg as { id?: unknown }).id === 'string'
    ? ((msg as { id: string }).id.slice(0, 128))
    : null;
  if (!validators.envelope(msg)) {
    const e = IpcInvalidMessageError({ errors: describe(validators.envelope.errors) });
    return { ok: false, id: maybeId, error: e, logDetails: e.details };
  }
  const req = msg as RequestEnvelope;
  const handler = handlers[req.type];
  const validate = Object.prototype.hasOwnProperty.call(handlers, req.type) ? validators.payload.get(req.type) : undefined;
  if (!handler || !validate) {
    return { ok: false, id: req.id, error: IpcUnknownTypeError({ type: req.type, known: Object.keys(handlers) }), logDetails: { type: req.type } };
  }
  if (!validate(req.payload)) {
    const e = IpcInvalidPayloadError({ type: req.type, errors: describe(validate.errors) });
    return { ok: false, id: req.id, error: e, logDetails: e.details };
  }
  return { ok: true, req, handler };
}
