import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { IpcUnavailableError } from '../../../shared/ipc/ipc-errors';
import { defineCommand, type CommandDefinition } from '../../../daemon/cli/command';
import { ExitCode } from '../../../daemon/cli/exit-codes';
import { parseVmid } from '../../../daemon/cli/option-parsers';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function sink(): PassThrough & { text(): string; isTTY?: boolean } {
  const s = new PassThrough() as PassThrough & { text(): string; isTTY?: boolean };
  const chunks: Buffer[] = [];
  s.on('data', (c: Buffer) => chunks.push(c));
  s.text = () => Buffer.concat(chunks).toString('utf8');
  return s;
}

async function run(argv: string[], commands: readonly CommandDefinition[] = COMMANDS, signal?: AbortSignal) {
  const stdout = sink();
  const stderr = sink();
  const code = await runCli({ argv, commands, stdout, stderr, env: { PVE_CBT_CONFIG: path.join(tmp, 'config.json') }, signal });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}

// Commands that exercise the framework itself; the real ones are tested below.
const seen: Record<string, unknown>[] = [];
const testCommands: CommandDefinition[] = [
  defineCommand<{ disk?: string; format: string }, { vmids: number[] }>({
    name: 'backup',
    summary: 'test backup',
    params: [{ name: 'vmids', description: 'VMs', required: true, variadic: true, parse: parseVmid }],
    options: [
      { flags: '--disk <disk>', description: 'one disk' },
      { flags: '--format <fmt>', description: 'format', choices: ['raw', 'qcow2'], default: 'raw' },
    ],
    async run(ctx) {
      seen.push({ args: ctx.args, opts: ctx.opts, json: ctx.json });
      const p = ctx.progress('backup', 100);
      p.update(100);
      p.finish();
      return { data: { id: 'b1', vmids: ctx.args.vmids }, text: `backed up ${ctx.args.vmids.join(', ')}` };
    },
  }),
  defineCommand({ name: 'verify', summary: 'finds problems', usage: '[options] [backup]', run: async () => ({ data: { bad: 1 }, text: '1 bad chunk', exitCode: ExitCode.Partial }) }),
  defineCommand({
    name: 'status',
    summary: 'needs the daemon',
    run: async () => {
      throw IpcUnavailableError({ socketPath: '/run/pve-cbt/pve-cbt.sock', errno: 'ENOENT' });
    },
  }),
  defineCommand({
    name: 'crash',
    summary: 'a bug',
    run: async () => {
      throw new TypeError('undefined is not a function');
    },
  }),
  defineCommand({
    name: 'wait',
    summary: 'runs until interrupted',
    run: async (ctx) => {
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
      return { text: 'stopped' };
    },
  }),
  defineCommand({ name: 'hooks', summary: 'group', subcommands: [defineCommand({ name: 'install', summary: 'inst', run: async () => ({ text: 'ok' }) })] }),
];

