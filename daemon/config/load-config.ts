/**
 * Loads the pve-cbt config once at start: finds the file (explicit `--config` path, then
 * `$PVE_CBT_CONFIG`, then `/etc/pve-cbt/config.json`), parses it, validates it against
 * CONFIG_SCHEMA with defaults filled in, runs the checks a schema cannot express, and returns a
 * deep-frozen `CbtConfig`. Only an absent *default* file is allowed (it means "all defaults"); a
 * named file that is missing is an error, because a typo there would silently run on defaults.
 * A repository outside stateDir must have an existing parent directory (see semanticProblems); the
 * configured directories and the socket path are checked on the file system (config-path-problems.ts).
 * Every refusal is CBT_CONFIG_INVALID with `{ file, keyPath, problem, hint, problems }`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CONFIG_ENV, DEFAULT_CONFIG_PATH } from '../../shared/config/defaults';
import { isCbtError } from '../../shared/errors/cbt-error';
import { nextRun, parseCalendarEvent } from '../schedule/calendar-event';
import { ConfigInvalidError, type ConfigProblem } from './config-errors';
import { configPathProblems, directoryProblem } from './config-path-problems';
import { problemsFromAjv } from './config-problems';
import type { CbtConfig } from './config-schema';
import { configValidator } from './config-validator';
import { isS3Url, parseS3Url } from '../repository/s3-url';

export interface LoadConfigOptions {
  /** `--config`; wins over the environment. */
  path?: string;
  /** Defaults to process.env; only PVE_CBT_CONFIG is read. */
  env?: NodeJS.ProcessEnv;
  /** "Now" for the check that every schedule fires again; tests pin it. */
  now?: Date;
}

export interface ConfigLocation {
  file: string;
  /** Where the path came from: a missing file is only tolerated for 'default'. */
  source: 'option' | 'env' | 'default';
}

export function resolveConfigPath(opts: Pick<LoadConfigOptions, 'path' | 'env'> = {}): ConfigLocation {
  if (opts.path) return { file: path.resolve(opts.path), source: 'option' };
  const fromEnv = (opts.env ?? process.env)[CONFIG_ENV];
  if (fromEnv) return { file: path.resolve(fromEnv), source: 'env' };
  return { file: DEFAULT_CONFIG_PATH, source: 'default' };
}

