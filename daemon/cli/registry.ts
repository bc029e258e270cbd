/**
 * Every `pve-cbt` command, in the order `pve-cbt --help` lists them. To add a command: write
 * `commands/<name>.ts` exporting a definition (see command.ts) and add it here.
 */
import type { CommandDefinition } from './command';
import { configCommand } from './commands/config';
import { logCommand } from './commands/log';

export const COMMANDS: readonly CommandDefinition[] = [logCommand, configCommand];