describe('framework', () => {
  test('help is generated from definitions and lists exit codes', async () => {
    const r = await run(['--help'], testCommands);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/backup \[options\] <vmids\.\.\.>\s+test backup/);
    expect(r.stdout).toMatch(/3\s+config-invalid/);
    expect((await run(['verify', '--help'], testCommands)).stdout).toMatch(/^Usage: pve-cbt verify \[options\] \[backup\]$/m);
    const sub = await run(['backup', '--help'], testCommands);
    expect(sub.stdout).toMatch(/--format <fmt>\s+format \(choices: "raw", "qcow2", default: "raw"\)/);
  });

  test('params are parsed, variadic collected, options and globals given before or after the command', async () => {
    seen.length = 0;
    const r = await run(['backup', '101', '102', '--disk', 'scsi0', '--json'], testCommands);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ ok: true, id: 'b1', vmids: [101, 102] });
    expect(r.stdout.trimEnd().split('\n')).toHaveLength(1); // --json is one line, like --output-format json
    expect(r.stderr).toBe(''); // progress is silent with --json
    expect(seen[0]).toEqual({ args: { vmids: [101, 102] }, opts: { disk: 'scsi0', format: 'raw' }, json: true });
    const human = await run(['--json', 'backup', '101'], testCommands);
    expect(JSON.parse(human.stdout)).toEqual({ ok: true, id: 'b1', vmids: [101] });
  });

  test('--output-format json|json-pretty|text, before or after the command; --json is json', async () => {
    const json = await run(['backup', '101', '--output-format', 'json'], testCommands);
    expect(json.stdout).toBe('{"ok":true,"id":"b1","vmids":[101]}\n');
    expect(json.stderr).toBe('');
    const pretty = await run(['--output-format=json-pretty', 'backup', '101'], testCommands);
    expect(pretty.stdout).toBe(`${JSON.stringify({ ok: true, id: 'b1', vmids: [101] }, null, 2)}\n`);
    const text = await run(['backup', '101', '--output-format', 'text'], testCommands);
    expect(text.stdout).toBe('backed up 101\n');
    const bad = await run(['backup', '101', '--output-format', 'yaml'], testCommands);
    expect(bad.code).toBe(ExitCode.Usage);
    expect(bad.stderr).toMatch(/argument 'yaml' is invalid.*Allowed choices are text, json, json-pretty/);
    const both = await run(['backup', '101', '--json', '--output-format', 'text'], testCommands);
    expect(both.code).toBe(ExitCode.Usage);
    expect(both.stderr).toMatch(/--json and --output-format text contradict each other/);
    // A usage error is JSON when JSON was asked for in either spelling.
    const usage = JSON.parse((await run(['backup', '--nope', '--output-format', 'json-pretty'], testCommands)).stdout) as { ok: boolean; error: { code: string } };
    expect(usage).toMatchObject({ ok: false, error: { code: 'CBT_CLI_USAGE' } });
  });

  test('human output prints text; progress goes to stderr as plain lines off a TTY', async () => {
    const r = await run(['backup', '101'], testCommands);
    expect(r.stdout).toBe('backed up 101\n');
    expect(r.stderr).toMatch(/^backup: 100 B\/100 B \(100%\)/);
  });

  test.each<[string, string[], RegExp]>([
    ['unknown command', ['nope'], /unknown command 'nope'/],
    ['unknown command with --help', ['nope', '--help'], /unknown command 'nope'/],
    ['unknown command after --config', ['--config', '/x.json', 'nope', '-h'], /unknown command 'nope'/],
    ['unknown option', ['backup', '101', '--nope'], /unknown option '--nope'/],
    ['missing argument', ['backup'], /missing required argument 'vmids'/],
    ['bad parameter value', ['backup', '12'], /'12' is not a VM id/],
    ['bad choice', ['backup', '101', '--format', 'vmdk'], /argument 'vmdk' is invalid/],
  ])('usage error (%s): exit 2, CBT_CLI_USAGE, JSON on stdout with --json', async (_name, argv, message) => {
    const human = await run(argv, testCommands);
    expect(human.code).toBe(ExitCode.Usage);
    expect(human.stdout).toBe('');
    expect(human.stderr).toMatch(message);
    expect(human.stderr).toMatch(/\(CBT_CLI_USAGE\)/);
    const json = await run([...argv, '--json'], testCommands);
    expect(json.code).toBe(ExitCode.Usage);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; error: { code: string; message: string } };
    expect(parsed.ok).toBe(false);
    expect(parsed.error.code).toBe('CBT_CLI_USAGE');
    expect(parsed.error.message).toMatch(message);
  });

  test('no command, or a group without its subcommand: help on stderr, exit 2', async () => {
    const none = await run([], testCommands);
    expect(none.code).toBe(ExitCode.Usage);
    expect(none.stderr).toMatch(/Commands:/);
    const group = await run(['hooks'], testCommands);
    expect(group.code).toBe(ExitCode.Usage);
    expect(group.stderr).toMatch(/install/);
    expect((await run(['hooks', 'install'], testCommands)).stdout).toBe('ok\n');
  });

  test('a partial result exits 5 and still prints its data', async () => {
    const r = await run(['verify', '--json'], testCommands);
    expect(r.code).toBe(ExitCode.Partial);
    expect(JSON.parse(r.stdout)).toEqual({ ok: false, bad: 1 });
  });

  test('daemon unreachable: exit 4 with the error code and details', async () => {
    const human = await run(['status'], testCommands);
    expect(human.code).toBe(ExitCode.DaemonUnavailable);
    expect(human.stderr).toMatch(/^pve-cbt: pve-cbt daemon is not reachable on \/run\/pve-cbt\/pve-cbt.sock/);
    const json = await run(['status', '--json'], testCommands);
    expect(JSON.parse(json.stdout)).toEqual({
      ok: false,
      error: { code: 'CBT_IPC_UNAVAILABLE', message: expect.any(String), details: { socketPath: '/run/pve-cbt/pve-cbt.sock', errno: 'ENOENT' } },
    });
  });

  test('a non-CbtError is an internal error: exit 1, no stack unless PVE_CBT_DEBUG', async () => {
    const r = await run(['crash'], testCommands);
    expect(r.code).toBe(ExitCode.Failure);
    expect(r.stderr).toMatch(/internal error: undefined is not a function/);
    expect(r.stderr).toMatch(/PVE_CBT_DEBUG=1/);
    expect(JSON.parse((await run(['crash', '--json'], testCommands)).stdout).error.code).toBe('CBT_INTERNAL');
  });

  test('the signal reaches the command', async () => {
    const ac = new AbortController();
    const pending = run(['wait'], testCommands, ac.signal);
    setTimeout(() => ac.abort(), 20);
    expect((await pending).stdout).toBe('stopped\n');
  });

  test('every registered command is well-formed and has help', async () => {
    const names = COMMANDS.map((c) => c.name);
    expect(new Set(names).size).toBe(names.length);
    for (const c of COMMANDS) {
      expect(c.summary).toBeTruthy();
      expect(Boolean(c.run) || Boolean(c.subcommands?.length)).toBe(true);
      expect((await run([c.name, '--help'])).code).toBe(0);
    }
  });
});

