/**
 * Every `pve-cbt` command, in the order `pve-cbt --help` lists them. To add a command: write
 * `commands/<name>.ts` exporting a definition (see command.ts) and add its loader to
 * command-loaders.ts (the executable loads only the command it runs; this list loads them all).
 */
import type { CommandDefinition } from './command';
import { COMMAND_LOADERS } from './command-loaders';

export const COMMANDS: readonly CommandDefinition[] = COMMAND_LOADERS.map((l) => l.load());
