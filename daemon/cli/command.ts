/**
 * What a `pve-cbt` command is: a plain definition object, one per file in `commands/`, listed in
 * `registry.ts`. `run-cli.ts` builds commander from these (so help always matches), parses, calls
 * `run(ctx)` and sends the result or error through the one exit path in `output.ts`.
 *
 * A command never writes JSON results or errors itself and never calls process.exit: it returns
 * `{ data, text, exitCode }` or throws a CbtError. Streaming commands (log --follow) use
 * `ctx.out.json(value)` / `ctx.out.line(text)` per item instead.
 */
import type { CbtConfig } from '../config/config-schema';
import type { ExitCode } from './exit-codes';
import type { OutputFormat } from './output';
import type { ProgressReporter } from './progress';

export interface ParamDefinition {
  /** Shown in help as <name> / [name...]; the parsed value is `ctx.args[name]`. */
  name: string;
  description: string;
  required?: boolean;
  /** Takes the remaining words; the value is an array. */
  variadic?: boolean;
  /** Converts (and validates) one word; throw `InvalidArgumentError` or a CbtError to refuse it. */
  parse?: (raw: string) => unknown;
}

export interface OptionDefinition {
  /** commander flags: '--vm <vmid>', '-f, --follow', '--format <fmt>'. Value is `ctx.opts[camelName]`. */
  flags: string;
  description: string;
  default?: unknown;
  choices?: readonly string[];
  parse?: (raw: string) => unknown;
}

export interface CommandOutput {
  /** One line for people; dropped with --json. */
  line(text: string): void;
  /** One compact JSON document on its own line; only with --json (JSON-lines streams). */
  json(value: unknown): void;
}

export interface CommandContext<O = Record<string, unknown>, A = Record<string, unknown>> {
  args: A;
  opts: O;
  /** True for `--json` and `--output-format json|json-pretty`. */
  json: boolean;
  outputFormat: OutputFormat;
  /** `--config` as given (undefined: PVE_CBT_CONFIG or the default file). */
  configPath: string | undefined;
  env: NodeJS.ProcessEnv;
  /** Loads and validates the config once per run; throws CBT_CONFIG_INVALID (exit 3). */
  loadConfig(): CbtConfig;
  out: CommandOutput;
  /** Bytes progress on stderr: bar on a TTY, periodic lines otherwise, nothing with --json. */
  progress(label: string, total: number, opts?: { unit?: 'bytes' | 'items' }): ProgressReporter;
  /** Aborted on SIGINT/SIGTERM: stop, clean up, then return or throw. */
  signal: AbortSignal;
  now(): Date;
  stdout: NodeJS.WritableStream & { isTTY?: boolean };
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
}

export interface CommandResult {
  /** Printed as the envelope's `data` with --json (the shape documented per command; see output.ts). */
  data?: unknown;
  /** Printed for people without --json. */
  text?: string;
  /** Only needed for ExitCode.Partial; errors pick their own code. */
  exitCode?: ExitCode;
  /**
   * The command failed after doing part of its work (`backup` of VMs that all failed): shown like a
   * thrown error (stderr, or the envelope's `error` beside `data`) and it picks the exit code.
   */
  error?: unknown;
}

export interface CommandDefinition<O = Record<string, unknown>, A = Record<string, unknown>> {
  name: string;
  /** One line, shown in the command list. */
  summary: string;
  /** Longer text for `pve-cbt NAME --help`. */
  description?: string;
  /** Overrides commander's generated usage line, e.g. '[options] <backup> --disk <disk> --to <path>'. */
  usage?: string;
  examples?: readonly string[];
  params?: readonly ParamDefinition[];
  options?: readonly OptionDefinition[];
  /** A group like `config check`, `hooks install`: the group itself has no `run`. */
  subcommands?: readonly CommandDefinition[];
  run?(ctx: CommandContext<O, A>): Promise<CommandResult | void>;
}

/** Lets a command file type its own opts/args while the registry holds plain definitions. */
export function defineCommand<O = Record<string, unknown>, A = Record<string, unknown>>(
  def: CommandDefinition<O, A>,
): CommandDefinition {
  return def as unknown as CommandDefinition;
}