describe('config check', () => {
  test('valid config: exit 0, effective config in JSON', async () => {
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify({ repository: path.join(tmp, 'repo'), jobs: [{ id: 'n', vms: 'all', schedule: 'daily' }] }));
    const r = await run(['config', 'check', '--json']);
    expect(r.code).toBe(0);
    const out = (JSON.parse(r.stdout) as { ok: boolean; config: { repository: string; chunkSize: number } });
    expect(out.ok).toBe(true);
    expect(out.config.repository).toBe(path.join(tmp, 'repo'));
    // Unset: the repository's own chunk size applies (64 KiB in format 2, 256 KiB in format 1).
    expect(out.config.chunkSize).toBeUndefined();
    expect((await run(['config', 'check'])).stdout).toMatch(/is valid\n.*\njobs: 1\n  n: daily, next run \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$/);
  });

  test('no config file at the default path: says so, and that the values are defaults', async () => {
    expect(fs.existsSync('/etc/pve-cbt/config.json')).toBe(false);
    const check = async (argv: string[]) => {
      const stdout = sink();
      const code = await runCli({ argv, commands: COMMANDS, stdout, stderr: sink(), env: {} });
      return { code, stdout: stdout.text() };
    };
    const human = await check(['config', 'check']);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^no config file \(\/etc\/pve-cbt\/config\.json does not exist\), defaults\n/);
    expect(human.stdout).not.toMatch(/is valid/);
    const json = (JSON.parse((await check(['config', 'check', '--json'])).stdout) as { ok: boolean; file: string; fileExists: boolean });
    expect(json).toMatchObject({ ok: true, file: '/etc/pve-cbt/config.json', fileExists: false });
    fs.writeFileSync(path.join(tmp, 'config.json'), '{}');
    expect(JSON.parse((await run(['config', 'check', '--json'])).stdout)).toMatchObject({ ok: true, fileExists: true });
  });

  test('invalid config: exit 3 with key path and hint, for people and for --json', async () => {
    const file = path.join(tmp, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ jobs: [{ id: 'n', vms: 'all', schedule: 'mon..fri 25:00' }], compresion: 'none' }));
    const human = await run(['--config', file, 'config', 'check']);
    expect(human.code).toBe(ExitCode.ConfigInvalid);
    expect(human.stderr).toMatch(/is invalid at \/compresion: unknown key 'compresion'\n  hint: did you mean 'compression'\?/);
    expect(human.stderr).toMatch(/also:\n    \/jobs\/0\/schedule: 'mon\.\.fri 25:00': hour 25 out of range/);
    const json = await run(['config', 'check', '--config', file, '--json']);
    expect(json.code).toBe(ExitCode.ConfigInvalid);
    const err = (JSON.parse(json.stdout) as { error: { code: string; details: { keyPath: string; hint: string; file: string } } }).error;
    expect(err.code).toBe('CBT_CONFIG_INVALID');
    expect(err.details).toMatchObject({ keyPath: '/compresion', file });
  });
});

