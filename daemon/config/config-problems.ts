/**
 * Turns ajv errors into admin-readable `ConfigProblem`s: the JSON-pointer key path, what is wrong,
 * and a hint taken from the schema (allowed keys with a "did you mean", allowed values, or an
 * example from `examples`). Errors inside an `anyOf` are collapsed into one problem at the anyOf's
 * key, because "must be array / must be equal to constant / must be object" helps nobody.
 */
import type { ErrorObject } from 'ajv';
import type { ConfigProblem } from './config-errors';
import { didYouMean } from './did-you-mean';

function show(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

const article = (word: string): string => `${/^[aeiou]/.test(word) ? 'an' : 'a'} ${word}`;

function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (Number.isInteger(value)) return 'an integer';
  return article(typeof value);
}

function exampleHint(schema: Record<string, unknown> | undefined): string {
  const examples = schema?.examples;
  if (!Array.isArray(examples) || examples.length === 0) return '';
  return `example: ${examples.map(show).join(' or ')}`;
}

function describe(err: ErrorObject): ConfigProblem {
  const parent = err.parentSchema as Record<string, unknown> | undefined;
  const keyPath = err.instancePath;
  const params = err.params as Record<string, unknown>;
  const description = typeof parent?.description === 'string' ? ` (${parent.description})` : '';
  switch (err.keyword) {
    case 'additionalProperties': {
      const key = String(params.additionalProperty);
      const allowed = Object.keys((parent?.properties as Record<string, unknown>) ?? {});
      const guess = didYouMean(key, allowed);
      return {
        keyPath: `${keyPath}/${key}`,
        problem: `unknown key '${key}'`,
        hint: `${guess ? `did you mean '${guess}'? ` : ''}allowed keys: ${allowed.join(', ')}`,
      };
    }
    case 'required': {
      const key = String(params.missingProperty);
      const sub = (parent?.properties as Record<string, Record<string, unknown>> | undefined)?.[key];
      return { keyPath: `${keyPath}/${key}`, problem: `missing required key '${key}'`, hint: exampleHint(sub) };
    }
    case 'type':
      return {
        keyPath,
        problem: `must be ${article(String(params.type))}, not ${kindOf(err.data)} ${show(err.data)}`,
        hint: exampleHint(parent),
      };
    case 'enum':
      return {
        keyPath,
        problem: `${show(err.data)} is not allowed${description}`,
        hint: `one of: ${(params.allowedValues as unknown[]).map(show).join(', ')}`,
      };
    case 'pattern':
      return {
        keyPath,
        problem: params.pattern === '^/' ? `${show(err.data)} is not an absolute path` : `${show(err.data)} has the wrong form${description}`,
        hint: exampleHint(parent),
      };
    case 'anyOf':
      return { keyPath, problem: `${show(err.data)} is not allowed${description}`, hint: exampleHint(parent) };
    default:
      return { keyPath, problem: `${show(err.data)} ${err.message ?? 'is invalid'}${description}`, hint: exampleHint(parent) };
  }
}

/** Needs errors from an ajv instance created with `verbose: true` (for `data` and `parentSchema`). */
export function problemsFromAjv(errors: readonly ErrorObject[]): ConfigProblem[] {
  const anyOfPaths = errors.filter((e) => e.keyword === 'anyOf').map((e) => `${e.schemaPath}/`);
  const kept = errors.filter((e) => !anyOfPaths.some((p) => e.schemaPath.startsWith(p)));
  // One problem per key: a string where an integer from a list is expected fails both `type` and `enum`.
  const byKey = new Map<string, ConfigProblem>();
  for (const err of kept) {
    const p = describe(err);
    if (!byKey.has(p.keyPath)) byKey.set(p.keyPath, p);
  }
  return [...byKey.values()];
}
