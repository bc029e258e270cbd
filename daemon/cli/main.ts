#!/usr/bin/env node
/**
 * The `pve-cbt` executable (package.json `bin`, compiled to dist/daemon/cli/main.js). It only wires
 * the process to run-cli: argv, stdio, env, and SIGINT/SIGTERM as an AbortSignal (a second signal
 * exits at once with 130). The exit code is set and output flushed before the process exits.
 */
import fs from 'node:fs';
import path from 'node:path';
import { commandsFor } from './command-loaders';
import { runCli } from './run-cli';
import { CliInterruptedError } from './cli-errors';
import { traceNow, traceSince } from '../../shared/trace/trace-spans';

const loaded = traceNow();
traceSince('cli.load', performance.timeOrigin);

function packageVersion(): string | undefined {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version?: string }).version;
  }
  return undefined;
}

// `pve-cbt list | head` closes stdout early: that is the reader's choice, not an error.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

const abort = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (abort.signal.aborted) process.exit(130);
    abort.abort(CliInterruptedError({ signal: sig }));
  });
}

runCli({
  argv: process.argv.slice(2),
  commands: commandsFor(process.argv.slice(2)),
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: abort.signal,
  version: packageVersion(),
}).then(
  (code) => {
    // Exit once stdout has drained, so piped output is complete even if a library left a handle open.
    process.exitCode = code;
    traceSince('cli.run', loaded);
    process.stdout.write('', () => {
      traceSince('cli.process', performance.timeOrigin);
      process.exit(code);
    });
  },
  (err: unknown) => {
    process.stderr.write(`pve-cbt: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