describe('log', () => {
  const entry = (message: string, over: Record<string, unknown> = {}) =>
    JSON.stringify({ level: 'info', message, timestamp: new Date().toISOString(), ...over });

  beforeEach(() => {
    const day = new Date().toISOString().slice(0, 10);
    fs.mkdirSync(path.join(tmp, 'logs'));
    fs.writeFileSync(
      path.join(tmp, 'logs', `pve-cbt-${day}.log`),
      [
        entry('old', { vmid: 101, timestamp: new Date(Date.now() - 5 * 3600_000).toISOString() }),
        entry('mode incremental', { vmid: 101, disk: 'scsi0', jobId: 'nightly' }),
        entry('other vm', { vmid: 102, jobId: 'nightly' }),
        entry('failed', { vmid: 101, level: 'error' }),
        '',
      ].join('\n'),
    );
    fs.writeFileSync(path.join(tmp, 'config.json'), JSON.stringify({ logDir: path.join(tmp, 'logs') }));
  });

  test('--vm --since shows exactly that VM within the window, as lines', async () => {
    const r = await run(['log', '--vm', '101', '--since', '2h']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\S+Z info  vm=101 disk=scsi0 job=nightly mode incremental$/);
    expect(lines[1]).toMatch(/error vm=101 failed$/);
  });

  test('--json prints parseable JSON lines; --job and --level filter', async () => {
    const r = await run(['log', '--json', '--job', 'nightly']);
    const parsed = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { message: string });
    expect(parsed.map((e) => e.message)).toEqual(['mode incremental', 'other vm']);
    const warn = await run(['log', '--json', '--level', 'warn']);
    expect(warn.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { message: string }).message)).toEqual(['failed']);
  });

  test('--dir overrides the config; a bad --since is a usage error', async () => {
    const r = await run(['log', '--dir', path.join(tmp, 'logs'), '--vm', '102', '--json']);
    expect(JSON.parse(r.stdout.trim())).toMatchObject({ message: 'other vm' });
    const bad = await run(['log', '--since', 'yesterday']);
    expect(bad.code).toBe(ExitCode.Usage);
    expect(bad.stderr).toMatch(/cannot read 'yesterday' as a time/);
  });

  test('--follow prints history then stops cleanly on the signal', async () => {
    const ac = new AbortController();
    const pending = run(['log', '--follow', '--vm', '102'], COMMANDS, ac.signal);
    setTimeout(() => ac.abort(), 200);
    const r = await pending;
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/vm=102 job=nightly other vm\n$/);
  });
});
