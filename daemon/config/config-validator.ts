/**
 * The config validator: ajv's standalone code for CONFIG_SCHEMA, generated ahead of time
 * (config-schema-validate.generated.ts by scripts/config-validator.js), so that a CLI start does not
 * load ajv and compile the schema (about 0.15 s of CPU here, most of `pve-cbt backup`'s config
 * load). When the schema no longer matches the digest the file was generated from (changed, not
 * regenerated yet), the schema is compiled with ajv as before, with the same options: the result is
 * the same, only slower, and test/daemon/config/config-validator.test.ts says to regenerate.
 */
import crypto from 'node:crypto';
import type { ErrorObject } from 'ajv';
import { CONFIG_SCHEMA } from './config-schema';
import * as generated from './config-schema-validate.generated';

/** Options of the config validator; the generated one and the fallback compile use the same. */
export const CONFIG_AJV_OPTIONS = { allErrors: true, useDefaults: true, verbose: true, strict: true } as const;

export interface ConfigValidateFunction {
  (data: unknown): boolean;
  errors?: ErrorObject[] | null;
}

export function schemaDigest(schema: object): string {
  return crypto.createHash('sha256').update(JSON.stringify(schema)).digest('hex');
}

/** Whether the generated validator was made from the schema in force. */
export function generatedValidatorCurrent(): boolean {
  return generated.SCHEMA_DIGEST === schemaDigest(CONFIG_SCHEMA);
}

let cached: ConfigValidateFunction | undefined;

export function configValidator(): ConfigValidateFunction {
  if (cached) return cached;
  if (generatedValidatorCurrent()) return (cached = generated.validate as unknown as ConfigValidateFunction);
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Ajv = (require('ajv') as typeof import('ajv')).default;
  return (cached = new Ajv(CONFIG_AJV_OPTIONS).compile(CONFIG_SCHEMA) as ConfigValidateFunction);
}
