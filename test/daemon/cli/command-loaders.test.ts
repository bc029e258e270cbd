import { PassThrough } from 'node:stream';
import { COMMAND_LOADERS, commandWord, loadersFor } from '../../../daemon/cli/command-loaders';
import { COMMANDS } from '../../../daemon/cli/registry';
import { runCli } from '../../../daemon/cli/run-cli';

test('each loader loads the command it is named after, in the order of the help listing', () => {
  expect(COMMAND_LOADERS.map((l) => l.load().name)).toEqual(COMMAND_LOADERS.map((l) => l.name));
  expect(COMMANDS.map((c) => c.name)).toEqual(COMMAND_LOADERS.map((l) => l.name));
  expect(new Set(COMMAND_LOADERS.map((l) => l.name)).size).toBe(COMMAND_LOADERS.length);
});

test.each([
  [['backup', '101', '--json'], 'backup'],
  [['--json', 'backup', '101'], 'backup'],
  [['--config', '/x.json', 'status'], 'status'],
  [['--output-format', 'json', 'list', '101'], 'list'],
  [['--config', 'backup'], undefined], // the config file is named "backup"
  [['--json'], undefined],
  [[], undefined],
  [['--', 'task', 'list'], 'task'],
  [['help', 'backup'], 'help'],
])('commandWord(%j) = %j', (argv, word) => {
  expect(commandWord(argv)).toBe(word);
});

test.each([
  [['backup', '101', '--json'], ['backup']],
  [['--json', 'task', 'list'], ['task']],
  [['backup', '--help'], ['backup']],
  [['--version'], []],
  [['--version', '--help'], 'all'],
  [[], 'all'],
  [['--json'], 'all'],
  [['help', 'backup'], 'all'],
  [['backpu', '101'], 'all'], // an unknown word gets commander's suggestion among all commands
])('loadersFor(%j) loads %j', (argv, names) => {
  const got = loadersFor(argv).map((l) => l.name);
  expect(got).toEqual(names === 'all' ? COMMAND_LOADERS.map((l) => l.name) : names);
});

async function run(argv: string[], commands = COMMANDS) {
  const out = new PassThrough();
  const err = new PassThrough();
  const chunks: string[] = [];
  out.on('data', (c: Buffer) => chunks.push(c.toString()));
  err.on('data', (c: Buffer) => chunks.push(c.toString()));
  const code = await runCli({ argv, commands, stdout: out, stderr: err, env: { PVE_CBT_CONFIG: '/nonexistent/config.json' }, version: '9.9.9' });
  return { code, text: chunks.join('') };
}

test.each([[['backup', '--help']], [['--json', 'restore', '--help']], [['--version']], [['backup']], [['task', 'nosuch']]])(
  '%j: the same exit code and output with only the loaded commands as with all of them',
  async (...argv) => {
    const words = argv[0];
    const lazy = await run(words, loadersFor(words).map((l) => l.load()));
    const all = await run(words);
    expect(lazy).toEqual(all);
    expect(all.text.length).toBeGreaterThan(0);
  },
);
