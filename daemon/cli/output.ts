/**
 * The one exit path of `pve-cbt`: every result and every error of every command ends here.
 * People get `summary` on the first line and `detail` (hint, other problems, error code) below it
 * on stderr; `--json` gets `{ "ok": false, "error": { code, message, details } }` on stdout, so a
 * script reads one stream. Errors that are not CbtErrors are bugs: CBT_INTERNAL (shared/errors/internal-errors.ts), and the stack
 * is shown when PVE_CBT_DEBUG is set.
 */
import { InternalError } from '../../shared/errors/internal-errors';
import { isCbtError } from '../../shared/errors/cbt-error';
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

export function toJsonError(err: unknown): JsonError {
  if (isCbtError(err)) return { ok: false, error: { code: err.code, message: err.message, details: err.details } };
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
  if (typeof d.hint === 'string' && d.hint) detail.push(`hint: ${d.hint}`);
  if (Array.isArray(d.problems) && d.problems.length > 1) {
    detail.push('also:');
    for (const p of d.problems.slice(1) as { keyPath: string; problem: string; hint: string }[]) {
      detail.push(`  ${p.keyPath || '(file)'}: ${p.problem}${p.hint ? ` (${p.hint})` : ''}`);
    }
  }
  detail.push(`(${err.code})`);
  return { summary: err.message, detail };
}

export interface Rendered {
  stdout: string;
  stderr: string;
  exitCode: ExitCode;
}

export function renderError(err: unknown, json: boolean, env: NodeJS.ProcessEnv = {}): Rendered {
  const exitCode = exitCodeFor(err);
  if (json) return { stdout: `${JSON.stringify(toJsonError(err))}\n`, stderr: '', exitCode };
  const h = toHumanError(err, env);
  return { stdout: '', stderr: [`pve-cbt: ${h.summary}`, ...h.detail.map((l) => `  ${l}`)].join('\n') + '\n', exitCode };
}

export function renderResult(result: CommandResult | void, json: boolean): Rendered {
  const exitCode = result?.exitCode ?? ExitCode.Ok;
  if (json) {
    const data = result?.data;
    return { stdout: data === undefined ? '' : `${JSON.stringify(data, null, 2)}\n`, stderr: '', exitCode };
  }
  const text = result?.text;
  return { stdout: text ? (text.endsWith('\n') ? text : `${text}\n`) : '', stderr: '', exitCode };
}
