/**
 * Builds the commander program from command definitions and runs one command line to an exit
 * code. Everything a run touches comes in through `RunCliOptions` (argv, streams, env, signal,
 * clock), so tests drive the real CLI in-process. Nothing here calls process.exit.
 *
 * Global options `--json`, `--output-format <text|json|json-pretty>` (`--json` is `--output-format
 * json`, as in the Proxmox CLIs) and `--config <path>` are accepted before or after the command name.
 * commander's own errors (unknown option, missing argument, a parser's InvalidArgumentError) become
 * CBT_CLI_USAGE (exit 2) and go through `output.ts` like every other error.
 */
import { Command, CommanderError, Option } from 'commander';
import { loadConfig } from '../config/load-config';
import type { CbtConfig } from '../config/config-schema';
import { isCbtError } from '../../shared/errors/cbt-error';
import { InternalError } from '../../shared/errors/internal-errors';
import { CliUsageError } from './cli-errors';
import type { CommandContext, CommandDefinition, CommandResult } from './command';
import { ExitCode, exitCodeHelp } from './exit-codes';
import { OUTPUT_FORMATS, isJsonFormat, renderError, renderResult, type OutputFormat, type Rendered } from './output';
import { createProgressReporter } from './progress';

type Stream = NodeJS.WritableStream & { isTTY?: boolean };

export interface RunCliOptions {
  /** Arguments after the program name. */
  argv: readonly string[];
  commands: readonly CommandDefinition[];
  stdout: Stream;
  stderr: Stream;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  now?: () => Date;
  version?: string;
}

interface Invocation {
  def: CommandDefinition;
  command: Command;
}

function paramSpec(p: { name: string; required?: boolean; variadic?: boolean }): string {
  const inner = `${p.name}${p.variadic ? '...' : ''}`;
  return p.required ? `<${inner}>` : `[${inner}]`;
}

function addDefinition(parent: Command, def: CommandDefinition, onInvoke: (inv: Invocation) => void): void {
  // `.command()` (not addCommand) so exitOverride/configureOutput are inherited from the parent.
  const cmd = parent.command(def.name).summary(def.summary).description(def.description ?? def.summary);
  if (def.usage) cmd.usage(def.usage);
  for (const p of def.params ?? []) {
    cmd.argument(paramSpec(p), p.description, p.parse ? (raw: string, prev: unknown) => parseParam(p, raw, prev) : undefined);
  }
  for (const o of def.options ?? []) {
    const opt = new Option(o.flags, o.description);
    if (o.choices) opt.choices(o.choices);
    if (o.parse) opt.argParser((raw: string) => o.parse?.(raw));
    if (o.default !== undefined) opt.default(o.default);
    cmd.addOption(opt);
  }
  if (def.examples?.length) cmd.addHelpText('after', `\nExamples:\n${def.examples.map((e) => `  $ ${e}`).join('\n')}`);
  for (const sub of def.subcommands ?? []) addDefinition(cmd, sub, onInvoke);
  if (def.run) {
    cmd.action((...actionArgs: unknown[]) => onInvoke({ def, command: actionArgs[actionArgs.length - 1] as Command }));
  } else if (!def.subcommands?.length) {
    throw InternalError({ what: `command '${def.name}' has neither run() nor subcommands`, command: def.name });
  }
}

/** Variadic params arrive one word at a time; collect them and convert each. */
function parseParam(p: { variadic?: boolean; parse?: (raw: string) => unknown }, raw: string, prev: unknown): unknown {
  const v = p.parse ? p.parse(raw) : raw;
  if (!p.variadic) return v;
  return Array.isArray(prev) ? [...(prev as unknown[]), v] : [v];
}

export function buildProgram(commands: readonly CommandDefinition[], out: { stdout: Stream; stderr: Stream; version?: string }, onInvoke: (inv: Invocation) => void): Command {
  const program = new Command('pve-cbt')
    .description('Changed-block-tracking backups for Proxmox VE')
    .option('--json', 'machine-readable output on stdout (errors too); same as --output-format json')
    .addOption(new Option('--output-format <format>', 'text for people, or one JSON document (json: one line, json-pretty: indented)').choices(OUTPUT_FORMATS))
    .option('--config <path>', 'config file (default: $PVE_CBT_CONFIG or /etc/pve-cbt/config.json)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => out.stdout.write(s),
      // Help shown because of a usage error goes to stderr; the error itself goes through output.ts.
      writeErr: (s) => out.stderr.write(s),
      outputError: () => undefined,
    })
    .showSuggestionAfterError(true)
    .addHelpText('after', `\n${exitCodeHelp()}`);
  if (out.version) program.version(out.version, '--version', 'print the version');
  for (const def of commands) addDefinition(program, def, onInvoke);
  return program;
}

