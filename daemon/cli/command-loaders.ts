/**
 * Every `pve-cbt` command as a loader, in the order `pve-cbt --help` lists them (registry.ts builds
 * its list from this one). `pve-cbt backup 101` loads only `commands/backup` and what it imports,
 * not the daemon, the repository, SQLite or winston that other commands need: a CLI start costs
 * what its own command costs (docs/incremental-path.md). `commandsFor` picks the definitions one
 * command line needs; help, an unknown word or no command word at all get every command.
 */
import type { CommandDefinition } from './command';

export interface CommandLoader {
  readonly name: string;
  load(): CommandDefinition;
}

/* eslint-disable @typescript-eslint/no-require-imports */
const def = (name: string, load: () => unknown): CommandLoader => ({ name, load: () => load() as CommandDefinition });

export const COMMAND_LOADERS: readonly CommandLoader[] = [
  def('daemon', () => require('./commands/daemon').daemonCommand),
  def('status', () => require('./commands/status').statusCommand),
  def('backup', () => require('./commands/backup').backupCommand),
  def('task', () => require('./commands/task').taskCommand),
  def('list', () => require('./commands/list').listCommand),
  def('show', () => require('./commands/show').showCommand),
  def('restore', () => require('./commands/restore').restoreCommand),
  def('serve', () => require('./commands/serve').serveCommand),
  def('verify', () => require('./commands/verify').verifyCommand),
  def('prune', () => require('./commands/prune').pruneCommand),
  def('forget', () => require('./commands/forget').forgetCommand),
  def('gc', () => require('./commands/gc').gcCommand),
  def('repository', () => require('./commands/repository-unlock').withUnlock(require('./commands/repository').repositoryCommand)),
  def('key', () => require('./commands/key').keyCommand),
  def('catalog', () => require('./commands/catalog').catalogCommand),
  def('log', () => require('./commands/log').logCommand),
  def('notify', () => require('./commands/notify').notifyCommand),
  def('hooks', () => require('./commands/hooks').hooksCommand),
  def('config', () => require('./commands/config').configCommand),
  def('demo', () => require('./commands/demo').demoCommand),
];
/* eslint-enable @typescript-eslint/no-require-imports */

/** Global options that take a value (run-cli.ts): their value is not the command word. */
const VALUE_OPTIONS = new Set(['--config', '--output-format']);

/** The first word that is not an option or an option's value (`--json backup 101` → `backup`). */
export function commandWord(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') return argv[i + 1];
    if (VALUE_OPTIONS.has(argv[i])) i++;
    else if (!argv[i].startsWith('-')) return argv[i];
  }
  return undefined;
}

/**
 * What to load for one command line: the named command alone; nothing for a bare `--version`;
 * every command otherwise (root help, `help`, an unknown word with its suggestion).
 */
export function loadersFor(argv: readonly string[], loaders: readonly CommandLoader[] = COMMAND_LOADERS): readonly CommandLoader[] {
  const word = commandWord(argv);
  if (word === undefined) return argv.includes('--version') && !argv.includes('--help') && !argv.includes('-h') ? [] : loaders;
  const one = loaders.find((l) => l.name === word);
  return one ? [one] : loaders;
}

export function commandsFor(argv: readonly string[], loaders: readonly CommandLoader[] = COMMAND_LOADERS): CommandDefinition[] {
  return loadersFor(argv, loaders).map((l) => l.load());
}
