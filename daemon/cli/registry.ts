/**
 * Every `pve-cbt` command, in the order `pve-cbt --help` lists them. To add a command: write
 * `commands/<name>.ts` exporting a definition (see command.ts) and add it here.
 */
import type { CommandDefinition } from './command';
import { backupCommand } from './commands/backup';
import { catalogCommand } from './commands/catalog';
import { configCommand } from './commands/config';
import { daemonCommand } from './commands/daemon';
import { demoCommand } from './commands/demo';
import { forgetCommand } from './commands/forget';
import { gcCommand } from './commands/gc';
import { hooksCommand } from './commands/hooks';
import { keyCommand } from './commands/key';
import { listCommand } from './commands/list';
import { logCommand } from './commands/log';
import { notifyCommand } from './commands/notify';
import { pruneCommand } from './commands/prune';
import { repositoryCommand } from './commands/repository';
import { restoreCommand } from './commands/restore';
import { serveCommand } from './commands/serve';
import { showCommand } from './commands/show';
import { statusCommand } from './commands/status';
import { taskCommand } from './commands/task';
import { verifyCommand } from './commands/verify';

export const COMMANDS: readonly CommandDefinition[] = [
  daemonCommand,
  statusCommand,
  backupCommand,
  taskCommand,
  listCommand,
  showCommand,
  restoreCommand,
  serveCommand,
  verifyCommand,
  pruneCommand,
  forgetCommand,
  gcCommand,
  repositoryCommand,
  keyCommand,
  catalogCommand,
  logCommand,
  notifyCommand,
  hooksCommand,
  configCommand,
  demoCommand,
];