function usageError(err: CommanderError, argv: readonly string[], commands: readonly CommandDefinition[]): unknown {
  const problem = err.message.replace(/^error: /, '');
  const name = argv.find((a) => commands.some((c) => c.name === a));
  return CliUsageError({ command: name ?? '', problem, hint: `see 'pve-cbt ${name ? `${name} ` : ''}--help'` });
}

/**
 * commander answers `pve-cbt nope --help` with the general help and exit 0, as if all was well;
 * without the help flag it reports the unknown command (with a suggestion) as a usage error.
 */
function withoutHelpForUnknown(argv: readonly string[], commands: readonly CommandDefinition[]): string[] {
  let operand: string | undefined;
  for (let i = 0; i < argv.length && operand === undefined; i++) {
    if (argv[i] === '--config' || argv[i] === '--output-format') i++;
    else if (!argv[i].startsWith('-')) operand = argv[i];
  }
  const unknown = operand !== undefined && operand !== 'help' && !commands.some((c) => c.name === operand);
  return unknown ? argv.filter((a) => a !== '--help' && a !== '-h') : [...argv];
}

/**
 * The output format asked for, read from the words themselves: also when commander refuses the
 * command line, so that its usage error is JSON for a script. An unknown format word is text.
 */
export function requestedFormat(argv: readonly string[]): OutputFormat {
  let format: OutputFormat = 'text';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') break;
    if (a === '--json' && format === 'text') format = 'json';
    const value = a === '--output-format' ? argv[i + 1] : a.startsWith('--output-format=') ? a.slice('--output-format='.length) : undefined;
    if (value !== undefined && (OUTPUT_FORMATS as readonly string[]).includes(value)) format = value as OutputFormat;
  }
  return format;
}

function write(rendered: Rendered, stdout: Stream, stderr: Stream): ExitCode {
  if (rendered.stdout) stdout.write(rendered.stdout);
  if (rendered.stderr) stderr.write(rendered.stderr);
  return rendered.exitCode;
}

/** Runs one command line; resolves to the process exit code. */
export async function runCli(opts: RunCliOptions): Promise<ExitCode> {
  const env = opts.env ?? process.env;
  const signal = opts.signal ?? new AbortController().signal;
  const now = opts.now ?? (() => new Date());
  const formatRequested = requestedFormat(opts.argv);
  let invocation: Invocation | undefined;
  try {
    const program = buildProgram(opts.commands, { stdout: opts.stdout, stderr: opts.stderr, version: opts.version }, (inv) => {
      invocation = inv;
    });
    await program.parseAsync(withoutHelpForUnknown(opts.argv, opts.commands), { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return ExitCode.Ok; // --help, --version
      if (err.code === 'commander.help') return ExitCode.Usage; // help for a missing (sub)command was shown
      return write(renderError(usageError(err, opts.argv, opts.commands), formatRequested, env), opts.stdout, opts.stderr);
    }
    if (isCbtError(err)) return write(renderError(err, formatRequested, env), opts.stdout, opts.stderr);
    throw err;
  }
  // commander shows help and throws when no command is named, so a completed parse has one.
  if (!invocation) return ExitCode.Usage;
  const { def, command } = invocation;
  const globals = command.optsWithGlobals<{ json?: boolean; outputFormat?: OutputFormat; config?: string }>();
  if (globals.json === true && globals.outputFormat === 'text') {
    const err = CliUsageError({ command: def.name, problem: '--json and --output-format text contradict each other', hint: 'give one of them' });
    return write(renderError(err, 'text', env), opts.stdout, opts.stderr);
  }
  const outputFormat: OutputFormat = globals.outputFormat ?? (globals.json === true ? 'json' : 'text');
  const json = isJsonFormat(outputFormat);
  let config: CbtConfig | undefined;
  const args: Record<string, unknown> = {};
  (def.params ?? []).forEach((p, i) => {
    args[p.name] = command.processedArgs[i];
  });
  const ctx: CommandContext = {
    args,
    opts: command.opts(),
    json,
    outputFormat,
    configPath: globals.config,
    env,
    loadConfig: () => (config ??= loadConfig({ path: globals.config, env })),
    out: {
      line: (text) => {
        if (!json) opts.stdout.write(`${text}\n`);
      },
      json: (value) => {
        if (json) opts.stdout.write(`${JSON.stringify(value)}\n`);
      },
    },
    progress: (label, total, o) => createProgressReporter({ label, total, stream: opts.stderr, json, unit: o?.unit }),
    signal,
    now,
    stdout: opts.stdout,
    stderr: opts.stderr,
  };
  let result: CommandResult | void;
  try {
    result = await def.run?.(ctx);
  } catch (err) {
    return write(renderError(err, outputFormat, env), opts.stdout, opts.stderr);
  }
  return write(renderResult(result, outputFormat, env), opts.stdout, opts.stderr);
}
