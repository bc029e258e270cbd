import { defineError } from '../../shared/errors/cbt-error';

/** One refused value: where (`/jobs/0/schedule`, '' for the whole file), what is wrong, how to fix it. */
export type ConfigProblem = {
  keyPath: string;
  problem: string;
  hint: string;
};

/**
 * The config file cannot be used. The details describe the first problem; `problems` lists all of
 * them when there are several, so an admin fixes the file in one go.
 */
export const ConfigInvalidError = defineError<ConfigProblem & { file: string; problems: ConfigProblem[] }>(
  'CBT_CONFIG_INVALID',
  (d) => `config ${d.file} is invalid${d.keyPath ? ` at ${d.keyPath}` : ''}: ${d.problem}`,
);
