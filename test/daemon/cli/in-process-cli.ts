/**
 * The real CLI run in-process, as the command tests drive it: the command registry, stdout and
 * stderr captured as text, the exit code; and the config of a local repository in a test's
 * temporary directory (state, log and socket beside it).
 */
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';

export type TextSink = PassThrough & { text(): string };

/** A stream that keeps what was written to it; `text()` is all of it as UTF-8. */
export function textSink(): TextSink {
  const s = new PassThrough() as TextSink;
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.text = () => Buffer.concat(chunks).toString('utf8');
  return s;
}

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** `pve-cbt ARGV` with every registered command, in this process, with `env` as its environment. */
export async function runCliInProcess(argv: string[], env: NodeJS.ProcessEnv): Promise<CliRun> {
  const stdout = textSink();
  const stderr = textSink();
  const code = await runCli({ argv, commands: COMMANDS, stdout, stderr, env });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

/** Writes `tmp/config.json` for a local repository at `tmp/repo` with the given chunk size. */
export function writeLocalRepoConfig(tmp: string, chunkSize: number): { repoDir: string; configFile: string } {
  const repoDir = path.join(tmp, 'repo');
  const config = { repository: repoDir, stateDir: path.join(tmp, 'state'), logDir: path.join(tmp, 'log'), socketPath: path.join(tmp, 'run', 's.sock'), chunkSize };
  const configFile = path.join(tmp, 'config.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  return { repoDir, configFile };
}