function refuse(file: string, problems: ConfigProblem[]): never {
  throw ConfigInvalidError({ file, ...problems[0], problems });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

function jsonSyntaxProblem(text: string, err: Error): ConfigProblem {
  const pos = /position (\d+)/.exec(err.message);
  let where = '';
  if (pos) {
    const before = text.slice(0, Number(pos[1]));
    const line = before.split('\n').length;
    where = ` at line ${line}, column ${Number(pos[1]) - before.lastIndexOf('\n')}`;
  }
  return { keyPath: '', problem: `not valid JSON${where}: ${err.message}`, hint: 'JSON allows no comments and no trailing commas' };
}

/**
 * Calendar syntax of every job that has a string schedule. Also run when the schema check failed,
 * so a file with several mistakes is reported whole; hence the defensive reading of `data`.
 */
function scheduleProblems(data: unknown, now: Date): ConfigProblem[] {
  const jobs = (data as { jobs?: unknown } | null)?.jobs;
  if (!Array.isArray(jobs)) return [];
  const problems: ConfigProblem[] = [];
  jobs.forEach((job: unknown, i) => {
    const schedule = (job as { schedule?: unknown } | null)?.schedule;
    if (typeof schedule !== 'string') return;
    try {
      if (nextRun(parseCalendarEvent(schedule), now) === null) {
        problems.push({ keyPath: `/jobs/${i}/schedule`, problem: `'${schedule}' never fires again`, hint: "example: 'daily 02:00'" });
      }
    } catch (err) {
      if (!isCbtError(err)) throw err;
      const d = err.details as { position: number; problem: string; hint: string };
      problems.push({ keyPath: `/jobs/${i}/schedule`, problem: `'${schedule}': ${d.problem} (at character ${d.position + 1})`, hint: d.hint });
    }
  });
  return problems;
}

/**
 * The daemon creates stateDir and what is below it; a repository elsewhere whose parent is missing
 * is most often a backup disk that is not mounted, and must not be silently created on the root fs.
 */
function localRepositoryProblems(config: CbtConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const parent = path.dirname(config.repository);
  const insideStateDir = (parent + '/').startsWith(path.resolve(config.stateDir) + '/');
  const repoProblem = directoryProblem('/repository', config.repository);
  let parentIsDir = false;
  try {
    parentIsDir = fs.statSync(parent).isDirectory();
  } catch {
    // missing, or below a file: reported below
  }
  if (repoProblem) {
    problems.push(repoProblem);
  } else if (!insideStateDir && !parentIsDir) {
    problems.push({
      keyPath: '/repository',
      problem: `the parent directory ${parent} of the repository does not exist`,
      hint: `create ${parent} (e.g. mount the backup disk there) or point repository elsewhere`,
    });
  }
  return problems;
}

/** An s3:// repository needs a valid URL and the `s3` endpoint and keys. */
function s3RepositoryProblems(config: CbtConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  try {
    parseS3Url(config.repository);
  } catch (err) {
    if (!isCbtError(err)) throw err;
    problems.push({ keyPath: '/repository', problem: err.message, hint: 'example: s3://pve-backups/cluster-a' });
  }
  if (!config.s3) {
    problems.push({
      keyPath: '/s3',
      problem: `repository ${config.repository} is on S3 but the config has no s3 section`,
      hint: 'add "s3": {"endpoint": "http://HOST:PORT", "accessKey": "...", "secretKey": "..."}',
    });
  }
  return problems;
}

/** Checks beyond the schema; `config` already has its defaults. */
function semanticProblems(config: CbtConfig, now: Date): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  problems.push(...(isS3Url(config.repository) ? s3RepositoryProblems(config) : localRepositoryProblems(config)));
  problems.push(...configPathProblems(config));
  const ids = new Map<string, number>();
  config.jobs.forEach((job, i) => {
    const first = ids.get(job.id);
    if (first !== undefined) {
      problems.push({ keyPath: `/jobs/${i}/id`, problem: `duplicate job id '${job.id}' (also /jobs/${first}/id)`, hint: 'job ids must be unique' });
    } else {
      ids.set(job.id, i);
    }
  });
  problems.push(...scheduleProblems(config, now));
  return problems;
}

/** Validates an already-parsed config object (not mutated); `file` is only used in messages. */
export function validateConfig(raw: unknown, file: string, now: Date = new Date()): CbtConfig {
  const validate = configValidator();
  const data: unknown = structuredClone(raw);
  if (!validate(data)) {
    const fromSchema = problemsFromAjv(validate.errors ?? []);
    const extra = scheduleProblems(data, now).filter((p) => !fromSchema.some((q) => q.keyPath === p.keyPath));
    refuse(file, [...fromSchema, ...extra]);
  }
  const config = data as CbtConfig;
  const problems = semanticProblems(config, now);
  if (problems.length > 0) refuse(file, problems);
  return deepFreeze(config);
}

export function loadConfig(opts: LoadConfigOptions = {}): CbtConfig {
  const { file, source } = resolveConfigPath(opts);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && source === 'default') return validateConfig({}, file, opts.now);
    const how = source === 'option' ? 'given with --config' : `named by ${CONFIG_ENV}`;
    refuse(file, [
      {
        keyPath: '',
        problem: code === 'ENOENT' ? `the file ${how} does not exist` : `cannot read the file: ${(err as Error).message}`,
        hint: code === 'ENOENT' ? `check the path, or omit it to use ${DEFAULT_CONFIG_PATH}` : 'check its permissions',
      },
    ]);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    refuse(file, [jsonSyntaxProblem(text, err as Error)]);
  }
  return validateConfig(raw, file, opts.now);
}
