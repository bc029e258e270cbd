/**
 * The one exit path of `pve-cbt`: every result and every error of every command ends here.
 * People get `summary` on the first line and `detail` (hint, other problems, error code) below it
 * on stderr. Errors that are not CbtErrors are bugs: CBT_INTERNAL (shared/errors/internal-errors.ts),
 * and the stack is shown when PVE_CBT_DEBUG is set.
 *
 * JSON (`--json` or `--output-format json|json-pretty`, as the Proxmox CLIs name it) is one
 * document on stdout, so a script reads one stream: always an object, the same shape for one item
 * or many (a list is an array inside the object, never a bare array), with `ok` beside the
 * command's own fields:
 *
 *     { "ok": true,  <the command's documented fields> }                         exit 0
 *     { "ok": false, <same fields> }                                             exit 5 (done, with findings)
 *     { "ok": false, "error": { "code", "message", "details" } }                 exit 1-4
 *     { "ok": false, <same fields>, "error": {…} }                               exit 1-4, with what was done
 *
 * `ok` is true exactly when the exit code is 0 (a command's own `ok`, as verify's, means the same).
 * So `pve-cbt list 101 --json` is `{"ok":true,"backups":[…]}` and a script reads `.backups` directly.
 * `json` is one line, `json-pretty` indented. Streams (`log`, `serve`) print JSON lines instead,
 * one record per line.
 */
import { InternalError } from '../../shared/errors/internal-errors';
import { isCbtError } from '../../shared/errors/cbt-error';
import { displayBackupIdsIn } from '../repository/backup-id';
import type { CommandResult } from './command';
import { ExitCode, exitCodeFor } from './exit-codes';

export interface HumanError {
  summary: string;
  detail: string[];
}

export interface JsonError {
  ok: false;
  error: { code: string; message: string; details: Record<string, unknown> };
}

export const OUTPUT_FORMATS = ['text', 'json', 'json-pretty'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

export function isJsonFormat(f: OutputFormat): boolean {
  return f !== 'text';
}

/** `ok`, the command's fields (its `data`, an object) and, after a failure, `error`. */
export type JsonEnvelope = { ok: boolean; error?: JsonError['error'] } & Record<string, unknown>;

function stringify(value: unknown, format: OutputFormat): string {
  return `${format === 'json-pretty' ? JSON.stringify(value, null, 2) : JSON.stringify(value)}\n`;
}

/** Backup ids in errors as pve-cbt prints them everywhere (PBS form), in strings and string lists. */
function displayIdsInDetails(details: Record<string, unknown>): Record<string, unknown> {
  const show = (v: unknown): unknown =>
    typeof v === 'string' ? displayBackupIdsIn(v) : Array.isArray(v) ? v.map((x) => (typeof x === 'string' ? displayBackupIdsIn(x) : x)) : v;
  return Object.fromEntries(Object.entries(details).map(([k, v]) => [k, show(v)]));
}

export function toJsonError(err: unknown): JsonError {
  if (isCbtError(err)) return { ok: false, error: { code: err.code, message: displayBackupIdsIn(err.message), details: displayIdsInDetails(err.details) } };
  const message = err instanceof Error ? err.message : String(err);
  return { ok: false, error: { code: InternalError.code, message, details: {} } };
}

export function toHumanError(err: unknown, env: NodeJS.ProcessEnv = {}): HumanError {
  if (!isCbtError(err)) {
    const message = err instanceof Error ? err.message : String(err);
    const stack = err instanceof Error ? (err.stack ?? '') : '';
    return {
      summary: `internal error: ${message}`,
      detail: env.PVE_CBT_DEBUG ? stack.split('\n').slice(1) : ['run with PVE_CBT_DEBUG=1 for a stack trace'],
    };
  }
  const d = err.details as { hint?: unknown; problems?: unknown };
  const detail: string[] = [];
  if (typeof d.hint === 'string' && d.hint) detail.push(`hint: ${displayBackupIdsIn(d.hint)}`);
  if (Array.isArray(d.problems) && d.problems.length > 1) {
    detail.push('also:');
    for (const p of d.problems.slice(1) as { keyPath: string; problem: string; hint: string }[]) {
      detail.push(`  ${p.keyPath || '(file)'}: ${p.problem}${p.hint ? ` (${p.hint})` : ''}`);
    }
  }
  detail.push(`(${err.code})`);
  return { summary: displayBackupIdsIn(err.message), detail };
}

export interface Rendered {
  stdout: string;
  stderr: string;
  exitCode: ExitCode;
}

/** `format` may also be a boolean (true: `json`) for callers that only know `--json`. */
export function renderError(err: unknown, format: OutputFormat | boolean, env: NodeJS.ProcessEnv = {}): Rendered {
  const f: OutputFormat = format === true ? 'json' : format === false ? 'text' : format;
  const exitCode = exitCodeFor(err);
  if (isJsonFormat(f)) return { stdout: stringify(toJsonError(err), f), stderr: '', exitCode };
  return { stdout: '', stderr: humanErrorText(err, env), exitCode };
}

function humanErrorText(err: unknown, env: NodeJS.ProcessEnv): string {
  const h = toHumanError(err, env);
  return [`pve-cbt: ${h.summary}`, ...h.detail.map((l) => `  ${l}`)].join('\n') + '\n';
}

/**
 * A result, with `result.error` when the command failed after doing part of its work (the error
 * then picks the exit code). A command that returns nothing printed its output itself (streams).
 */
export function renderResult(result: CommandResult | void, format: OutputFormat | boolean, env: NodeJS.ProcessEnv = {}): Rendered {
  const f: OutputFormat = format === true ? 'json' : format === false ? 'text' : format;
  const error = result?.error;
  const exitCode = error !== undefined ? exitCodeFor(error) : (result?.exitCode ?? ExitCode.Ok);
  if (isJsonFormat(f)) {
    if (!result) return { stdout: '', stderr: '', exitCode };
    const data = result.data;
    const fields = data === undefined ? {} : typeof data === 'object' && data !== null && !Array.isArray(data) ? (data as Record<string, unknown>) : { data };
    // `ok` first for people reading it; the exit code's `ok` wins over a command's own field.
    const envelope: JsonEnvelope = { ok: exitCode === ExitCode.Ok, ...fields };
    envelope.ok = exitCode === ExitCode.Ok;
    if (error !== undefined) envelope.error = toJsonError(error).error;
    return { stdout: stringify(envelope, f), stderr: '', exitCode };
  }
  const text = result?.text;
  return {
    stdout: text ? (text.endsWith('\n') ? text : `${text}\n`) : '',
    stderr: error !== undefined ? humanErrorText(error, env) : '',
    exitCode,
  };
}
