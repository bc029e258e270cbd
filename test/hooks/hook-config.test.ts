import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HOOK_DEFAULTS, hookConfigPath, readHookConfig } from '../../hooks/hook-config';

describe('hook config', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cbt-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const withFile = (text: string | null, baked?: string): ReturnType<typeof readHookConfig> => {
    const file = path.join(dir, `c-${Math.random()}.json`);
    if (text !== null) fs.writeFileSync(file, text);
    return readHookConfig({ PVE_CBT_CONFIG: file }, baked);
  };

  test.each([
    ['missing file: defaults, silently', null, {}, []],
    ['not JSON', '{socketPath:', {}, [/unreadable/]],
    ['not an object', '[1]', {}, [/not a JSON object/]],
    ['keys taken, unknown keys ignored (the daemon validates them)', '{"socketPath":"/r/s.sock","stateDir":"/s","qemuServerRunDir":"/q","hookTimeoutMs":800,"strictHooks":true,"repository":"/x"}',
      { socketPath: '/r/s.sock', stateDir: '/s', qemuServerRunDir: '/q', hookTimeoutMs: 800, strictHooks: true }, []],
    ['relative path refused', '{"stateDir":"var/lib"}', {}, [/stateDir must be an absolute path/]],
    ['timeout clamped to the hard bound', '{"hookTimeoutMs":60000}', { hookTimeoutMs: 2000 }, []],
    ['bad types', '{"hookTimeoutMs":"1s","strictHooks":"yes"}', {}, [/hookTimeoutMs must be a number/, /strictHooks must be true or false/]],
  ] as const)('%s', async (_name, text, expected, warnings) => {
    const r = await withFile(text);
    expect(r.config).toEqual({ ...HOOK_DEFAULTS, ...expected });
    expect(r.warnings).toHaveLength(warnings.length);
    warnings.forEach((w, i) => expect(r.warnings[i]).toMatch(w));
  });

  test('PVE_CBT_CONFIG wins over the baked path, which wins over /etc/pve-cbt/config.json', () => {
    expect(hookConfigPath({ PVE_CBT_CONFIG: '/a.json' }, '/b.json')).toBe('/a.json');
    expect(hookConfigPath({}, '/b.json')).toBe('/b.json');
    expect(hookConfigPath({})).toBe('/etc/pve-cbt/config.json');
  });
});
