import fs from 'node:fs';
import path from 'node:path';
import Ajv from 'ajv';
import { CONFIG_SCHEMA } from '../../../daemon/config/config-schema';
import { CONFIG_AJV_OPTIONS, configValidator, generatedValidatorCurrent } from '../../../daemon/config/config-validator';
import { configValidatorSource } from '../../../daemon/config/config-validator-source';

const GENERATED = path.resolve(__dirname, '../../../daemon/config/config-schema-validate.generated.ts');

test('the precompiled config validator is generated from the schema in force (else: npm run build && node scripts/config-validator.js)', () => {
  expect(fs.readFileSync(GENERATED, 'utf8')).toBe(configValidatorSource(CONFIG_SCHEMA));
  expect(generatedValidatorCurrent()).toBe(true);
});

test.each([
  ['empty (all defaults)', {}],
  ['a valid config', { repository: '/srv/backup', logLevel: 'debug', jobs: [{ id: 'nightly', schedule: '02:00', vmids: [101] }] }],
  ['an unknown key', { repositry: '/srv/backup' }],
  ['a wrong type and a relative path', { repository: 'relative/dir', concurrency: 'four' }],
  ['a bad job', { jobs: [{ id: '', schedule: 5, extra: true }] }],
  ['not an object', [1, 2]],
])('%s: the precompiled validator answers as ajv compiling the schema does, defaults and every error alike', (_what, input) => {
  const reference = new Ajv(CONFIG_AJV_OPTIONS).compile(CONFIG_SCHEMA);
  const a = structuredClone(input);
  const b = structuredClone(input);
  const validate = configValidator();
  expect(validate(a)).toBe(reference(b));
  expect(a).toEqual(b);
  expect(validate.errors ?? null).toEqual(reference.errors ?? null);
});
