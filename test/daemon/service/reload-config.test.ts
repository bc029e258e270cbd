/** What a reload applies now and what waits for a restart (pure), and the sd_notify arguments. */
import { validateConfig } from '../../../daemon/config/load-config';
import { planReload, RESTART_KEYS } from '../../../daemon/service/reload-config';
import { notifyArgs, sdNotify } from '../../../daemon/service/sd-notify';

const NOW = new Date(2026, 10, 25, 12, 0, 0);
const base = { repository: '/tmp/pve-cbt-reload-test-repo', stateDir: '/tmp' };
const running = validateConfig(base, 'x', NOW);

test.each<[string, Record<string, unknown>, string[], string[]]>([
  ['nothing changed', {}, [], []],
  ['a new job', { jobs: [{ id: 'nightly', vms: 'all', schedule: 'daily 02:00' }] }, ['jobs'], []],
  ['verify schedule and log level', { verify: { schedule: 'sat 03:00' }, logLevel: 'debug' }, ['logLevel', 'verify'], []],
  ['notify', { notify: { on: 'always' } }, ['notify'], []],
  ['concurrency and chunk size need a restart', { concurrency: 4, chunkSize: 131072 }, [], ['chunkSize', 'concurrency']],
  ['socket and log dir need a restart, a job applies', { socketPath: '/run/pve-cbt/other.sock', logDir: '/tmp', jobs: [{ id: 'a', vms: 'all', schedule: 'daily' }] }, ['jobs'], ['logDir', 'socketPath']],
])('%s', (_name, change, applied, needRestart) => {
  const plan = planReload(running, validateConfig({ ...base, ...change }, 'x', NOW));
  expect(plan.applied).toEqual(applied);
  expect(plan.needRestart).toEqual(needRestart);
  for (const k of RESTART_KEYS) expect(plan.config[k]).toEqual(running[k]);
  for (const k of applied) expect(plan.config[k as keyof typeof plan.config]).toEqual(validateConfig({ ...base, ...change }, 'x', NOW)[k as keyof typeof plan.config]);
  expect(Object.isFrozen(plan.config)).toBe(true);
});

test('notifyArgs: one KEY=VALUE argument per field, newlines flattened', () => {
  expect(notifyArgs({ READY: '1', STATUS: 'ready\nnow' })).toEqual(['READY=1', 'STATUS=ready now']);
});

test('without NOTIFY_SOCKET nothing is sent', async () => {
  expect(await sdNotify({ READY: '1' }, { env: { PATH: process.env.PATH } })).toBe(false);
});
